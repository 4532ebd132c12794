"""Over HTTP on the real azmlinfsrv: binary bodies score like JSON ones, and overload is a 503, never a hang."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.support import SCORE_PY, ServerProcess, data_body, post


@pytest.fixture(scope="module")
def expected(howto_server, t10k) -> np.ndarray:
    images, _ = t10k
    return np.array(post(howto_server.score_url, data_body(images[:300])).json())


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_raw_float32_body_scores_like_json(server, t10k, expected):
    images, _ = t10k
    response = post(server.score_url, images[:300].astype("<f4").tobytes(), "application/octet-stream")
    assert response.status_code == 200, response.text
    assert response.json() == expected.tolist()


def test_npy_body_scores_like_json(server, t10k, expected):
    images, _ = t10k
    response = post(server.score_url, npy(images[:300].astype(np.float64)), "application/x-npy")
    assert response.status_code == 200, response.text
    assert response.json() == expected.tolist()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"\0" * 100, "application/octet-stream", 400, "body is 100 bytes, not a whole number of rows"),
        (np.zeros((2001, 784), "<f4").tobytes(), "application/octet-stream", 413, "2001 rows; the limit is 2000"),
        (npy(np.zeros((3, 10))), "application/x-npy", 400, r"shape (3, 10); expected (N, 784)"),
        (b"[[1, 2]]", "application/x-npy", 400, "body is not a .npy array"),
    ],
)
def test_malformed_binary_bodies_get_a_4xx_that_says_why(server, body, content_type, status, message):
    response = post(server.score_url, body, content_type)
    assert response.status_code == status
    assert message in response.json()["error"]


@pytest.fixture(scope="module")
def crowded_server(model_dir, tmp_path_factory):
    """One worker whose queue holds a single 64-row request, scoring one row per session call: easy to fill."""
    env = {
        "WORKER_COUNT": "1",
        "GUNICORN_CMD_ARGS": "--threads 16",
        "MAX_BATCH_ROWS": "1",
        "MAX_REQUEST_ROWS": "64",
        "MAX_QUEUE_ROWS": "64",
    }
    with ServerProcess(SCORE_PY, model_dir, tmp_path_factory.mktemp("crowded"), env) as server:
        yield server


def test_a_full_queue_answers_503_with_retry_after_and_the_rest_are_scored(crowded_server, howto_server, t10k):
    images, _ = t10k
    expected = post(howto_server.score_url, data_body(images[:64])).json()

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda _: post(crowded_server.score_url, data_body(images[:64])), range(32)))

    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    for response in responses:
        if response.status_code == 200:
            assert response.json() == expected
        else:
            assert int(response.headers["Retry-After"]) >= 1
            assert "MAX_QUEUE_ROWS" in response.json()["error"]
    assert requests.get(crowded_server.url + "/", timeout=10).status_code == 200
    assert post(crowded_server.score_url, data_body(images[:64])).json() == expected

"""Over HTTP, on a device that runs out of memory (tests/small_device_score.py): every request succeeds.

Forced on the CPU: the session call raises TensorFlow's ResourceExhaustedError
above a row count, as a GPU with little free memory would.  In-process: tests/unit/test_out_of_memory.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.support import REPO, ServerProcess, data_body, post

SMALL_DEVICE_SCORE_PY = REPO / "tests" / "small_device_score.py"


@pytest.fixture(scope="module")
def expected(t10k_class_ids) -> np.ndarray:
    return t10k_class_ids


@pytest.fixture(scope="module")
def small_device_server(model_dir, tmp_path_factory):
    env = {
        "SMALL_DEVICE_ROWS": "40",
        "MAX_BATCH_ROWS": "256",
        "WORKER_COUNT": "1",
        "GUNICORN_CMD_ARGS": "--threads 8",
        "METRICS_PORT": "0",
    }
    with ServerProcess(SMALL_DEVICE_SCORE_PY, model_dir, tmp_path_factory.mktemp("small-device"), env) as server:
        yield server


def test_over_http_every_request_succeeds_on_a_device_that_runs_out_of_memory(small_device_server, t10k, expected):
    images = t10k[0]
    large = post(small_device_server.score_url, data_body(images[:600]))
    assert large.status_code == 200, large.text
    assert large.json() == expected.tolist()

    with ThreadPoolExecutor(8) as pool:  # concurrent requests, batched together, at the limit learned above
        answers = list(
            pool.map(lambda i: post(small_device_server.score_url, data_body(images[i : i + 64])), range(0, 512, 64))
        )
    assert [a.status_code for a in answers] == [200] * 8
    assert [class_id for a in answers for class_id in a.json()] == expected[:512].tolist()
    small_device_server.wait_for_log("out of device memory scoring 256 rows")

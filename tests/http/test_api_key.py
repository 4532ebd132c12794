"""With SCORING_API_KEY set, POST /score needs `Authorization: Bearer <key>`; probes stay open."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tests.support import REPO, SCORE_PY, MiB, ServerProcess, data_body, post

KEY = "local-test-key-7f3a"


@pytest.fixture(scope="module")
def keyed_server(model_dir, tmp_path_factory):
    env = {
        "SCORING_API_KEY": KEY,
        "WORKER_COUNT": "1",
        "GUNICORN_CMD_ARGS": "--threads 4",
        "METRICS_PORT": "0",
        "MAX_REQUEST_BYTES": str(4 * MiB),
    }
    with ServerProcess(SCORE_PY, model_dir, tmp_path_factory.mktemp("keyed"), env) as server:
        yield server


@pytest.fixture(scope="module")
def body(t10k) -> bytes:
    images, _ = t10k
    return data_body(images[:3])


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "this endpoint needs an API key: send `Authorization: Bearer <key>`"),
        ("Bearer wrong-key", "the API key is not valid"),
        (f"Bearer {KEY}x", "the API key is not valid"),
        (f"Bearer {KEY[:-1]}", "the API key is not valid"),
        ("Bearer ", "the API key is not valid"),
        (f"Basic {KEY}", "the Authorization header must be `Bearer <key>`"),
        (KEY, "the Authorization header must be `Bearer <key>`"),
    ],
)
def test_a_request_without_the_key_gets_401_with_a_bearer_challenge(keyed_server, body, authorization, message):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = post(keyed_server.score_url, body, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="score"'
    assert response.json() == {"error": message}


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_key_as_a_bearer_token_is_scored(keyed_server, body, t10k, scheme):
    response = post(keyed_server.score_url, body, headers={"Authorization": f"{scheme} {KEY}"})
    assert response.status_code == 200, response.text
    assert len(response.json()) == 3


def test_the_key_is_checked_before_the_body_is_read(keyed_server):
    """An unauthenticated client cannot make the server read (or parse) a body: 401, not the 413 of its size."""
    response = post(keyed_server.score_url, b"x" * (5 * MiB))  # over this server's MAX_REQUEST_BYTES
    assert response.status_code == 401


def test_health_probe_and_swagger_need_no_key(keyed_server):
    assert requests.get(keyed_server.url + "/", timeout=10).status_code == 200
    assert requests.get(keyed_server.url + "/swagger.json", timeout=10).status_code == 200


def test_the_how_to_client_works_with_the_key(keyed_server, data_dir):
    args = ["--url", keyed_server.score_url, "--data-dir", str(data_dir), "--count", "200", "--key", KEY]
    result = subprocess.run(
        [sys.executable, "-m", "client.score_client", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "200 images, accuracy" in result.stdout


def test_the_key_never_reaches_the_log_or_an_answer(keyed_server, body):
    for authorization in (f"Bearer {KEY}", f"Bearer {KEY}-wrong", KEY, f"Token {KEY}"):
        response = post(keyed_server.score_url, body, headers={"Authorization": authorization})
        assert KEY not in response.text
    log = keyed_server.settled_log()  # every line of those requests, those written after the answers too
    assert "API key required (SCORING_API_KEY)" in log
    assert KEY not in log


def test_without_a_key_configured_every_request_is_scored(server, body):
    """SCORING_API_KEY unset (the session server): Authorization is ignored, as before the key existed."""
    assert post(server.score_url, body).status_code == 200
    assert post(server.score_url, body, headers={"Authorization": "Bearer anything"}).status_code == 200

"""The front door: serve.py as make serve and the image run it, nginx in front of azmlinfsrv.

- Slow, silent and cut-short clients cost nginx a connection each, never a scoring thread.
- Concurrent maximum-size bodies are answered 200 or 503 (the in-flight budget), never an OOM kill.
- The probes answer from the workers' state, beside the scoring threads.
- One process tree: a dead child stops it non-zero; SIGTERM drains it in order.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.support import (
    FrontDoorProcess,
    MiB,
    cut_short_request,
    data_body,
    post,
    send_raw,
    wait_for,
    wait_for_health,
)

SLOW_HEADERS = 64

SLOW_BODIES = 64

SILENT = 2000

NORMAL = 80

FRONT_DOOR_ENV = {
    "WORKER_COUNT": "2",
    "GUNICORN_CMD_ARGS": "--threads 4",
    "MAX_REQUEST_ROWS": "2000",
    "MAX_REQUEST_BYTES": str(32 * MiB),
    # Three JSON requests of 20 MB weigh 180 MB: a worker holds one maximum-size request at a time.
    "MAX_INFLIGHT_BYTES": str(100 * MiB),
}


@pytest.fixture(scope="module")
def front_door(model_dir, tmp_path_factory):
    with FrontDoorProcess(model_dir, tmp_path_factory.mktemp("front-door"), FRONT_DOOR_ENV) as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors():
    """The attack tests hold thousands of sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 3 * SILENT)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def classes(server, images: np.ndarray) -> list[int]:
    response = post(server.score_url, data_body(images))
    assert response.status_code == 200, response.text
    return response.json()


def test_normal_requests_are_served_while_slow_and_silent_clients_hold_connections(front_door, t10k):
    images, _ = t10k
    expected = classes(front_door, images[:NORMAL])
    address = ("127.0.0.1", front_door.port)
    header = b"POST /score HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    silent = [socket.create_connection(address) for _ in range(SILENT)]
    slow_headers = [socket.create_connection(address) for _ in range(SLOW_HEADERS)]
    slow_bodies = [socket.create_connection(address) for _ in range(SLOW_BODIES)]
    for connection in slow_bodies:
        connection.sendall(header)
    stop = threading.Event()

    def drip() -> None:  # one byte of the headers, ten of the body, per connection and second
        sent = 0
        while not stop.wait(1.0):
            for connection in slow_headers:
                with contextlib.suppress(OSError):  # nginx closed it (client_header_timeout)
                    connection.send(header[sent : sent + 1])
            for connection in slow_bodies:
                with contextlib.suppress(OSError):  # nginx closed it (client_header_timeout)
                    connection.send(b"[" * 10)
            sent += 1

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: post(front_door.score_url, data_body(images[i : i + 1])), range(NORMAL)))
        assert [a.status_code for a in answers] == [200] * NORMAL
        assert [a.json()[0] for a in answers] == expected
    finally:
        stop.set()
        dripper.join()
        for connection in silent + slow_headers + slow_bodies:
            connection.close()


def test_a_body_cut_short_gets_400_from_the_scoring_script(server):
    """azmlinfsrv without the front door (as Azure ML runs score.py): gunicorn hands over what arrived."""
    answer = send_raw(server.port, cut_short_request())
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 400 " in status_line
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"].startswith("body cut short: 3136 of the 6272 bytes")


def test_a_body_cut_short_is_never_scored_through_the_front_door(front_door):
    """nginx never passes on a body shorter than its Content-Length: no answer, or a 400, never a score."""
    answer = send_raw(front_door.port, cut_short_request())
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_concurrent_maximum_size_bodies_get_200_or_503_and_the_server_answers_after(front_door, t10k):
    images, _ = t10k
    rows = np.resize(images, (2000, 784))
    body = data_body(rows)
    expected = classes(front_door, rows[:8])
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: post(front_door.score_url, body, timeout=300), range(32)))
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 503}, [a.text[:200] for a in answers if a.status_code not in (200, 503)]
    for answer in answers:
        if answer.status_code == 200:
            assert answer.json()[:8] == expected
        else:
            assert "MAX_INFLIGHT_BYTES" in answer.json()["error"] or "busy" in answer.json()["error"]
            assert answer.headers["Retry-After"]
    assert classes(front_door, rows[:8]) == expected


def test_a_body_over_the_limit_gets_413_from_the_front_door(front_door):
    response = post(front_door.score_url, b"0" * (32 * MiB + 1))
    assert response.status_code == 413
    assert "MAX_REQUEST_BYTES" in response.json()["error"]
    logged = lambda: [  # noqa: E731
        line for line in front_door.log().splitlines() if '"source": "frontdoor"' in line and '"status": 413' in line
    ]
    (line,) = wait_for(logged, 30, "nginx's JSON line for the request it answered itself")
    assert json.loads(line)["uri"] == "/score"


def test_probes_answer_json_beside_the_scoring_threads(front_door):
    # An earlier test's crowd got 503s: a worker that refused for overload counts as saturated for a moment.
    wait_for(lambda: front_door.probe("ready") == 200, 60, "ready once no worker has refused for a second")
    for probe in ("startup", "ready", "live"):
        response = requests.get(f"{front_door.url}/health/{probe}", timeout=10)
        assert response.status_code == 200
        assert response.json()["workers"] == {"serving": 2, "configured": 2}
    assert requests.get(f"{front_door.url}/v2/health/ready", timeout=10).status_code == 200
    assert requests.get(f"{front_door.url}/", timeout=10).text == "Healthy"  # azmlinfsrv's own, for Azure ML


def test_request_ids_pass_through(front_door, t10k):
    images, _ = t10k
    response = post(front_door.score_url, data_body(images[:1]), headers={"x-request-id": "front-door-id-1"})
    assert response.headers["x-request-id"] == "front-door-id-1"
    generated = post(front_door.score_url, data_body(images[:1])).headers["x-request-id"]
    assert generated  # nginx's own id, the one its log would carry
    wait_for(lambda: "front-door-id-1" in front_door.log(), 30, "the worker's log line with the client's id")


def test_an_invalid_front_door_setting_stops_start_up_with_one_line(model_dir, tmp_path):
    server = FrontDoorProcess(model_dir, tmp_path, {"CLIENT_BODY_TIMEOUT_S": "soon"})
    assert server.wait_exit() == 3
    assert "start-up failed: invalid configuration: CLIENT_BODY_TIMEOUT_S='soon'" in server.log()


def test_front_door_off_serves_azmlinfsrv_on_the_port_itself(model_dir, tmp_path, t10k):
    images, _ = t10k
    server = FrontDoorProcess(model_dir, tmp_path, {"FRONT_DOOR": "0", "WORKER_COUNT": "1"})
    try:
        wait_for_health(server.url + "/", server.process, server.log, 180)
        assert len(classes(server, images[:3])) == 3
        assert requests.get(f"{server.url}/health/ready", timeout=10).status_code == 404  # no probes without it
        assert "nginx" not in server.log()
    finally:
        server.stop()


def raw_exchange(port: int, request: bytes) -> tuple[bytes, dict, bytes]:
    """Send raw bytes, read to the end: (status line, headers, body)."""
    head, _, body = send_raw(port, request).partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    return status, {k.strip().lower(): v.strip() for k, _, v in (line.decode().partition(":") for line in lines)}, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"HELLO\r\n\r\n", 400),
        (b"GET /../score HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 400),  # nginx: 400, not 431
        (b"POST /score HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505),
        (b"GET /.frontdoor/400.json HTTP/1.1\r\nHost: a\r\n\r\n", 404),
    ],
    ids=["garbage", "dot-dot", "long-uri", "big-header", "gzip-body", "http-9", "internal-page"],
)
def test_malformed_http_gets_a_json_error_from_the_front_door(front_door, request_bytes, status):
    status_line, headers, body = raw_exchange(front_door.port, request_bytes)
    assert status_line.split()[1] == str(status).encode(), status_line
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]
    assert headers["x-request-id"]


def test_headers_nginx_lets_through_are_not_refused_behind_it(front_door, t10k):
    """gunicorn's own header limits are lifted behind nginx: no plain-text 431 for what nginx accepted."""
    images, _ = t10k
    headers = {"X-Trace": "t" * 10000, **{f"X-Extra-{i}": "1" for i in range(150)}}
    response = post(front_door.score_url, data_body(images[:1]), headers=headers)
    assert response.status_code == 200, response.text


def test_a_probe_sent_with_a_body_is_answered_not_reset(front_door):
    for _ in range(5):
        response = requests.post(f"{front_door.url}/health/ready", data=b"x" * (2 * MiB), timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["probe"] == "ready"

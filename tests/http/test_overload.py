"""At 256 concurrent connections the server answers every request, 200 or 503 with Retry-After.

Overload is a promise about waiting, not about speed: a request either gets
its class ids or, when the worker's batch queue is full or it waited there
MAX_QUEUE_WAIT_MS, a 503 with `Retry-After` and a JSON `{"error": ...}` at
once.  No connection is dropped or reset, no request waits without limit, and
the server is healthy and scoring right after the crowd is gone.

The server below has one worker whose batcher scores one row per session call
(MAX_BATCH_ROWS=1) behind a queue of 64 rows, so that a crowd of 1-row and
64-row requests fills it on any machine.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import requests

from tests.support import SCORE_PY, ServerProcess, data_body, post

CONNECTIONS = 256
REQUESTS_EACH = 4  # per connection, alternately 1-row and 64-row bodies, over one kept-alive connection
BIG_ROWS = 64
WORKERS = 1
THREADS = 32
MAX_QUEUE_WAIT_MS = 250
ENV = {
    "WORKER_COUNT": str(WORKERS),
    "GUNICORN_CMD_ARGS": f"--threads {THREADS}",
    "MAX_BATCH_ROWS": "1",
    "MAX_REQUEST_ROWS": str(BIG_ROWS),
    "MAX_QUEUE_ROWS": str(BIG_ROWS),
    "MAX_QUEUE_WAIT_MS": str(MAX_QUEUE_WAIT_MS),
    "LOG_REQUESTS": "errors",
    "METRICS_PORT": "0",
}


@dataclass
class Answer:
    rows: np.ndarray  # indices into t10k of the rows sent
    seconds: float
    status: int | None = None
    retry_after: str | None = None
    body: bytes = b""
    error: str | None = None  # a connection error instead of an answer


@pytest.fixture(scope="module")
def overloaded_server(model_dir, tmp_path_factory):
    with ServerProcess(SCORE_PY, model_dir, tmp_path_factory.mktemp("overload"), ENV) as server:
        yield server


def crowd(port: int, bodies: list[list[tuple[np.ndarray, bytes]]]) -> list[Answer]:
    """Each of len(bodies) client threads sends its bodies in turn over one connection, all starting at once."""
    answers: list[list[Answer]] = [[] for _ in bodies]
    start = threading.Barrier(len(bodies))

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        for rows, body in bodies[index]:
            began = time.perf_counter()
            try:
                connection.request("POST", "/score", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                content = response.read()
            except (OSError, http.client.HTTPException) as err:
                answers[index].append(Answer(rows, time.perf_counter() - began, error=repr(err)))
                connection.close()
                continue
            answers[index].append(
                Answer(rows, time.perf_counter() - began, response.status, response.getheader("Retry-After"), content)
            )
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a client thread is still waiting for an answer"
    return [answer for client_answers in answers for answer in client_answers]


def test_a_crowd_of_256_connections_gets_only_200_or_503_with_retry_after(overloaded_server, howto_server, t10k):
    images, _ = t10k
    reference_rows = 8 * BIG_ROWS
    expected = np.array(post(howto_server.score_url, data_body(images[:reference_rows])).json())
    one_row = [np.array([i % reference_rows]) for i in range(CONNECTIONS)]
    big = [np.arange(j * BIG_ROWS, (j + 1) * BIG_ROWS) for j in range(reference_rows // BIG_ROWS)]
    encoded = {}

    def body(rows: np.ndarray) -> tuple[np.ndarray, bytes]:
        key = (int(rows[0]), len(rows))
        if key not in encoded:
            encoded[key] = data_body(images[rows])
        return rows, encoded[key]

    plan = [
        [body(one_row[c] if (c + r) % 2 == 0 else big[c % len(big)]) for r in range(REQUESTS_EACH)]
        for c in range(CONNECTIONS)
    ]

    answers = crowd(overloaded_server.port, plan)

    assert len(answers) == CONNECTIONS * REQUESTS_EACH
    assert [a.error for a in answers if a.error] == [], "connection errors under overload"
    statuses = [a.status for a in answers]
    assert set(statuses) <= {200, 429, 503}, sorted(set(statuses))
    for answer in answers:
        if answer.status == 200:
            assert json.loads(answer.body) == expected[answer.rows].tolist()
        else:
            assert answer.retry_after is not None and int(answer.retry_after) >= 1
            assert isinstance(json.loads(answer.body)["error"], str)
    refused = sum(status != 200 for status in statuses)
    assert 0 < refused < len(answers), "the crowd must overload the server, and some requests must still be scored"

    latencies = np.array([a.seconds for a in answers])
    p99 = float(np.percentile(latencies, 99))
    print(
        f"\n{len(answers)} requests from {CONNECTIONS} connections: {refused} ({refused / len(answers):.0%}) got 503; "
        f"p50 {np.percentile(latencies, 50) * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, max {latencies.max() * 1e3:.0f} ms"
    )  # figures only: latency is measured by make bench, not bounded by a test (it would fail on a busy machine)

    assert requests.get(overloaded_server.url + "/", timeout=5).status_code == 200
    response = post(overloaded_server.score_url, data_body(images[:BIG_ROWS]), timeout=10)
    assert response.status_code == 200
    assert response.json() == expected[:BIG_ROWS].tolist()

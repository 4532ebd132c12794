"""Busy is not frozen: serve.py tells a worker stuck in a long native call (its heartbeat thread starved of the
GIL, its CPU time growing) from a frozen one, and ends it only after WORKER_BUSY_S, once the front door has
answered its client (UPSTREAM_TIMEOUT_S is below it).

The device is tests/faulty_device_score.py: the real score.py, whose session call holds the GIL in one C call
without end once the test creates the hold file.
"""

from __future__ import annotations

import threading

import pytest

from tests.http.test_front_door_faults import ONE_ROW, faulty_server, workers
from tests.support import post, wait_for

BUSY_LIMIT_S = 12
UPSTREAM_S = 8  # below WORKER_BUSY_S, as the settings require: the front door gives up first


@pytest.fixture(scope="module")
def holding(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("holding")
    settings = {"WORKER_HANG_S": "3", "WORKER_BUSY_S": str(BUSY_LIMIT_S), "UPSTREAM_TIMEOUT_S": str(UPSTREAM_S)}
    with faulty_server(model_dir, tmp, WORKER_COUNT="2", **settings) as server:
        server.hold = tmp / "hold"
        yield server


def test_a_worker_busy_in_a_native_call_is_not_taken_for_frozen_and_is_ended_after_the_busy_limit(holding):
    before = workers(holding)
    holding.hold.touch()
    answers = []
    held = threading.Thread(target=lambda: answers.append(post(holding.url + "/score", ONE_ROW, timeout=120)))
    held.start()
    log = holding.wait_for_log("busy in a long native call, not frozen", timeout=60)
    busy_pid = int(log.split("busy in a long native call")[0].rsplit("worker ", 1)[1].split()[0])
    assert busy_pid in before
    # The other worker serves meanwhile.
    for _ in range(5):
        assert post(holding.url + "/score", ONE_ROW, timeout=60).status_code == 200
    log = holding.wait_for_log(f"worker {busy_pid} busy but silent for", timeout=BUSY_LIMIT_S + 60)
    assert "(frozen?)" not in log  # never judged frozen on the way
    held.join(120)
    # Its client had the front door's 504 after UPSTREAM_TIMEOUT_S, before the worker was ended: a request that
    # takes too long is answered, and not sent on to take a second worker down.
    assert answers and answers[0].status_code == 504, answers and answers[0].text
    assert answers[0].json()["error"] and answers[0].headers["Retry-After"]
    wait_for(lambda: busy_pid not in workers(holding) and len(workers(holding)) == 2, 120, "a replacement")

"""The probes' verdicts, from worker state files as the workers write them (health.py, workerstate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tfscoring.health import LIVE_GRACE_S, PodHealth
from tfscoring.workerstate import load


def write(state_dir, pid: int, phase: str = "serving", age: float = 0.0, queued: int = 0, inflight: int = 0) -> None:
    state = {
        "pid": pid,
        "phase": phase,
        "reason": "CUDA error" if phase == "failed" else "",
        "at": time.monotonic() - age,
    }
    state.update(load(queued, 10, inflight, 100))
    (state_dir / f"{pid}.json").write_text(json.dumps(state))


@pytest.fixture
def health(tmp_path):
    return PodHealth(tmp_path, configured=2, hang_s=10)


def test_startup_waits_for_every_configured_worker_then_stays_true(health, tmp_path):
    write(tmp_path, 101)
    write(tmp_path, 102, phase="loading")
    health.refresh({101, 102})
    assert health.answer("startup")[0] == 503
    assert health.answer("ready")[0] == 503
    write(tmp_path, 102)
    health.refresh({101, 102})
    assert health.answer("startup")[0] == 200
    write(tmp_path, 102, phase="loading")  # a replacement later: startup is over, readiness is not
    health.refresh({101, 102})
    assert health.answer("startup")[0] == 200
    status, body = health.answer("ready")
    assert status == 503 and body["reason"] == "1 of 2 workers are serving"


def test_ready_is_false_only_when_every_worker_is_saturated(health, tmp_path):
    write(tmp_path, 101, queued=10)
    write(tmp_path, 102, inflight=50)
    health.refresh({101, 102})
    assert health.answer("ready")[0] == 200
    write(tmp_path, 102, inflight=95)
    health.refresh({101, 102})
    status, body = health.answer("ready")
    assert status == 503 and "full" in body["reason"]
    assert health.answer("live")[0] == 200  # busy is not broken


def test_a_failed_worker_or_a_stale_state_makes_the_pod_unready(health, tmp_path):
    write(tmp_path, 101)
    write(tmp_path, 102)
    health.refresh({101, 102})
    assert health.answer("ready")[0] == 200
    write(tmp_path, 102, phase="failed")
    health.refresh({101, 102})
    status, body = health.answer("ready")
    assert status == 503 and "CUDA error" in body["reason"]
    write(tmp_path, 102, age=5)  # serving, but its last word is 5 s old
    health.refresh({101, 102})
    assert health.answer("ready")[0] == 503


def test_states_of_processes_that_are_not_workers_are_dropped(health, tmp_path):
    write(tmp_path, 101)
    write(tmp_path, 102)
    write(tmp_path, 999)
    health.refresh({101, 102})
    assert not (tmp_path / "999.json").exists()
    assert health.answer("ready")[1]["workers"] == {"serving": 2, "configured": 2}


def test_live_is_false_only_when_no_worker_has_served_for_the_grace_period(health, tmp_path):
    write(tmp_path, 101)
    write(tmp_path, 102)
    health.refresh({101, 102})
    health.refresh(set())  # every worker gone
    assert health.answer("live")[0] == 200
    health._last_serving -= LIVE_GRACE_S + 1  # as if a minute had passed without a worker
    status, body = health.answer("live")
    assert status == 503 and "no worker has served" in body["reason"]


def test_a_serving_worker_silent_past_the_hang_limit_is_killed(health, tmp_path):
    frozen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        write(tmp_path, frozen.pid, age=11)
        health.refresh({frozen.pid})
        assert frozen.wait(30) == -9
    finally:
        frozen.kill()


def test_a_replacement_still_loading_keeps_the_pod_live(health, tmp_path):
    write(tmp_path, 101)
    write(tmp_path, 102)
    health.refresh({101, 102})
    write(tmp_path, 103, phase="loading")  # the only worker left, loading its model
    health.refresh({103})
    health._last_serving -= LIVE_GRACE_S + 1
    health.refresh({103})
    assert health.answer("live")[0] == 200
    assert health.answer("ready")[0] == 503

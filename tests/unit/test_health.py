"""The probes' verdicts, from worker state files as the workers write them (health.py, workerstate.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tfscoring.process.health import LIVE_GRACE_S, PodHealth
from tfscoring.process.workerstate import load


def write(state_dir, pid: int, phase: str = "serving", age: float = 0.0, queued: int = 0, inflight: int = 0) -> None:
    state = {
        "pid": pid,
        "phase": phase,
        "reason": "CUDA error" if phase == "failed" else "",
        "at": time.monotonic() - age,
    }
    state.update(load(queued, 10, inflight, 100))
    (state_dir / f"{pid}.json").write_text(json.dumps(state))


def written_at(state_dir, pid: int) -> float:
    """When the worker's state file says it was written (monotonic)."""
    return json.loads((state_dir / f"{pid}.json").read_text())["at"]


@pytest.fixture
def health(tmp_path):
    return PodHealth(tmp_path, configured=2, hang_s=10, busy_s=120)


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


def _refresh_until(health: PodHealth, pids: set[int], done) -> None:
    deadline = time.monotonic() + 30
    while not done() and time.monotonic() < deadline:
        health.refresh(pids)
        time.sleep(0.05)


def test_a_serving_worker_silent_past_the_hang_limit_and_using_no_cpu_is_killed(health, tmp_path):
    frozen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        write(tmp_path, frozen.pid, age=11)
        _refresh_until(health, {frozen.pid}, lambda: frozen.poll() is not None)
        assert frozen.wait(10) == -9
    finally:
        frozen.kill()


def test_a_worker_first_seen_long_silent_is_measured_before_it_is_judged(health, tmp_path):
    """Silent for longer than WORKER_HANG_S at first sight (the supervisor's loop stalled): a worker using CPU is
    busy, not frozen; the verdict waits for one measured window."""
    busy = subprocess.Popen([sys.executable, "-c", _BUSY])
    try:
        write(tmp_path, busy.pid, age=11)
        _refresh_until(health, {busy.pid}, lambda: busy.pid in health.busy() or busy.poll() is not None)
        assert busy.poll() is None and busy.pid in health.busy()
    finally:
        busy.kill()
        busy.wait()


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


# A worker's main thread holding the GIL in one long C call, as orjson.loads of a huge body does: its heartbeat
# thread cannot run, but the process uses a core.  And one whose GIL is held by a thread asleep: a deadlock.
_BUSY = "import threading, time, re\nthreading.Thread(target=lambda: time.sleep(300), daemon=True).start()\n" + (
    "re.fullmatch(r'(a|aa)+b', 'a' * 60)"  # catastrophic backtracking, in C, the GIL held: years of CPU
)
_DEADLOCKED = (
    "import ctypes, threading, time\nthreading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(int, 1)], "
    "daemon=True).start()\nctypes.PyDLL(None).pause()"  # PyDLL keeps the GIL across the call: the thread waits
)


def _silent_until(health: PodHealth, tmp_path, pid: int, done) -> None:
    """A worker that wrote its state once and then fell silent, refreshed as serve.py does until done()."""
    write(tmp_path, pid)
    deadline = time.monotonic() + 30
    while not done() and time.monotonic() < deadline:
        health.refresh({pid})
        time.sleep(0.05)


def test_a_silent_worker_using_cpu_is_busy_not_frozen_and_counts_as_serving_saturated(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", _BUSY])
    health = PodHealth(tmp_path, configured=1, hang_s=2.5, busy_s=120)
    try:
        _silent_until(health, tmp_path, busy.pid, lambda: busy.pid in health.busy())
        assert busy.pid in health.busy()
        assert busy.poll() is None  # silent for more than QUIET_S + a window, alive
        # Still busy past the hang limit and the state's staleness: not killed, serving and saturated.
        _silent_until(health, tmp_path, busy.pid, lambda: time.monotonic() - written_at(tmp_path, busy.pid) > 4)
        assert busy.poll() is None and busy.pid in health.busy()
        status, body = health.answer("ready")
        assert status == 503 and "full" in body["reason"] and body["workers"]["serving"] == 1
    finally:
        busy.kill()
        busy.wait()


def test_a_worker_busy_and_silent_past_the_busy_limit_is_killed(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", _BUSY])
    health = PodHealth(tmp_path, configured=1, hang_s=2.5, busy_s=4)
    try:
        _silent_until(health, tmp_path, busy.pid, lambda: busy.poll() is not None)
        assert busy.wait(10) == -9
    finally:
        busy.kill()


@pytest.mark.parametrize("how", ["deadlocked", "stopped"])
def test_a_silent_worker_using_no_cpu_is_frozen_and_killed(tmp_path, how):
    frozen = subprocess.Popen([sys.executable, "-c", _DEADLOCKED if how == "deadlocked" else _BUSY])
    if how == "stopped":
        frozen.send_signal(signal.SIGSTOP)  # a busy loop, stopped: its past CPU does not make it busy
    health = PodHealth(tmp_path, configured=1, hang_s=2.5, busy_s=120)
    try:
        _silent_until(health, tmp_path, frozen.pid, lambda: frozen.poll() is not None)
        assert frozen.wait(10) == -9
        assert frozen.pid not in health.busy()
    finally:
        frozen.kill()

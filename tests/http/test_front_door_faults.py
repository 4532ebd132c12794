"""Faults behind the front door: frozen and hung workers, a failed device, a full queue, the process tree.

The device is tests/faulty_device_score.py: the real score.py whose session calls wait while a
stall file exists and raise a CUDA-like InternalError while a break file exists.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support import REPO, FrontDoorProcess, data_body, post, wait_for, worker_pids

FAULTY_SCORE_PY = REPO / "tests" / "faulty_device_score.py"
REPLACED_S = 120  # a replacement worker loads TensorFlow and the model: seconds, more on a busy machine
ONE_ROW = data_body([[0.0] * 784])


def faulty_server(model_dir: Path, tmp: Path, **env: str) -> FrontDoorProcess:
    settings = {
        "WORKER_COUNT": "1",
        "GUNICORN_CMD_ARGS": "--threads 4",
        "STALL_FILE": str(tmp / "stall"),
        "BREAK_FILE": str(tmp / "break"),
        "FLAKY_FILE": str(tmp / "flaky"),
        "HOLD_FILE": str(tmp / "hold"),
        **env,
    }
    return FrontDoorProcess(model_dir, tmp, settings, entry_script=FAULTY_SCORE_PY)


def workers(server: FrontDoorProcess) -> set[int]:
    return worker_pids(server.gunicorn_pid())


def replaced(server: FrontDoorProcess, old: int) -> int:
    """Wait until `old` is gone and its replacement serves (readiness back); the replacement's pid."""
    new = wait_for(lambda: (w := workers(server)) and old not in w and w, REPLACED_S, f"worker {old} replaced")
    wait_for(lambda: server.probe("ready") == 200, REPLACED_S, "readiness back with the replacement")
    return next(iter(new))


@pytest.fixture(scope="module")
def fragile(model_dir, tmp_path_factory):
    """One worker; a session call hung for 5 s ends the worker, a worker frozen for 5 s is killed."""
    tmp = tmp_path_factory.mktemp("fragile")
    with faulty_server(model_dir, tmp, SESSION_HANG_S="5", WORKER_HANG_S="5") as server:
        server.stall, server.broken, server.flaky = tmp / "stall", tmp / "break", tmp / "flaky"
        yield server


def test_a_frozen_worker_is_killed_and_replaced_and_its_requests_are_answered_by_the_replacement(fragile):
    """Requests the frozen worker holds (on nginx's kept-alive connections) are sent once more when it is killed,
    and those still in the socket's backlog are taken by the replacement: every one is answered 200."""
    (frozen,) = workers(fragile)
    os.kill(frozen, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(4) as pool:  # requests the frozen worker takes or holds: an answer, not a hang
            answers = list(pool.map(lambda _: post(fragile.score_url, ONE_ROW, timeout=90), range(4)))
    finally:
        replacement = replaced(fragile, frozen)
    assert [a.status_code for a in answers] == [200] * 4
    assert "silent for" in fragile.log() and f"worker {frozen}" in fragile.log()
    assert post(fragile.score_url, ONE_ROW).status_code == 200
    assert replacement != frozen


def test_a_session_call_that_never_returns_ends_the_worker(fragile):
    """nginx sends the request once more when its worker ends (scoring has no side effects); it hangs in the
    replacement too, which ends as well, and the client gets 502: such a request costs two workers, never more."""
    (hung,) = workers(fragile)
    fragile.stall.touch()
    try:
        answer = post(fragile.score_url, ONE_ROW, timeout=90)
        wait_for(lambda: hung not in workers(fragile), REPLACED_S, "the hung worker gone")
    finally:
        fragile.stall.unlink()
    assert answer.status_code == 502
    assert "replaced" in answer.json()["error"]
    replaced(fragile, hung)
    assert post(fragile.score_url, ONE_ROW).status_code == 200
    fragile.wait_for_log("SESSION_HANG_S=5", count=2)  # the watchdog's line, in the worker and in the one tried next


def test_a_device_that_fails_then_hangs_ends_the_worker(fragile):
    """The device check after an error (one zero row) hangs: the watchdog sees that call too."""
    (hung,) = workers(fragile)
    fragile.flaky.touch()
    try:
        answer = post(fragile.score_url, ONE_ROW, timeout=90)
        wait_for(lambda: hung not in workers(fragile), REPLACED_S, "the worker hung in its device check gone")
    finally:
        fragile.flaky.unlink()
    assert answer.status_code == 502
    replaced(fragile, hung)
    assert post(fragile.score_url, ONE_ROW).status_code == 200


def test_a_device_that_fails_for_good_ends_the_worker_and_readiness_drops_meanwhile(fragile):
    (failing,) = workers(fragile)
    fragile.broken.touch()  # session calls fail, and the replacement waits in init() until it is gone
    try:
        answer = post(fragile.score_url, ONE_ROW)
        assert answer.status_code == 503
        assert "CUDA_ERROR_ILLEGAL_ADDRESS" in answer.json()["error"]
        assert "being replaced" in answer.json()["error"]
        wait_for(lambda: failing not in workers(fragile), REPLACED_S, "the failed worker gone")
        assert fragile.probe("ready") == 503  # its replacement is still loading
        assert fragile.probe("live") == 200
    finally:
        fragile.broken.unlink()
    replaced(fragile, failing)
    assert post(fragile.score_url, ONE_ROW).status_code == 200


@pytest.fixture(scope="module")
def stalling(model_dir, tmp_path_factory):
    """One worker of four threads with a queue of three rows that stays full while the device stalls."""
    tmp = tmp_path_factory.mktemp("stalling")
    env = {"MAX_QUEUE_ROWS": "3", "MAX_QUEUE_WAIT_MS": "120000", "SESSION_HANG_S": "600"}
    with faulty_server(model_dir, tmp, **env) as server:
        server.stall = tmp / "stall"
        yield server


def test_readiness_is_false_while_the_queue_is_full_and_true_after(stalling):
    assert stalling.probe("ready") == 200
    stalling.stall.touch()
    with ThreadPoolExecutor(4) as pool:
        try:
            leader = pool.submit(post, stalling.score_url, ONE_ROW, timeout=120)
            wait_for(stalling.stall.with_name("stall-reached").exists, 60, "the first request stalled in the device")
            queued = [pool.submit(post, stalling.score_url, ONE_ROW, timeout=120) for _ in range(3)]  # 3 rows: full
            wait_for(lambda: stalling.probe("ready") == 503, 60, "readiness false with the queue full")
            reason = requests.get(f"{stalling.url}/health/ready", timeout=10).json()["reason"]
            assert "queue" in reason
            assert stalling.probe("live") == 200  # busy is not broken
        finally:
            stalling.stall.unlink()
        assert [a.result().status_code for a in [leader, *queued]] == [200] * 4
    wait_for(lambda: stalling.probe("ready") == 200, 60, "readiness back once the queue drains")


def test_startup_waits_for_every_worker_and_sigterm_drains_in_order(model_dir, tmp_path):
    (tmp_path / "break").touch()  # the workers wait in init() until it is gone
    server = faulty_server(model_dir, tmp_path, WORKER_COUNT="2")
    try:
        wait_for(lambda: _answers(server, "startup") == 503, 120, "the startup probe answering, not yet started")
        assert server.probe("ready") == 503
        assert server.probe("live") == 200
        (tmp_path / "break").unlink()
        wait_for(lambda: server.probe("startup") == 200, REPLACED_S, "both workers loaded")
        (tmp_path / "stall").touch()
        in_flight = ThreadPoolExecutor(1).submit(post, server.score_url, ONE_ROW, timeout=120)
        wait_for((tmp_path / "stall-reached").exists, 60, "the request in a stalled session call")
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping: nginx finishes" in server.log(), 30, "the drain begun")
        (tmp_path / "stall").unlink()
        assert in_flight.result().status_code == 200
        assert server.process.wait(90) == 0
    finally:
        server.stop()


def _answers(server: FrontDoorProcess, probe: str) -> int | None:
    try:
        return server.probe(probe)
    except requests.RequestException:
        return None  # nginx not listening yet


@pytest.mark.parametrize("victim", ["nginx", "azmlinfsrv"])
def test_when_either_side_dies_the_whole_tree_exits_non_zero(model_dir, tmp_path, victim):
    with faulty_server(model_dir, tmp_path) as server:
        gunicorn, nginx = server.gunicorn_pid(), server.nginx_pid()
        os.kill(nginx if victim == "nginx" else gunicorn, signal.SIGKILL)
        assert server.process.wait(90) != 0
        wait_for(lambda: not _alive(gunicorn) and not _alive(nginx), 60, "both children gone")
        assert f"{victim} exited" in server.log()


def test_killing_serve_py_takes_its_children_with_it(model_dir, tmp_path):
    with faulty_server(model_dir, tmp_path) as server:
        gunicorn, nginx = server.gunicorn_pid(), server.nginx_pid()
        server.process.kill()
        server.process.wait(30)
        wait_for(lambda: not _alive(gunicorn) and not _alive(nginx), 60, "nginx and gunicorn gone with serve.py")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_slow_client_does_not_hold_the_drain(model_dir, tmp_path):
    """nginx closes what is still open after worker_shutdown_timeout: serve.py never has to SIGKILL it."""
    head = b"POST /score HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    with faulty_server(model_dir, tmp_path) as server, socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.sendall(head)
        stop = threading.Event()

        def drip() -> None:  # a byte a second: never a pause long enough for client_body_timeout
            with contextlib.suppress(OSError):
                while not stop.wait(1.0):
                    slow.send(b"[")

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        try:
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(90) == 0
        finally:
            stop.set()
            dripper.join()
        assert "did not stop within" not in server.log()


def test_an_invalid_worker_count_stops_start_up_with_one_line(model_dir, tmp_path):
    server = faulty_server(model_dir, tmp_path, WORKER_COUNT="0")
    assert server.wait_exit() == 3
    assert "start-up failed: invalid configuration: WORKER_COUNT='0'" in server.log()

"""Worker faults and shutdown, on the real azmlinfsrv (gunicorn master + gthread workers) under load.

- A worker killed with SIGKILL is replaced by the gunicorn master, which forks
  a new one (it runs init() again); meanwhile the other worker keeps serving.
  Only the requests the dead worker had accepted fail (their connections are
  reset); connections still in the listen queue, which every worker shares, go
  to a live worker.
- SIGTERM to the master drains: the master closes its listening socket and
  SIGTERMs the workers; a gthread worker stops accepting, answers every
  connection it has accepted (within --graceful-timeout, 30 s by default), then
  exits, and the master exits 0.  A connection made after the SIGTERM is never
  answered: the workers still hold the listening socket until they exit, so
  the kernel completes its handshake and resets it when the last worker exits
  (ECONNRESET), or refuses it once they are gone (ECONNREFUSED).  (A sync
  worker, azmlinfsrv's default without --threads, finishes its one request and
  exits; connections still in the listen queue are reset, not served.)
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.support import REPO, SCORE_PY, ServerProcess, data_body, free_port, post, wait_for, worker_pids

CLIENTS = 8  # each has at most one request outstanding
REPLACEMENT_S = 60.0  # the master forks a replacement at once; its init() loads TensorFlow (seconds)


@dataclass(eq=False)  # calls are compared by identity
class Call:
    began: float  # time.monotonic()
    ended: float
    rows: np.ndarray
    status: int | None = None
    body: bytes = b""
    error: str | None = None  # a connection error instead of an answer


def call(port: int, rows: np.ndarray, body: bytes, timeout: float = 60) -> Call:
    """POST body to /score over a new connection; a connection error is recorded, not raised."""
    began = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/score", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return Call(began, time.monotonic(), rows, response.status, response.read())
    except (OSError, http.client.HTTPException) as err:
        return Call(began, time.monotonic(), rows, error=repr(err))
    finally:
        connection.close()


def connections(port: int) -> tuple[int, int]:
    """(connections established to the server on `port`, connections in its listen queue not yet accepted)."""
    established, backlog = 0, 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state = int(fields[1].rsplit(":", 1)[1], 16), fields[3]
        if local_port != port:
            continue
        if state == "01":  # ESTABLISHED, server side (accepted or still in the listen queue)
            established += 1
        elif state == "0A":  # LISTEN: rx_queue is the length of the accept queue
            backlog += int(fields[4].split(":")[1], 16)
    return established, backlog


def exited(pid: int) -> bool:
    """Whether process `pid` has exited: gone from /proc, or a zombie its parent has not reaped yet.  Either way
    the kernel has closed its files, so the connections it had accepted are reset by then."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def accepting(pid: int, port: int) -> bool:
    """Whether process `pid` waits for connections to accept on the socket listening on `port`: whether that
    socket is in one of its epoll sets.  A gthread worker takes it out when told to stop (SIGTERM)."""
    listening = {
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"
    }
    fds = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            fds[fd.name] = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
    listeners = {name for name, target in fds.items() if target in {f"socket:[{inode}]" for inode in listening}}
    for name, target in fds.items():
        if target == "anon_inode:[eventpoll]":
            try:
                watched = Path(f"/proc/{pid}/fdinfo/{name}").read_text().splitlines()
            except OSError:
                continue
            if any(line.startswith("tfd:") and line.split()[1] in listeners for line in watched):
                return True
    return False


@pytest.fixture(scope="module")
def expected(howto_server, t10k) -> np.ndarray:
    images, _ = t10k
    return np.array(post(howto_server.score_url, data_body(images[:2000])).json())


def assert_correct(calls: list[Call], expected: np.ndarray) -> None:
    for c in calls:
        if c.status == 200:
            assert json.loads(c.body) == expected[c.rows].tolist()


# --- SIGKILL ------------------------------------------------------------------------------------------------

KILL_ENV = {
    "WORKER_COUNT": "2",
    "GUNICORN_CMD_ARGS": "--threads 8",
    "MAX_REQUEST_ROWS": "2000",
    "LOG_REQUESTS": "errors",
    "METRICS_PORT": "0",
}


def test_a_worker_killed_under_load_is_replaced_and_only_its_in_flight_requests_fail(
    model_dir, t10k, expected, tmp_path
):
    """Two SIGKILLs in turn: the first original worker, then, once its replacement is ready, the other one.

    The second kill leaves the replacement as the only worker ready to serve, so the service answering after
    it shows that the replacement serves.

    A kill is not an instant: it spans from just before os.kill to the moment the victim is seen gone (or a
    zombie).  A request is in flight at a kill when it began before that span ended and ended after it began:
    one that began in the span may still have been accepted by the victim.
    """
    images, _ = t10k
    server = ServerProcess(SCORE_PY, model_dir, tmp_path, KILL_ENV).wait_healthy()
    calls: list[Call] = []
    stop = threading.Event()

    def client(index: int) -> None:
        rng = np.random.default_rng(index)
        while not stop.is_set():
            rows = np.sort(rng.choice(2000, size=int(rng.integers(1, 128)), replace=False))
            calls.append(call(server.port, rows, data_body(images[rows])))

    clients = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    try:
        originals = wait_for(lambda: len(pids := worker_pids(server.process.pid)) == 2 and pids, 30, "two workers")
        for pid in originals:  # the server answers once one worker is ready; the kills need both serving
            server.wait_for_log(f"Worker with pid {pid} ready for serving traffic", timeout=REPLACEMENT_S)
        for thread in clients:
            thread.start()
        wait_for(lambda: len(calls) >= CLIENTS, REPLACEMENT_S, "the clients' first answers")
        kills: list[tuple[float, float]] = []  # (before os.kill, after the victim is seen gone)
        known = set(originals)
        first, second = sorted(originals)

        def new_workers() -> set[int]:
            return worker_pids(server.process.pid) - known

        def answered_since(moment: float) -> int:
            return sum(c.began > moment and c.status == 200 for c in list(calls))

        for victim in (first, second):
            before = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda victim=victim: exited(victim), REPLACEMENT_S, f"worker {victim} gone after SIGKILL")
            kills.append((before, time.monotonic()))
            replacement = wait_for(new_workers, REPLACEMENT_S, "the master forks a new worker")
            known.update(replacement)
            if victim == first:  # before the second kill, the first replacement must have run init()
                ready = f"Worker with pid {replacement.pop()} ready for serving traffic"
                server.wait_for_log(ready, timeout=REPLACEMENT_S)
            wait_for(
                lambda: answered_since(kills[-1][1]) >= CLIENTS, REPLACEMENT_S, "answers to requests sent after it"
            )
    finally:
        stop.set()
        for thread in clients:
            thread.join(90)
        server.stop()
    assert not any(thread.is_alive() for thread in clients)

    assert_correct(calls, expected)
    failed = [c for c in calls if c.status != 200]

    def in_flight_at(c: Call, kill: tuple[float, float]) -> bool:
        before, after = kill
        return c.began <= after and c.ended >= before

    in_flight = [c for c in calls if any(in_flight_at(c, kill) for kill in kills)]
    print(
        f"\n{len(calls)} requests, {len(failed)} failed, {len(in_flight)} in flight at the {len(kills)} kills: "
        + "; ".join(sorted({c.error or str(c.status) for c in failed}))
    )
    assert all(c.error for c in failed), "a failure other than a connection error: " + str(failed[:3])
    assert all(c in in_flight for c in failed), "a request that was not in flight at a kill failed"
    next_kills = [before for before, _ in kills[1:]] + [float("inf")]
    for kill, next_kill in zip(kills, next_kills, strict=True):
        failed_here = [c for c in failed if in_flight_at(c, kill)]
        in_flight_here = [c for c in in_flight if in_flight_at(c, kill)]
        print(
            f"kill: {len(failed_here)} of the {len(in_flight_here)} requests in flight failed "
            f"(the victim was gone {(kill[1] - kill[0]) * 1e3:.0f} ms after os.kill)"
        )
        # At most one failure per client: a client has one request out at a time, and it sends the next only
        # after the reset, when the victim's threads are all dead.  (More than CLIENTS may be in flight at a kill:
        # a client may finish a request and send another within the span.)
        assert len(failed_here) <= CLIENTS
        answered_after = [c for c in calls if kill[1] < c.began < next_kill and c.status == 200]
        assert answered_after, "nothing was answered after a kill"
        recovery = min(c.ended for c in answered_after) - kill[0]
        print(f"first answer to a request sent after the kill: {recovery * 1e3:.0f} ms after it")  # a figure only
    log = server.log()
    for victim in originals:  # the master saw each worker die of the SIGKILL
        assert f"Worker (pid:{victim}) was sent SIGKILL" in log


# --- SIGTERM ------------------------------------------------------------------------------------------------

FAULTY_SCORE_PY = REPO / "tests" / "faulty_device_score.py"  # session calls wait while $STALL_FILE exists
ROWS = 16  # per request; one row per session call (MAX_BATCH_ROWS=1), so the leader's first call takes one row
IN_FLIGHT = 4  # plus one still uploading its body
# Bounds that only a broken server reaches (a test that passes never waits this long): the clients' wait for an
# answer and the test's wait for the master to exit.  Above the sum of the test's waits while the device is held.
HOLD_S = 300
METRICS_PORT = free_port()
DRAIN_ENV = {
    "WORKER_COUNT": "1",
    # The drain is tested, not gunicorn's deadline for it: the worker never reaches --graceful-timeout.
    "GUNICORN_CMD_ARGS": f"--threads 8 --graceful-timeout {10 * HOLD_S}",
    "MAX_BATCH_ROWS": "1",
    "MAX_REQUEST_ROWS": str(ROWS),
    "MAX_QUEUE_ROWS": str((IN_FLIGHT + 1) * ROWS),
    "MAX_QUEUE_WAIT_MS": str(10 * HOLD_S * 1000),  # nor the queue's deadline
    "LOG_REQUESTS": "errors",
    "METRICS_PORT": str(METRICS_PORT),
}


def queued_rows() -> float:
    """The worker's tfscoring_queued_rows gauge: rows in its batcher's queue not yet taken into a batch."""
    text = requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).text
    match = re.search(r"^tfscoring_queued_rows(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_0(model_dir, t10k, expected, tmp_path):
    """In flight at the SIGTERM: one request in a session call held on the device, others queued behind it in
    the worker's batcher, and one whose body is half uploaded.  The device is let go after the SIGTERM.  Every one
    of them is answered; a request sent after the SIGTERM is not."""
    images, _ = t10k
    stall = tmp_path / "stall"
    reached = stall.with_name(stall.name + "-reached")
    env = {**DRAIN_ENV, "STALL_FILE": str(stall)}
    server = ServerProcess(FAULTY_SCORE_PY, model_dir, tmp_path, env).wait_healthy()
    rows = np.arange(ROWS)
    body = data_body(images[rows])
    calls: list[Call] = []
    slow = [
        threading.Thread(target=lambda: calls.append(call(server.port, rows, body, HOLD_S))) for _ in range(IN_FLIGHT)
    ]
    upload = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HOLD_S)
    late: list[Call] = []
    newcomer = threading.Thread(target=lambda: late.append(call(server.port, rows[:1], data_body(images[:1]), HOLD_S)))
    try:
        stall.touch()  # from now on the device holds every session call
        upload.putrequest("POST", "/score")
        upload.putheader("Content-Type", "application/json")
        upload.putheader("Content-Length", str(len(body)))
        upload.endheaders()
        upload.send(body[: len(body) // 2])
        for thread in slow:
            thread.start()
        (worker,) = worker_pids(server.process.pid)
        assert accepting(worker, server.port)
        wait_for(lambda: connections(server.port) == (IN_FLIGHT + 1, 0), 30, "every request accepted by the worker")
        wait_for(reached.exists, 30, "the leader's first session call held on the device")
        # The leader's first call took one row; every other row of the four is queued behind it.
        wait_for(lambda: queued_rows() == IN_FLIGHT * ROWS - 1, 30, "the other requests queued behind the leader")
        assert calls == [], "the requests must still be in flight at the SIGTERM"  # nothing is scored while held
        server.process.send_signal(signal.SIGTERM)
        # The master closes its listening socket, then signals the worker, which stops accepting.
        wait_for(lambda: not accepting(worker, server.port), 30, "the worker to stop accepting connections")
        newcomer.start()
        # The newcomer's connection waits in the listen queue, which the worker, still draining, holds open.
        wait_for(lambda: connections(server.port)[1] == 1, 30, "the request sent after the SIGTERM queued")
        upload.send(body[len(body) // 2 :])
        stall.unlink()  # the device goes on: the worker answers what it holds, then exits
        uploaded = upload.getresponse()
        uploaded_answer = uploaded.status, json.loads(uploaded.read())
        exit_code = server.process.wait(HOLD_S)
        for thread in [*slow, newcomer]:
            thread.join(HOLD_S)
    finally:
        stall.unlink(missing_ok=True)  # so that a failed test's server drains too
        upload.close()
        server.stop()

    print(
        f"\nSIGTERM with {IN_FLIGHT + 1} requests in flight: master exited {exit_code}; answers "
        f"{[c.status for c in calls]} + {uploaded_answer[0]} (upload); a request sent after it: "
        f"{late[0].error or late[0].status}"
    )
    assert not any(thread.is_alive() for thread in [*slow, newcomer])
    assert [c.status for c in calls] == [200] * IN_FLIGHT
    assert_correct(calls, expected)
    assert uploaded_answer == (200, expected[rows].tolist())
    assert exit_code == 0
    assert "SIGKILL" not in server.log()  # the worker finished on its own, it was not killed at the deadline
    assert late[0].status is None, "a request sent after the SIGTERM was served"
    assert "Connection reset" in late[0].error or "Connection refused" in late[0].error, late[0].error

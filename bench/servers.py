"""Start the real azmlinfsrv as a subprocess on a free loopback port and talk to it: the one harness of the benchmark
and the tests (tests/support.py re-exports it), kept here so that bench/ imports nothing from tests/.  Every name
either side uses is public."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests

from tfscoring.config import ServerSettings, Settings
from tfscoring.process.generation import child_pids

REPO = Path(__file__).resolve().parents[1]
SCORE_PY = REPO / "server" / "score.py"
HOWTO_SCORE_PY = REPO / "bench" / "howto_score.py"
SERVE_PY = REPO / "server" / "serve.py"
AZMLINFSRV = Path(sys.executable).with_name("azmlinfsrv")
# How long a test waits for a line, a metric or a worker it expects: generous, for a loaded machine; a test
# that passes never waits this long.
SETTLE_S = 30

# Settings of the scoring script and the server that must not leak in from the caller's shell: dropped from the
# environment of every server started here, and by the tests that start make serve or the soak themselves.
ISOLATED_SETTINGS = {name.upper() for name in [*Settings.model_fields, *ServerSettings.model_fields]} | {
    "WORKER_COUNT",
    "GUNICORN_CMD_ARGS",
    "WORKER_PRELOAD",
}
# On a GPU machine the how-to's script would otherwise take all GPU memory from the other servers.
GPU_SHARING = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """azmlinfsrv on an entry script, on a free loopback port, with the caller's server settings kept out."""

    def __init__(self, entry_script: Path, model_dir: Path, log_dir: Path, env: dict[str, str] | None = None):
        base = {k: v for k, v in os.environ.items() if k not in ISOLATED_SETTINGS}
        base.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **GPU_SHARING})
        base["AML_APP_ROOT"] = str(REPO / "server")  # the entry script's folder, as serve.py sets it
        base.update(env or {})
        argv = [str(AZMLINFSRV), "--entry_script", str(entry_script), "--model_dir", str(model_dir)]
        self._start(argv, base, log_dir, "azmlinfsrv")

    def _start(self, argv: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        """Run `argv --port <free port>` from the repository, its output in log_dir/<name>-<port>.log."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.score_url = f"{self.url}/score"
        self._log = open(log_dir / f"{name}-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*argv, "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends gunicorn and every worker
        )

    def log(self) -> str:
        """The server's output so far.  Lines still to come are not in it: read it through wait_for_log to see a
        line appear, and through settled_log to see that one does not."""
        return Path(self._log.name).read_text(errors="replace")

    def wait_for_log(self, text: str, count: int = 1, timeout: float = SETTLE_S) -> str:
        """The log once `text` is in it (`count` times at least).  Gunicorn writes a request's access line after
        sending the response, and a worker logs from threads of its own, so a line may come after the answer."""
        return wait_for(lambda: (log := self.log()).count(text) >= count and log, timeout, f"{text!r} in the log")

    def settled_log(self, timeout: float = SETTLE_S) -> str:
        """The log once the server holds no connection open: by then every request it has answered has had all
        of its lines written, those written after the response included (gunicorn's access line, for one).  A
        worker closes a connection only after its last request's access line, so a line missing from this log
        is missing for good.  The callers must have closed their connections (requests.post does)."""
        wait_for(
            lambda: not open_connections(self.port), timeout, f"the server on :{self.port} closes every connection"
        )
        return self.log()

    def wait_healthy(self, timeout: float = 180) -> ServerProcess:
        try:
            wait_for_health(self.url + "/", self.process, self.log, timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def __enter__(self) -> ServerProcess:
        """`with ServerProcess(...) as server:` waits until it is healthy and stops it on the way out."""
        return self.wait_healthy()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def wait_exit(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        stop_group(self.process)
        self._log.close()


class FrontDoorProcess(ServerProcess):
    """server/serve.py as make serve runs it: nginx on a free loopback port, azmlinfsrv behind it."""

    def __init__(
        self, model_dir: Path, log_dir: Path, env: dict[str, str] | None = None, entry_script: Path = SCORE_PY
    ):
        base = {k: v for k, v in os.environ.items() if k not in ISOLATED_SETTINGS}
        base.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "METRICS_PORT": "0", **GPU_SHARING})
        base.update(env or {})
        argv = [sys.executable, str(SERVE_PY), "--model_dir", str(model_dir), "--entry_script", str(entry_script)]
        self._start(argv, base, log_dir, "serve")

    def wait_healthy(self, timeout: float = 180) -> FrontDoorProcess:
        try:
            wait_for_health(self.url + "/health/ready", self.process, self.log, timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def settled_log(self, timeout: float = SETTLE_S) -> str:
        """Not available here: the port is nginx's, and gunicorn sits behind it on a Unix socket with kept-alive
        upstream connections, so no connection count on a TCP port tells when gunicorn has written its last line
        for a request."""
        raise NotImplementedError(
            "FrontDoorProcess.settled_log: nginx keeps upstream connections to gunicorn alive on a Unix socket, so "
            "closed TCP connections on its port prove nothing about gunicorn's log; wait for a line the request "
            "writes after the one that must be absent (wait_for_log) instead"
        )

    def gunicorn_pid(self) -> int:
        """The gunicorn master: serve.py's child that runs azmlinfsrv."""
        return next(pid for pid in worker_pids(self.process.pid) if "azmlinfsrv" in _command_line(pid))

    def nginx_pid(self) -> int:
        return next(pid for pid in worker_pids(self.process.pid) if _command_line(pid).startswith("nginx"))

    def probe(self, name: str) -> int:
        return requests.get(f"{self.url}/health/{name}", timeout=10).status_code


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(master: int) -> set[int]:
    """The gunicorn workers: the live child processes of the master, from /proc."""
    return child_pids(master)


def open_connections(port: int) -> int:
    """Connections the server listening on `port` has accepted, or has queued to accept, and not yet closed."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:  # no such table: IPv6 disabled, for one
            continue
        for line in lines:
            fields = line.split()
            # ESTABLISHED, SYN_RECV or CLOSE_WAIT (the client has closed, the server not yet) on the server's side
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] in ("01", "03", "08"):
                count += 1
    return count


def wait_for(condition: Callable[[], object], timeout: float, what: str):
    """Poll `condition` until it returns something true, and return that; AssertionError naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def wait_for_health(url: str, process: subprocess.Popen, log: Callable[[], str], timeout: float) -> None:
    """Poll GET url until it answers 200; RuntimeError with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log()[-5000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not healthy after {timeout}s:\n{log()[-5000:]}")


def stop_group(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM a process started with start_new_session and all of its children; SIGKILL after `grace` s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def send_raw(port: int, request: bytes, timeout: float = 60) -> bytes:
    """Send raw bytes to 127.0.0.1:port, half-close, and read what comes back until the server closes."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def cut_short_request() -> bytes:
    """A POST /score announcing two raw float32 rows in Content-Length and carrying one."""
    row = np.zeros(784, np.float32).tobytes()
    return (
        b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        + f"Content-Length: {2 * len(row)}\r\nConnection: close\r\n\r\n".encode()
        + row
    )


def data_body(rows: np.ndarray | list) -> bytes:
    """The how-to's request body, {"data": rows}, as JSON bytes."""
    return json.dumps({"data": rows.tolist() if isinstance(rows, np.ndarray) else rows}).encode()

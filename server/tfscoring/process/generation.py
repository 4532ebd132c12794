"""One generation of workers: an azmlinfsrv (a gunicorn master and its workers) serving one model version.

Each listens on a Unix socket of its own, bound here and handed over socket-activated (LISTEN_FDS, as systemd
does: gunicorn then never unlinks it, which matters once the socket has been renamed onto the front door's path),
and its workers write their states into a folder of their own, which its PodHealth reads.  The first
generation's output goes straight to serve.py's stdout, as always; a later one's (a version swapped in) passes
through serve.py, which copies it on line by line and keeps the last lines, to say why the version failed if it
does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tfscoring import log
from tfscoring.process.health import PodHealth

DRAIN_S = 30  # per child: gunicorn's own --graceful-timeout is 30 s
REFRESH_S = 0.25
TAIL_LINES = 64
TAIL_LINE_CHARS = 1000
# The line that says why a worker could not start: score.py's own ("start-up failed: ..."), else the last error.
_WHY = (re.compile(r"start-up failed: .*"), re.compile(r".*\b(CRITICAL|ERROR|Error|Exception)\b.*"))
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when serve.py dies, so that nothing outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_pids(parent: int) -> set[int]:
    """The live child processes of `parent`, from /proc (the gunicorn workers of its master)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == parent and fields[0] != "Z":  # Z: exited, not yet reaped
            pids.add(int(stat.parent.name))
    return pids


@dataclass
class OutputTail:
    """The last lines a child wrote, kept as they are copied on to stdout."""

    lines: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    _partial: bytes = b""

    def add(self, chunk: bytes) -> None:
        *whole, self._partial = (self._partial + chunk).split(b"\n")
        self._partial = self._partial[-TAIL_LINE_CHARS:]
        self.lines.extend(line.decode(errors="replace").strip()[:TAIL_LINE_CHARS] for line in whole)

    def why(self) -> str:
        """The line that best says why the child stopped: score.py's "start-up failed", else the last error line,
        else the last line; empty when it wrote nothing."""
        lines = [line for line in self.lines if line]
        for pattern in _WHY:
            for line in reversed(lines):
                if match := pattern.search(line):
                    return match[0]
        return lines[-1] if lines else ""


class Generation:
    """An azmlinfsrv started on `socket_path` with `env`; where the model folder is versioned, on `version`'s
    folder itself (MODEL_VERSION pinned to it too)."""

    def __init__(
        self,
        number: int,
        version: str | None,
        run_dir: Path,
        configured: int,
        hang_s: float,
        busy_s: float,
        folder: Path | None = None,
    ):
        self.number = number
        self.version = version
        self.folder = folder  # the version's folder, where the model folder holds versions
        suffix = f"-{number}" if number else ""  # the first generation's names are those of a server without swaps
        self.socket_path = run_dir / f"gunicorn{suffix}.sock"
        self.state_dir = run_dir / f"workers{suffix}"
        self.state_dir.mkdir()
        self.health = PodHealth(self.state_dir, configured, hang_s, busy_s)
        self.tail: OutputTail | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.exited: asyncio.Task | None = None  # the process's exit code, once it exits
        # Its socket's path is its own to remove once stopped: a later generation's, until renamed onto the front
        # door's path (the first generation's from the start), after which a newer generation may listen there.
        self._own_path = bool(number)
        self._watch: asyncio.Task | None = None
        self._copy: asyncio.Task | None = None

    def bind(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(2048)
        return listener

    async def start(self, listener: socket.socket, server_argv: list[str], env: dict[str, str], piped: bool) -> None:
        """Start azmlinfsrv on `listener` (closed here: gunicorn holds it then); with `piped`, its output copied
        through this process and its tail kept."""
        # Socket activation: gunicorn takes fd 3 as its listener when LISTEN_PID is its own pid.  The child
        # moves the socket to fd 3 before exec; the shell names its own pid and execs azmlinfsrv under it.
        fd = listener.fileno()

        def in_child() -> None:
            os.dup2(fd, 3)
            die_with_parent()

        env = {**env, "WORKER_STATE_DIR": str(self.state_dir), "LISTEN_FDS": "1"}
        if self.version is not None:
            env["MODEL_VERSION"] = self.version  # every worker of this generation, replacements too, loads this one
        if self.folder is not None:
            # The version's own folder as the model directory: azmlinfsrv reads <name>/<version>/ as one registered
            # model, where the versioned folder above it would read as a folder of models (and log a traceback).
            server_argv = with_model_dir(server_argv, self.folder)
            env["AZUREML_MODEL_DIR"] = str(self.folder)
        output = None
        if piped:
            # A pipe of our own, not asyncio's: asyncio would not see azmlinfsrv exit while its workers hold it.
            read_end, output = os.pipe()
        try:
            self.process = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', *server_argv,
                env=env, pass_fds=[3], preexec_fn=in_child, start_new_session=True, stdout=output, stderr=output,
            )  # fmt: skip
        finally:
            listener.close()  # gunicorn holds it now
            if output is not None:
                os.close(output)
        if piped:
            self.tail = OutputTail()
            self._copy = asyncio.create_task(copy_lines(read_end, self.tail))
        self.exited = asyncio.create_task(self.process.wait())
        self._watch = asyncio.create_task(self._refresh())

    def take_path(self, path: Path) -> None:
        """Rename the listening socket onto `path` (atomically: whoever connects to `path` from now on reaches this
        generation, and no one reaches the one that listened there before)."""
        os.rename(self.socket_path, path)
        self._own_path = False

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _refresh(self) -> None:
        """Read the workers' states (readiness, the probes) and kill a frozen one, while this generation serves."""
        while True:
            self.health.refresh(child_pids(self.process.pid))
            await asyncio.sleep(REFRESH_S)

    def unwatch(self) -> None:
        """Stop judging the workers: they drain, and are stopped by their master, not killed as frozen."""
        if self._watch is not None:
            self._watch.cancel()

    async def ready(self, timeout_s: float) -> str | None:
        """Wait until every configured worker serves (loaded and warm): None then, or why not (its azmlinfsrv
        exited, or `timeout_s` passed first)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.health.started:
            if self.exited.done():
                await self.output_done()
                why = self.tail.why() if self.tail is not None else ""
                return f"its azmlinfsrv exited with {self.exited.result()}" + (f": {why}" if why else "")
            if asyncio.get_running_loop().time() > deadline:
                reason = self.health.startup().reason
                return f"not every worker was serving within {timeout_s:g} s (MODEL_LOAD_TIMEOUT_S): {reason}"
            await asyncio.sleep(REFRESH_S)
        return None

    async def output_done(self) -> None:
        """The copy of its output, to its end (bounded: a worker left holding the pipe cannot keep us here)."""
        if self._copy is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._copy), 5)

    async def stop(self) -> None:
        """SIGTERM: gunicorn's workers finish the requests they hold (SIGKILL after DRAIN_S); then whatever is left
        of its process group, and its folders."""
        self.unwatch()
        if self.process is not None:
            await stop_child(self.process, signal.SIGTERM)
            await self.output_done()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if self._own_path:  # a swap that failed: its socket never took the front door's path
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()


def with_model_dir(server_argv: list[str], folder: Path) -> list[str]:
    """azmlinfsrv's arguments with every --model_dir given as `folder`."""
    argv, replace_next = [], False
    for arg in server_argv:
        if replace_next:
            arg, replace_next = str(folder), False
        elif arg == "--model_dir":
            replace_next = True
        elif arg.startswith("--model_dir="):
            arg = f"--model_dir={folder}"
        argv.append(arg)
    return argv


async def stop_child(process: asyncio.subprocess.Process, signum: int) -> None:
    """Stop a child with `signum`, SIGKILL after DRAIN_S; then whatever is left of its process group (the
    workers of a master that died first)."""
    if process.returncode is None:
        process.send_signal(signum)
        try:
            await asyncio.wait_for(process.wait(), DRAIN_S + 5)
        except asyncio.TimeoutError:
            log.warning("pid %d did not stop within %d s: killing it", process.pid, DRAIN_S + 5)
            process.kill()
            await process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def copy_lines(fd: int, tail: OutputTail | None = None) -> None:
    """Copy what is written to the pipe `fd` to stdout (whole lines: each writer writes a line with one write()),
    keeping its last lines in `tail`."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    while chunk := await reader.read(65536):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        if tail is not None:
            tail.add(chunk)

"""One process tree: nginx in front, azmlinfsrv behind it on a Unix socket, the probes in between.

serve.py runs this in the container's main process:

- it binds the workers' Unix socket itself and hands it to gunicorn as a socket-activated listener
  (LISTEN_FDS, as systemd does), since azmlinfsrv always binds 0.0.0.0:<port> otherwise;
- it starts azmlinfsrv and nginx, answers the health probes that nginx passes on (health.py), and
  kills a worker that stops writing its state (frozen) so that gunicorn replaces it;
- if either child dies, it stops the other and exits non-zero, so the container restarts;
- on SIGTERM or SIGINT it drains in order: nginx stops accepting and finishes the requests it holds
  (SIGQUIT), then gunicorn finishes its own (SIGTERM), then it exits 0.

Each child leads a process group of its own, killed whole once the child is gone, and gets SIGTERM if
this process dies (PR_SET_PDEATHSIG), so nothing outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

from tfscoring import log
from tfscoring.config import ServerSettings
from tfscoring.process import frontdoor, rundir
from tfscoring.process.health import PodHealth
from tfscoring.responder import REASONS, Answer, Request, Responder

REFRESH_S = 0.25
DRAIN_S = 30  # per child: gunicorn's own --graceful-timeout is 30 s
PROBE_DEADLINE_S = 5.0  # for one probe's connection; nginx gives up on a probe after 5 s (proxy_read_timeout)
# About what nginx passes on (large_client_header_buffers 4 16k, client headers included); a longer head is a 431.
PROBE_MAX_HEAD = 1 << 16
_PR_SET_PDEATHSIG = 1


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


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    def __init__(self, settings: ServerSettings, port: int, server_argv: list[str], env: dict[str, str]):
        self._settings = settings
        self._port = port
        self._server_argv = server_argv  # azmlinfsrv and its arguments
        self._env = env
        self._run_dir = rundir.create()  # locked while this process lives; dead servers' folders removed
        state_dir = self._run_dir / "workers"
        state_dir.mkdir()
        self._env["WORKER_STATE_DIR"] = str(state_dir)
        self._health = PodHealth(state_dir, int(env["WORKER_COUNT"]), settings.worker_hang_s, settings.busy_limit_s)
        self._stop = asyncio.Event()

    def run(self) -> int:
        try:
            return asyncio.run(self._run())
        finally:
            shutil.rmtree(self._run_dir, ignore_errors=True)

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        config = frontdoor.write_config(self._settings, self._port, self._run_dir)
        frontdoor.check(config)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self._run_dir / "gunicorn.sock"))
        listener.listen(2048)
        probes = await self._answer_probes(self._run_dir / "health.sock")
        frontdoor.give_to_workers(self._run_dir)
        gunicorn = await self._start_gunicorn(listener)
        listener.close()  # gunicorn holds it now
        # nginx's access lines go through a pipe copied to this process's stdout: a non-root nginx cannot
        # reopen /dev/stdout when it is a file another user owns (a container runtime's log file).
        # (A pipe of its own, not asyncio's: asyncio would not see nginx exit while its workers hold the pipe.)
        access_log, nginx_stdout = os.pipe()
        nginx = await asyncio.create_subprocess_exec(
            *frontdoor.command(config), stdout=nginx_stdout, preexec_fn=_die_with_parent, start_new_session=True
        )
        os.close(nginx_stdout)
        copy = asyncio.create_task(_copy_lines(access_log))
        log.info("front door on :%d (nginx %d) -> azmlinfsrv (gunicorn %d) on %s/gunicorn.sock",
                 self._port, nginx.pid, gunicorn.pid, self._run_dir)  # fmt: skip
        watch = asyncio.create_task(self._watch(gunicorn.pid))
        exited = {asyncio.create_task(gunicorn.wait()): "azmlinfsrv", asyncio.create_task(nginx.wait()): "nginx"}
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([*exited, stop], return_when=asyncio.FIRST_COMPLETED)
        self._health.stopping = True
        if stop in done:
            log.info("stopping: nginx finishes the requests it holds, then azmlinfsrv")
            code = 0
        else:
            task = next(iter(done))
            code = task.result() or 1  # a child that stops on its own is a failure, even with 0
            log.critical("%s exited with %s; stopping the server", exited[task], task.result())
        await _stop_child(nginx, signal.SIGQUIT)  # graceful: stop accepting, finish what it holds
        await _stop_child(gunicorn, signal.SIGTERM)  # graceful: workers finish their requests
        watch.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(copy, 5)  # the last lines nginx wrote
        probes.close()
        return code

    async def _start_gunicorn(self, listener: socket.socket) -> asyncio.subprocess.Process:
        # Socket activation: gunicorn takes fd 3 as its listener when LISTEN_PID is its own pid.  The child
        # moves the socket to fd 3 before exec; the shell names its own pid and execs azmlinfsrv under it.
        fd = listener.fileno()

        def in_child() -> None:
            os.dup2(fd, 3)
            _die_with_parent()

        return await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', *self._server_argv,
            env={**self._env, "LISTEN_FDS": "1"}, pass_fds=[3], preexec_fn=in_child, start_new_session=True,
        )  # fmt: skip

    async def _watch(self, master: int) -> None:
        while True:
            self._health.refresh(child_pids(master))
            await asyncio.sleep(REFRESH_S)

    async def _answer_probes(self, path: Path) -> asyncio.Server:
        """Answer the probes nginx passes on, on a Unix socket at `path`: no bound on connections of their own
        (nginx bounds them, MAX_CONNECTIONS), so that no probe is ever closed to make room for another."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))  # listening once the responder starts
        responder = Responder(
            functools.partial(_probe_answer, self._health),
            max_connections=None,
            deadline_s=PROBE_DEADLINE_S,
            max_head=PROBE_MAX_HEAD,
            refusal=_probe_refusal,
        )
        return await responder.start(listener)


def _probe_answer(health: PodHealth, request: Request) -> Answer:
    probe = request.path.rsplit("/", 1)[-1]
    if probe in ("startup", "ready", "live"):
        status, body = health.answer(probe)
    else:
        status, body = 404, {"error": "no such probe; try /health/startup, /health/ready or /health/live"}
    return _json(status, body)


def _probe_refusal(status: int) -> Answer:
    """A head too long, or a request line nginx would not write: in JSON, as every error that reaches a client
    through the front door."""
    return _json(status, {"error": REASONS[status].lower()})


def _json(status: int, body: dict) -> Answer:
    return Answer(
        status, (("Content-Type", "application/json"), ("Cache-Control", "no-store")), json.dumps(body).encode() + b"\n"
    )


async def _copy_lines(fd: int) -> None:
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    # nginx writes each access line with one write(): what one read returns is whole lines.
    while chunk := await reader.read(65536):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


async def _stop_child(process: asyncio.subprocess.Process, signum: int) -> None:
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


def main(settings: ServerSettings, port: int, server_argv: list[str], env: dict[str, str]) -> None:
    sys.exit(Supervisor(settings, port, server_argv, env).run())

"""One process tree: nginx in front, azmlinfsrv behind it on a Unix socket, the probes in between.

serve.py runs this in the container's main process:

- it binds the workers' Unix socket itself and hands it to gunicorn as a socket-activated listener
  (LISTEN_FDS, as systemd does), since azmlinfsrv always binds 0.0.0.0:<port> otherwise;
- it starts azmlinfsrv and nginx, answers the health probes that nginx passes on (health.py), and
  kills a worker that stops writing its state (frozen) so that gunicorn replaces it;
- if either child dies, it stops the other and exits non-zero, so the container restarts;
- on SIGTERM or SIGINT it drains in order: nginx stops accepting and finishes the requests it holds
  (SIGQUIT), then gunicorn finishes its own (SIGTERM), then it exits 0;
- where the model folder holds <version>/ subfolders, it swaps the workers onto a new version, blue/green
  (versionwatch.py says when): a second azmlinfsrv, pinned to the new version, starts on a socket of its own
  (generation.py); once every one of its workers serves, its socket is renamed onto the path nginx connects
  to, so that every connection nginx opens from then on reaches it, and the old azmlinfsrv drains and exits
  (SIGTERM), its memory with it.  A new version that fails to load or warm is stopped; the old one serves on.

Each child leads a process group of its own, killed whole once the child is gone, and gets SIGTERM if
this process dies (PR_SET_PDEATHSIG), so nothing outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
from pathlib import Path

from tfscoring import log, versions
from tfscoring.config import ServerSettings
from tfscoring.process import frontdoor, rundir
from tfscoring.process.generation import Generation, copy_lines, die_with_parent, stop_child
from tfscoring.process.health import PodHealth
from tfscoring.process.versionwatch import VersionWatch
from tfscoring.responder import REASONS, Answer, Request, Responder

PROBE_DEADLINE_S = 5.0  # for one probe's connection; nginx gives up on a probe after 5 s (proxy_read_timeout)
# About what nginx passes on (large_client_header_buffers 4 16k, client headers included); a longer head is a 431.
PROBE_MAX_HEAD = 1 << 16
SOCKET = "gunicorn.sock"  # the path nginx connects to (frontdoor.py), whichever generation listens on it
# metrics.py's name for a folder of its own per gunicorn master (observability/metrics.py's _DIR_PREFIX): one
# inherited from whoever started this server is not this server's.
_DEFAULT_METRICS_DIR = re.compile(r"tfscoring-metrics-\d+-\d+")


class Supervisor:
    def __init__(
        self, settings: ServerSettings, port: int, server_argv: list[str], env: dict[str, str], model_root: Path | None
    ):
        self._settings = settings
        self._port = port
        self._server_argv = server_argv  # azmlinfsrv and its arguments
        self._env = env
        self._run_dir = rundir.create()  # locked while this process lives; dead servers' folders removed
        _share_metrics(self._env, self._run_dir)
        self._model_root = model_root
        self._generations: list[Generation] = []  # started and not yet stopped: serving, loading or draining
        self._serving: Generation | None = None  # the one nginx's connections reach
        self._watch: VersionWatch | None = None
        self._stop = asyncio.Event()
        self._switched = asyncio.Event()  # a swap has made another generation the serving one
        self._swapping = asyncio.Lock()  # one swap or recovery at a time
        self._recovering = False  # a version is loading in place of a serving generation that died

    def run(self) -> int:
        try:
            return asyncio.run(self._run())
        finally:
            shutil.rmtree(self._run_dir, ignore_errors=True)

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        config = frontdoor.write_config(self._settings, self._port, self._run_dir)
        frontdoor.check(config)
        first = self._generation(self._first_version())
        listener = first.bind()
        probes = await self._answer_probes(self._run_dir / "health.sock")
        frontdoor.give_to_workers(self._run_dir)
        await first.start(listener, self._server_argv, self._env, piped=False)
        self._serving = first
        # nginx's access lines go through a pipe copied to this process's stdout: a non-root nginx cannot
        # reopen /dev/stdout when it is a file another user owns (a container runtime's log file).
        # (A pipe of its own, not asyncio's: asyncio would not see nginx exit while its workers hold the pipe.)
        access_log, nginx_stdout = os.pipe()
        nginx = await asyncio.create_subprocess_exec(
            *frontdoor.command(config), stdout=nginx_stdout, preexec_fn=die_with_parent, start_new_session=True
        )
        os.close(nginx_stdout)
        copy = asyncio.create_task(copy_lines(access_log))
        log.info("front door on :%d (nginx %d) -> azmlinfsrv (gunicorn %d) on %s/%s",
                 self._port, nginx.pid, first.pid, self._run_dir, SOCKET)  # fmt: skip
        follow = asyncio.create_task(self._follow_versions()) if self._watch else None
        code = await self._until_stopped(nginx)
        if follow is not None:
            follow.cancel()  # a swap under way leaves its generation in self._generations, stopped below
            with contextlib.suppress(asyncio.CancelledError):
                await follow
        await stop_child(nginx, signal.SIGQUIT)  # graceful: stop accepting, finish what it holds
        # graceful: workers finish their requests (every generation: the serving one, one loading, one draining)
        await asyncio.gather(*(generation.stop() for generation in self._generations))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(copy, 5)  # the last lines nginx wrote
        probes.close()
        return code

    async def _until_stopped(self, nginx: asyncio.subprocess.Process) -> int:
        """Wait for SIGTERM (0) or a child that exits on its own (its code, or 1): nginx, or the serving
        azmlinfsrv, whichever generation serves by then, unless a version can be started in its place (_recover)."""
        stop = asyncio.create_task(self._stop.wait())
        nginx_exited = asyncio.create_task(nginx.wait())
        while True:
            serving = self._serving
            switched = asyncio.create_task(self._switched.wait())
            done, _ = await asyncio.wait([stop, nginx_exited, serving.exited, switched], return_when="FIRST_COMPLETED")
            switched.cancel()
            self._switched.clear()
            if stop in done:
                self._serving.health.stopping = True
                log.info("stopping: nginx finishes the requests it holds, then azmlinfsrv")
                return 0
            exited = {nginx_exited: "nginx", serving.exited: "azmlinfsrv"}
            task = next((task for task in exited if task in done), None)
            if task is serving.exited and serving is self._serving and self._watch is not None:
                recovery = asyncio.create_task(self._recover(serving))
                await asyncio.wait([recovery, stop], return_when="FIRST_COMPLETED")
                if not recovery.done():  # SIGTERM meanwhile: the generation it started is stopped with the others
                    recovery.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await recovery
                    continue
                if recovery.result():
                    continue
            if task is nginx_exited or (task is serving.exited and serving is self._serving):
                self._serving.health.stopping = True
                log.critical("%s exited with %s; stopping the server", exited[task], task.result())
                return task.result() or 1  # a child that stops on its own is a failure, even with 0
            # a swap: the generation that served before drains, and its exit is no failure; the new one is watched

    def _generation(self, version: str | None) -> Generation:
        number = len(self._generations) and self._generations[-1].number + 1
        folder = None if version is None else versions.served_folder(self._model_root, version).path
        generation = Generation(number, version, self._run_dir, int(self._env["WORKER_COUNT"]),
                                self._settings.worker_hang_s, self._settings.busy_limit_s, folder)  # fmt: skip
        self._generations.append(generation)
        return generation

    def _first_version(self) -> str | None:
        """The version the first generation serves, pinned in its workers' MODEL_VERSION so that a worker gunicorn
        replaces later loads the same one: None where the model folder holds no versions; MODEL_VERSION's where it
        pins one (StartupError: not there), and no watch; else the highest, and the watch starts."""
        root, pinned = self._model_root, self._settings.model_version
        found = versions.versions(root) if root is not None else []
        if not found:
            return None
        if pinned is not None:
            log.info("MODEL_VERSION=%s pins the version served of %s: no swaps", pinned, root)
            return versions.served_folder(root, pinned).version  # StartupError: not there
        version = str(found[-1])
        poll = self._settings.model_poll_s
        self._watch = VersionWatch(root, version, poll)
        when = f"every {poll:g} s (MODEL_POLL_S) and on SIGHUP" if poll else "on SIGHUP (MODEL_POLL_S=0)"
        log.info("serving version %s of %s; a newer version is looked for %s", version, root, when)
        return version

    def _hangup(self) -> None:
        if self._watch is not None:
            self._watch.ask()
        elif self._settings.model_version is not None:
            log.info("SIGHUP: MODEL_VERSION=%s pins the version served: nothing to swap", self._settings.model_version)
        else:
            log.info("SIGHUP: %s holds no <version>/ subfolders: nothing to swap", self._model_root)

    async def _follow_versions(self) -> None:
        """Swap onto each new version as it is found; never stops the server."""
        watch = self._watch
        while True:
            cause = await watch.next_look()
            try:
                version = watch.due()
                if version is None:
                    if cause == "SIGHUP":
                        log.info(
                            "SIGHUP: version %s is the highest under %s: nothing to swap", watch.serving, watch.root
                        )
                    continue
                await self._swap(version, cause)
            except Exception:  # a bug here must not stop a server that serves
                log.exception("looking for a new version under %s failed; version %s serves on", watch.root,
                              watch.serving)  # fmt: skip

    async def _swap(self, version: str, cause: str) -> None:
        """Start `version` beside the serving generation; once all its workers serve, send every new connection to
        it and drain the old one.  If it fails to start, it is stopped and the old one serves on."""
        async with self._swapping:
            if version == self._watch.serving:  # a recovery started it meanwhile
                return
            before = self._watch.fingerprint(version)  # as it was when its load began: a copy may finish meanwhile
            old, loop = self._serving, asyncio.get_running_loop()
            found = loop.time()
            log.info("version %s found under %s (%s): starting its workers beside version %s's", version,
                     self._watch.root, cause, old.version)  # fmt: skip
            new, why = await self._start_version(version)
            if new is None:
                log.error("version %s under %s is not served: %s; version %s serves on (tried again when a newer "
                          "version appears or its folder changes, or on SIGHUP)", version, self._watch.root, why,
                          old.version)  # fmt: skip
                self._watch.failed(version, before)
                return
            self._switch_to(new)
            log.info("version %s serves (its workers ready %.1f s after it was found); version %s drains", version,
                     loop.time() - found, old.version)  # fmt: skip
            await old.stop()
            self._generations.remove(old)
            log.info("version %s stopped (gunicorn %d)", old.version, old.pid)

    async def _recover(self, dead: Generation) -> bool:
        """The serving azmlinfsrv exited on its own (gunicorn halts when a worker it replaces cannot start: the
        version's folder removed, say): start the highest version there is in its place.  Nothing serves until it
        is ready (nginx answers 502 meanwhile); False where no version can be served, and the server stops."""
        async with self._swapping:
            if self._serving is not dead:  # a swap put another in its place meanwhile
                return True
            if not dead.health.started:  # it never served (a broken first version): nothing to recover
                return False
            try:
                return await self._start_in_place_of(dead)
            except Exception:  # a bug, or the folder changing under it: the server stops in order, not with a trace
                log.exception("starting a version in place of version %s failed", dead.version)
                return False
            finally:
                self._recovering = False

    async def _start_in_place_of(self, dead: Generation) -> bool:
        """The versions there are, highest first, but those that failed (the dead one's own included, where its
        folder is still there), until one serves."""
        found = [str(v) for v in reversed(versions.versions(self._watch.root))]
        candidates = [v for v in found if v not in self._watch.failed_versions] or found
        if not candidates:
            log.critical("azmlinfsrv of version %s exited with %s, and %s holds no version to serve in its place",
                         dead.version, dead.exited.result(), self._watch.root)  # fmt: skip
            return False
        self._recovering = True  # the probes judge the version loading in its place
        for version in candidates:
            log.critical("azmlinfsrv of version %s exited with %s; starting version %s of %s in its place (nothing "
                         "is served until it is ready)", dead.version, dead.exited.result(), version,
                         self._watch.root)  # fmt: skip
            new, why = await self._start_version(version)
            if new is None:
                log.critical("version %s under %s cannot be served either: %s", version, self._watch.root, why)
                self._watch.failed(version)
                continue
            self._switch_to(new)
            await dead.stop()  # what is left of it: its process group, its folders
            self._generations.remove(dead)
            log.info("version %s serves again", version)
            return True
        return False

    async def _start_version(self, version: str) -> tuple[Generation | None, str]:
        """A new generation on `version`, once every one of its workers serves; (None, why) where it did not start,
        its processes stopped."""
        new = self._generation(version)
        listener = new.bind()
        frontdoor.give_to_workers(self._run_dir, [new.socket_path])  # as root, nginx's workers connect as nobody
        await new.start(listener, self._server_argv, self._env, piped=True)
        why = await new.ready(self._settings.model_load_timeout_s)
        if why is None:
            return new, ""
        await new.stop()
        self._generations.remove(new)
        return None, why

    def _switch_to(self, new: Generation) -> None:
        # A rename is atomic: every connection nginx opens from here on reaches the new workers.  Requests the old
        # ones hold are answered by them; one nginx sends on a kept-alive connection to an old worker that closes
        # first is sent again (proxy_next_upstream), on a new connection: to the new workers.
        new.take_path(self._run_dir / SOCKET)
        self._serving, self._watch.serving = new, new.version
        self._switched.set()

    async def _answer_probes(self, path: Path) -> asyncio.Server:
        """Answer the probes nginx passes on, on a Unix socket at `path`: no bound on connections of their own
        (nginx bounds them, MAX_CONNECTIONS), so that no probe is ever closed to make room for another."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))  # listening once the responder starts
        responder = Responder(
            self._probe_answer,
            max_connections=None,
            deadline_s=PROBE_DEADLINE_S,
            max_head=PROBE_MAX_HEAD,
            refusal=_probe_refusal,
        )
        return await responder.start(listener)

    def _probe_answer(self, request: Request) -> Answer:
        """The serving generation's health: a new version's workers are judged once requests reach them."""
        loading = self._generations[-1]
        if self._recovering and loading is not self._serving:  # the serving one died: the one loading in its place
            return _probe_answer(loading.health, request)
        return _probe_answer(self._serving.health, request)


def _share_metrics(env: dict[str, str], run_dir: Path) -> None:
    """One Prometheus multiprocess folder for every generation of this server (unless the operator names one): in it
    the totals go on across a swap, and the metrics port's lock is one, so a new generation's worker takes the
    port over the moment the old holder exits.  metrics.py's default, a folder per gunicorn master, would start a
    new version's counters from zero and leave the port to whichever worker retries first."""
    given = env.get("PROMETHEUS_MULTIPROC_DIR")
    if not given or _DEFAULT_METRICS_DIR.fullmatch(Path(given).name):
        env["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "metrics")


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


def main(
    settings: ServerSettings, port: int, server_argv: list[str], env: dict[str, str], model_root: Path | None = None
) -> None:
    sys.exit(Supervisor(settings, port, server_argv, env, model_root).run())

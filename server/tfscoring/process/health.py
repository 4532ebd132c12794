"""The pod's health, judged by serve.py from the workers' state files (workerstate.py).

- startup: every configured worker has loaded and warmed its model (once true, it stays true);
- ready: started, not shutting down, as many workers serving as configured, none failed, and not
  every worker saturated (batch queue or in-flight budget nearly full);
- busy is not frozen: a serving worker whose state has gone stale is judged from /proc, which needs none of its
  threads to run.  Stopped (SIGSTOP, a debugger) or using no CPU (a deadlock, a hung driver call holding the
  process): frozen, killed after WORKER_HANG_S as before.  Using CPU (a long native call that holds the GIL,
  so its heartbeat thread cannot run): busy, counted as serving and saturated, and killed only once silent
  for WORKER_BUSY_S (an endless loop is a fault too).  Progress: one of its threads used at least
  BUSY_CPU_SHARE of a core over PROGRESS_WINDOW_S (threads waiting for the GIL wake every 5 ms, and use little).
- live: false only when the server is beyond saving: for LIVE_GRACE_S since start-up finished, no
  worker has served and none has been loading (gunicorn could not bring one back), so that
  Kubernetes restarts the container.  A busy or saturated pod stays live, and so does one whose
  replacement worker is still loading its model (gunicorn's WORKER_TIMEOUT ends a load that hangs).

The probes are answered by serve.py's own event loop, never by a scoring thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from tfscoring import log

STALE_S = 3.0  # a state older than this is not counted as serving (the worker writes every 0.5 s)
LIVE_GRACE_S = 60.0
QUIET_S = 1.0  # two heartbeats missed: from here on a worker's progress is judged from /proc
PROGRESS_WINDOW_S = 1.0
# Share of a core one thread of a silent worker must use over PROGRESS_WINDOW_S to count as busy.  Measured here
# over 2 s, 16 threads besides the main one: a main thread holding the GIL in orjson.loads used 100 % of a core;
# in a deadlock (the GIL held by a thread asleep) the process used 3.5 % in all, spread over the threads that
# wait for the GIL, and the busiest thread 0.5 %; a SIGSTOPped process 0.  One thread, not the process: the
# waiters' share grows with their number, a busy thread's does not shrink with it.
BUSY_CPU_SHARE = 0.05
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_state(pid: int) -> tuple[str, dict[int, float]] | None:
    """A process's state letter (R, S, D, T, t, Z...) and the CPU seconds each of its threads has used, from
    /proc (no thread of the process needs to run); None when it is gone."""
    try:
        letter = _stat_fields(Path(f"/proc/{pid}/stat"))[0]
    except (OSError, IndexError):
        return None
    threads = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(stat)
            threads[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime
    return letter, threads


def _stat_fields(path: Path) -> list[str]:
    return path.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold ")" and spaces


@dataclass
class _Progress:
    """When a worker last made progress: wrote its state, or used CPU (judged over PROGRESS_WINDOW_S)."""

    at: float  # monotonic: its last state write, or the last window in which it used CPU
    cpu: dict[int, float] = field(default_factory=dict)  # each thread's CPU seconds at `checked`
    checked: float | None = None  # the window's start; None while it writes its state
    busy: bool = False
    logged_busy: bool = False  # the log has said it is busy, not frozen
    idle: bool = False  # stopped, or its last measured window used no CPU: frozen once silent for WORKER_HANG_S


@dataclass
class Verdict:
    ok: bool
    reason: str

    def body(self, probe: str, serving: int, configured: int) -> dict:
        return {"probe": probe, "status": "ok" if self.ok else "failing", "reason": self.reason,
                "workers": {"serving": serving, "configured": configured}}  # fmt: skip


@dataclass
class PodHealth:
    state_dir: Path
    configured: int
    hang_s: float
    busy_s: float
    started: bool = False
    stopping: bool = False
    _last_serving: float = field(default_factory=time.monotonic)
    _states: dict[int, dict] = field(default_factory=dict)
    _killed: set[int] = field(default_factory=set)
    _progress: dict[int, _Progress] = field(default_factory=dict)

    def refresh(self, workers: set[int]) -> None:
        """Read the live workers' states; forget dead ones; kill a serving worker that has gone silent."""
        now = time.monotonic()
        states = {}
        for path in self.state_dir.glob("*.json"):
            pid = int(path.stem) if path.stem.isdigit() else None
            if pid not in workers:
                path.unlink(missing_ok=True)  # a worker that is gone (or never was one of ours)
                continue
            try:
                states[pid] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced while read: the next round reads it
        self._states = states
        self._killed &= workers
        self._progress = {pid: p for pid, p in self._progress.items() if pid in workers}
        for pid, state in states.items():
            if state["phase"] != "serving" or pid in self._killed:
                continue
            verdict = self._judge(pid, state, now)
            if verdict:
                self._killed.add(pid)
                log.critical("worker %d %s: killed, to be replaced", pid, verdict)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        serving = self.serving()
        if serving or self._fresh("loading"):
            self._last_serving = now  # serving, or a replacement on its way
        if len(serving) >= self.configured:
            self.started = True

    def _judge(self, pid: int, state: dict, now: float) -> str | None:
        """Why a serving worker must be killed (frozen, or busy and silent for too long), or None.

        Frozen only on evidence: stopped, or a whole PROGRESS_WINDOW_S measured in which no thread used CPU, and
        no progress (a state write, or a window with CPU) for WORKER_HANG_S."""
        progress = self._progress.setdefault(pid, _Progress(at=state["at"]))
        silent = now - state["at"]
        if silent <= QUIET_S:  # it writes: alive and well
            progress.at, progress.checked, progress.busy, progress.logged_busy = state["at"], None, False, False
            progress.idle = False
            return None
        cpu = cpu_state(pid)
        if cpu is None:
            return None  # gone: gunicorn reaps and replaces it
        letter, seconds = cpu
        stopped = letter in "Tt"
        if stopped:  # frozen, whatever it did before
            progress.busy, progress.idle, progress.checked = False, True, None
        elif progress.checked is None:  # silent from now on: the CPU it has used so far is the baseline
            progress.cpu, progress.checked = seconds, now
        elif now - progress.checked >= PROGRESS_WINDOW_S:
            used = max((t - progress.cpu.get(tid, 0.0) for tid, t in seconds.items()), default=0.0)
            progress.busy = used >= BUSY_CPU_SHARE * (now - progress.checked)
            progress.idle = not progress.busy
            progress.cpu, progress.checked = seconds, now
            if progress.busy:
                progress.at = now
        if progress.idle and now - progress.at > self.hang_s:
            return f"silent for {silent:.0f} s, {'stopped' if stopped else 'using no CPU'} (frozen?)"
        if progress.busy and silent > self.busy_s:
            return f"busy but silent for {silent:.0f} s (WORKER_BUSY_S={self.busy_s:g}): a native call that never ends?"
        if progress.busy and not progress.logged_busy:
            progress.logged_busy = True
            log.warning(
                "worker %d silent for %.0f s but using CPU: busy in a long native call, not frozen", pid, silent
            )
        return None

    def busy(self) -> list[int]:
        """Serving workers that are silent but using CPU (in a long native call)."""
        serving = {pid for pid, state in self._states.items() if state["phase"] == "serving"}
        return [pid for pid, progress in self._progress.items() if progress.busy and pid in serving]

    def serving(self) -> list[dict]:
        """Serving workers: those whose state is fresh, and those busy in a long native call (saturated)."""
        busy = set(self.busy()) - self._killed
        fresh = [s for s in self._fresh("serving") if s["pid"] not in busy]
        return fresh + [{**self._states[pid], "saturated": True} for pid in busy]

    def _fresh(self, phase: str) -> list[dict]:
        """The states in `phase` written within STALE_S."""
        now = time.monotonic()
        return [s for s in self._states.values() if s["phase"] == phase and now - s["at"] <= STALE_S]

    def startup(self) -> Verdict:
        if self.started:
            return Verdict(True, "every worker has loaded its model")
        return Verdict(False, f"{len(self.serving())} of {self.configured} workers have loaded their model")

    def ready(self) -> Verdict:
        serving = self.serving()
        failed = [s for s in self._states.values() if s["phase"] == "failed"]
        if self.stopping:
            return Verdict(False, "shutting down")
        if failed:
            return Verdict(False, f"worker {failed[0]['pid']} failed: {failed[0]['reason']}")
        if len(serving) < self.configured:
            return Verdict(False, f"{len(serving)} of {self.configured} workers are serving")
        if all(s["saturated"] for s in serving):
            return Verdict(False, "every worker's queue or in-flight budget is full")
        return Verdict(True, "serving")

    def live(self) -> Verdict:
        silent = time.monotonic() - self._last_serving
        if self.started and not self.serving() and silent > LIVE_GRACE_S:
            return Verdict(False, f"no worker has served or loaded for {silent:.0f} s")
        return Verdict(True, "the process tree is running")

    def answer(self, probe: str) -> tuple[int, dict]:
        verdict = {"startup": self.startup, "ready": self.ready, "live": self.live}[probe]()
        return (200 if verdict.ok else 503), verdict.body(probe, len(self.serving()), self.configured)

"""The pod's health, judged by serve.py from the workers' state files (workerstate.py).

- startup: every configured worker has loaded and warmed its model (once true, it stays true);
- ready: started, not shutting down, as many workers serving as configured, none failed, and not
  every worker saturated (batch queue or in-flight budget nearly full);
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
    started: bool = False
    stopping: bool = False
    _last_serving: float = field(default_factory=time.monotonic)
    _states: dict[int, dict] = field(default_factory=dict)
    _killed: set[int] = field(default_factory=set)

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
        for pid, state in states.items():
            silent = now - state["at"]
            if state["phase"] == "serving" and silent > self.hang_s and pid not in self._killed:
                self._killed.add(pid)
                log.critical("worker %d silent for %.0f s (frozen?): killed, to be replaced", pid, silent)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        serving = self.serving()
        if serving or self._fresh("loading"):
            self._last_serving = now  # serving, or a replacement on its way
        if len(serving) >= self.configured:
            self.started = True

    def serving(self) -> list[dict]:
        return self._fresh("serving")

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

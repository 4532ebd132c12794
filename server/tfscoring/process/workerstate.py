"""This worker's state for the health probes, and the watchdog that ends a hung worker.

A thread rewrites `<WORKER_STATE_DIR>/<pid>.json` every HEARTBEAT_S: the phase
(loading, serving, failed), whether the worker is saturated (its batch queue
or in-flight budget nearly full, or a request refused for overload within the
last second), and a monotonic timestamp.  serve.py reads
these files to answer the probes and kills a serving worker whose file has
gone stale (a frozen process writes nothing).  Without WORKER_STATE_DIR (plain
azmlinfsrv, as Azure ML runs score.py) nothing is written, but the watchdog
still runs: a session call running longer than SESSION_HANG_S means the device
or the runtime hangs, and the worker exits so that gunicorn replaces it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tfscoring import log

HEARTBEAT_S = 0.5
SATURATED = 0.9  # a queue or budget this full counts as saturated
REFUSED_S = 1.0  # so does a worker that refused a request for overload this recently
HUNG_EXIT_CODE = 70  # EX_SOFTWARE: gunicorn replaces a worker that exits with anything but 3


class WorkerState:
    def __init__(self, directory: Path | None, hang_s: float):
        self._path = directory / f"{os.getpid()}.json" if directory else None
        self._hang_s = hang_s
        self._phase = "loading"
        self._reason = ""
        self._load: Callable[[], dict] = dict
        self._call_age: Callable[[], float] = lambda: 0.0
        self._warned = False
        self._refused_at = float("-inf")

    def start(self) -> None:
        """Write the state now (loading) and every HEARTBEAT_S from a daemon thread."""
        self._write()
        threading.Thread(target=self._beat, name="worker-state", daemon=True).start()

    def serving(self, load: Callable[[], dict], call_age: Callable[[], float]) -> None:
        """The model is warm: report `load()` (queue and budget use) and watch `call_age()`, the running
        session call's age in seconds (0 when none runs)."""
        self._load, self._call_age = load, call_age
        self._phase = "serving"
        self._write()

    def refused(self) -> None:
        """A request was refused for overload (503): saturated, whatever the queue holds this moment."""
        self._refused_at = time.monotonic()

    def failed(self, reason: str) -> None:
        """The device failed: readiness drops at once, before the worker stops."""
        self._phase, self._reason = "failed", reason
        self._write()

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            age = self._call_age()
            if age > self._hang_s:
                reason = f"a session call has run for {age:.0f} s (SESSION_HANG_S={self._hang_s:g}): the device hangs"
                log.critical("worker %d exits: %s", os.getpid(), reason)
                self.failed(reason)
                os._exit(HUNG_EXIT_CODE)  # the hung call cannot be interrupted; gunicorn forks a replacement
            self._write()

    def _write(self) -> None:
        if self._path is None:
            return
        state = {"pid": os.getpid(), "phase": self._phase, "reason": self._reason, "at": time.monotonic()}
        state.update(self._load())
        state["saturated"] = state.get("saturated", False) or time.monotonic() - self._refused_at < REFUSED_S
        temporary = self._path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(state))
            temporary.replace(self._path)  # readers see the old file or the new one, never half of one
        except OSError as err:
            if not self._warned:  # once: the thread retries every HEARTBEAT_S
                log.warning("cannot write the worker state %s: %s (the probes will count this worker as down)",
                            self._path, err.strerror)  # fmt: skip
                self._warned = True


def load(queued_rows: int, queue_rows: int, inflight: int, budget: int) -> dict:
    """The state's load fields: saturated when the queue or the in-flight budget is nearly full."""
    saturated = queued_rows >= SATURATED * queue_rows or inflight >= SATURATED * budget
    return {"queued_rows": queued_rows, "inflight_bytes": inflight, "saturated": saturated}

"""Prometheus metrics of every worker, added up across processes, served on a port of their own.

Gunicorn runs several worker processes; prometheus_client's multiprocess mode
has each write its samples to memory-mapped files in one directory, and a
scrape reads them all.  The directory must be set before prometheus_client is
imported and must be fresh for each server run, so by default it is named
after the gunicorn master (its pid and start time) and directories of masters
that are gone are removed (one the operator sets is used as it is).  One
worker at a time, the holder of a lock file in that directory, serves
everyone's metrics on METRICS_PORT; when it dies the kernel releases the lock
and another takes over.  A worker that replaces a dead one clears the dead
one's live gauges.  If the directory cannot be made, scoring goes on and the
metrics are off, with a warning.

Metric names are listed in the README (Observability).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

from tfscoring import log

_DIR_PREFIX = "tfscoring-metrics-"
_RETRY_S = 5


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot, or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _default_dir() -> str:
    master = os.getppid()  # the gunicorn master: the same for every worker of one server run
    root = Path(tempfile.gettempdir())
    for stale in root.glob(_DIR_PREFIX + "*"):  # directories of servers that have stopped
        match = re.fullmatch(_DIR_PREFIX + r"(\d+)-(\d+)", stale.name)
        if match and _process_start(int(match[1])) != match[2]:
            shutil.rmtree(stale, ignore_errors=True)
    return str(root / f"{_DIR_PREFIX}{master}-{_process_start(master) or 0}")


def _multiproc_dir() -> str:
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if given and not re.fullmatch(_DIR_PREFIX + r"\d+-\d+", Path(given).name):
        return given  # the operator's choice
    # Unset, or a default directory inherited from a process that imported this module and then started
    # this server (a test runner, say): that one belongs to another server, so name this server's own.
    return _default_dir()


MULTIPROC_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = _multiproc_dir()  # prometheus_client reads it from here
try:
    os.makedirs(MULTIPROC_DIR, mode=0o700, exist_ok=True)
    _DIR_ERROR = None
except OSError as err:  # a read-only temp dir must not stop the scoring: metrics go off, with a warning
    _DIR_ERROR = f"cannot create PROMETHEUS_MULTIPROC_DIR {MULTIPROC_DIR}: {err.strerror}"
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]  # prometheus_client then keeps this worker's values in memory

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server  # noqa: E402

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ROWS = tuple(float(2**i) for i in range(17))  # 1 .. 65536

REQUESTS = Counter("tfscoring_requests", "POST /score requests answered by the scoring script, by status", ["status"])
REQUEST_SECONDS = Histogram(
    "tfscoring_request_duration_seconds", "time in run(): read, decode, queue, infer, encode", buckets=_LATENCY
)
ROWS = Counter("tfscoring_rows", "rows scored")
BATCH_ROWS = Histogram("tfscoring_batch_rows", "rows per session call (one batch)", buckets=_ROWS)
QUEUE_WAIT_SECONDS = Histogram(
    "tfscoring_queue_wait_seconds", "time from a request joining the queue to its first batch", buckets=_LATENCY
)
SESSION_SECONDS = Histogram("tfscoring_session_seconds", "time of one session call", buckets=_LATENCY)
QUEUED_ROWS = Gauge("tfscoring_queued_rows", "rows waiting to be scored", multiprocess_mode="livesum")
SPLIT_RETRIES = Counter(
    "tfscoring_oom_splits", "times a worker lowered its rows per session call after running out of device memory"
)
DEVICE = Gauge(
    "tfscoring_worker_device", "1 per live worker, labelled with the device its session runs on", ["device"],
    multiprocess_mode="liveall",
)  # fmt: skip


_held: list = []  # the metrics-port lock of the worker that serves, open for the worker's life


def start_worker(port: int, device: str) -> str:
    """Register this worker, clear the live gauges of dead ones, and serve everyone's metrics when its turn comes.

    Every worker waits on one lock file in the multiprocess directory, in a thread of its
    own; the one holding it serves METRICS_PORT.  The kernel releases the lock when that
    worker dies, and a waiting worker takes over.  Returns a description for the log.
    """
    if _DIR_ERROR:
        log.warning("metrics off: %s", _DIR_ERROR)
        return "off (see the warning above)"
    for stale in Path(MULTIPROC_DIR).glob("gauge_live*_*.db"):
        pid = int(stale.stem.rsplit("_", 1)[1])
        if _process_start(pid) is None:
            with contextlib.suppress(OSError):  # another new worker may have cleared it first
                multiprocess.mark_process_dead(pid)
    DEVICE.labels(device).set(1)
    atexit.register(multiprocess.mark_process_dead, os.getpid())
    if not port:
        return "not served (METRICS_PORT=0)"
    threading.Thread(target=_serve_when_free, args=(port,), name="metrics-port", daemon=True).start()
    return f"on :{port}"


def _serve_when_free(port: int) -> None:
    lock = open(Path(MULTIPROC_DIR) / "metrics-port.lock", "a")  # noqa: SIM115 - held for the worker's life
    fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while a sibling serves
    _held.append(lock)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    warned = False
    while True:
        try:
            start_http_server(port, registry=registry)
        except OSError as err:
            if not warned:  # e.g. a worker of this server's previous generation, or another program
                log.warning("metrics port %d is taken (%s); retrying every %d s", port, err.strerror, _RETRY_S)
                warned = True
            time.sleep(_RETRY_S)
            continue
        log.info("worker %d serves the metrics of every worker on :%d", os.getpid(), port)
        return

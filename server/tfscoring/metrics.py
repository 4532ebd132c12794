"""Prometheus metrics of every worker, added up across processes, served on a port of their own.

Gunicorn runs several worker processes; prometheus_client's multiprocess mode
has each write its samples to memory-mapped files in one directory, and a
scrape reads them all.  The directory must be set before prometheus_client is
imported and must be fresh for each server run, so by default it is named
after the gunicorn master (its pid and start time) and directories of masters
that are gone are removed.  Every worker tries to bind METRICS_PORT; the first
one serves everyone's metrics and the others find the port taken.  A worker
that replaces a dead one clears the dead one's live gauges.

Metric names are listed in the README (Observability).
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

_DIR_PREFIX = "tfscoring-metrics-"


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
os.makedirs(MULTIPROC_DIR, mode=0o700, exist_ok=True)

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
SPLIT_RETRIES = Counter("tfscoring_oom_splits", "session calls split in halves after running out of device memory")
DEVICE = Gauge(
    "tfscoring_worker_device", "1 per live worker, labelled with the device its session runs on", ["device"],
    multiprocess_mode="liveall",
)  # fmt: skip


def start_worker(port: int, device: str) -> bool:
    """Register this worker, clear the live gauges of dead ones, serve everyone's metrics if `port` is free.

    Returns whether this worker serves the metrics.
    """
    for stale in Path(MULTIPROC_DIR).glob("gauge_live*_*.db"):
        pid = int(stale.stem.rsplit("_", 1)[1])
        if _process_start(pid) is None:
            multiprocess.mark_process_dead(pid)
    DEVICE.labels(device).set(1)
    atexit.register(multiprocess.mark_process_dead, os.getpid())
    if not port:
        return False
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    try:
        start_http_server(port, registry=registry)
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        return False  # another worker of this server serves them (or another program holds the port)
    return True

"""Prometheus metrics of every worker, added up across processes, served on a port of their own.

Gunicorn runs several worker processes; prometheus_client's multiprocess mode
has each write its samples to memory-mapped files in one directory, and a
scrape reads them all.  The directory must be set before prometheus_client is
imported and must be fresh for each server run, so Metrics.setup(), the first
thing Application.build does, names it after the gunicorn master (its pid and start
time) and removes directories of masters that are gone (one the operator sets
is used as it is), and only then imports prometheus_client and makes the
metrics: a Metrics object, handed to whoever records.  Importing this module does
nothing of the kind; the metrics of a Metrics made without setup() (a unit test's)
live in that process only.  That choice is prometheus_client's and process-wide: it
reads PROMETHEUS_MULTIPROC_DIR once, when it is imported.  One
worker at a time, the holder of a lock file in that directory, serves
everyone's metrics on METRICS_BIND:METRICS_PORT; when it dies the kernel
releases the lock and another takes over.  It serves them from one thread, an
asyncio loop (responder.py), with a bounded number of connections and a deadline for each, so
that idle or slow clients cannot pile up threads or file descriptors in a
scoring worker.  A worker that replaces a dead one clears the dead
one's live gauges.  If the directory cannot be made, scoring goes on and the
metrics are off, with a warning.

Metric names are listed in docs/operations.md (Metrics).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import functools
import ipaddress
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tfscoring import log
from tfscoring.responder import Answer, Request, Responder, plain_refusal

if TYPE_CHECKING:  # prometheus_client is imported by setup(), not here: see above
    from prometheus_client import CollectorRegistry

    from tfscoring.observability.record import RequestRecord

_DIR_PREFIX = "tfscoring-metrics-"
_RETRY_S = 5
_MAX_CONNECTIONS = 64
_DEADLINE_S = 5.0  # for one connection: reading the request, answering it and closing
_MAX_HEAD = 8192  # request line and headers
PATH = "/metrics"  # the one path the metrics port answers


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


def _multiproc_dir(given: str | None) -> str:
    if given and not re.fullmatch(_DIR_PREFIX + r"\d+-\d+", Path(given).name):
        return given  # the operator's choice
    # Unset, or a default directory inherited from a process that set it up and then started this server (a test
    # runner, say): that one belongs to another server, so name this server's own.
    return _default_dir()


_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ROWS = tuple(float(2**i) for i in range(17))  # 1 .. 65536


class Metrics:
    """This worker's metrics, as attributes, made by setup() (a test makes its own: they stay in its process).

    Whoever records is handed this object: the request observer, the data collection, and the batcher and the model,
    whose BatchObserver (batching/observer.py) it is.
    """

    def __init__(self, directory: str | None = None, off: str | None = None, model: str = "", version: str = ""):
        from prometheus_client import Counter, Gauge, Histogram

        self.directory = directory  # this server's multiprocess directory; None: the values stay in this process
        self._off = off  # why setup() could not make the directory
        # The model and version this worker serves, on every series of a request and of its batches (a worker
        # serves one version for its life; during a swap old and new workers answer side by side, and a canary is
        # compared with its stable twin by these labels).  The two gauges below stay unlabelled: they are a pod's
        # load, which the autoscalers read as one value per pod (docs/autoscaling.md).
        self.model, self.version = model, version
        # registry=None: a worker's values reach the scrape through the directory's files, which the worker serving
        # the metrics reads into a registry of its own; prometheus_client's default registry, one per process, would
        # refuse a second Metrics in a process (a test's).
        self.requests = Counter(
            "tfscoring_requests",
            "POST /score requests answered by the scoring script, by status",
            ["status", "model", "version"],
            registry=None,
        )
        self.request_seconds = Histogram(
            "tfscoring_request_duration_seconds",
            "time in run(): read, decode, queue, infer, encode",
            ["model", "version"],
            buckets=_LATENCY,
            registry=None,
        )
        self.rows = Counter("tfscoring_rows", "rows scored", ["model", "version"], registry=None)
        self.batch_rows = Histogram(
            "tfscoring_batch_rows",
            "rows per session call (one batch)",
            ["model", "version"],
            buckets=_ROWS,
            registry=None,
        )
        self.queue_wait_seconds = Histogram(
            "tfscoring_queue_wait_seconds",
            "time from a request joining the queue to its first batch",
            ["model", "version"],
            buckets=_LATENCY,
            registry=None,
        )
        self.session_seconds = Histogram(
            "tfscoring_session_seconds",
            "time of one session call",
            ["model", "version"],
            buckets=_LATENCY,
            registry=None,
        )
        self.queued_rows = Gauge(
            "tfscoring_queued_rows", "rows waiting to be scored", multiprocess_mode="livesum", registry=None
        )
        self.requests_in_flight = Gauge(
            "tfscoring_requests_in_flight",
            "requests in the scoring script (read, decoded, queued or scored), each holding a gunicorn thread",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.log_lines_dropped = Counter(
            "tfscoring_log_lines_dropped",
            "request log lines that could not be written to stdout (closed or stuck)",
            registry=None,
        )
        self.oom_splits = Counter(
            "tfscoring_oom_splits",
            "times a worker lowered its rows per session call after running out of device memory",
            ["model", "version"],
            registry=None,
        )
        self.collected = Counter(
            "tfscoring_collected",
            "requests whose inputs and outputs were handed to the data collector's package (send_failed below "
            "counts those it then could not deliver)",
            registry=None,
        )
        self.collection_dropped = Counter(
            "tfscoring_collection_dropped",
            "sampled requests whose data was not collected: buffer_full (DATA_COLLECTION_MAX_BYTES), too_large "
            "(over an eighth of it), collector (the azureml-ai-monitoring package refused it), send_failed (the "
            "collector did not take it), error",
            ["reason"],
            registry=None,
        )
        self.device = Gauge(
            "tfscoring_worker_device",
            "1 per live worker, labelled with the device its session runs on and the model version it serves",
            ["device", "model", "version"],
            multiprocess_mode="liveall",
            registry=None,
        )
        # This worker's series, labelled once (each shows as 0 from the start); its requests' by status as they come.
        self._request_seconds = self.request_seconds.labels(model, version)
        self._rows = self.rows.labels(model, version)
        self._batch_rows = self.batch_rows.labels(model, version)
        self._queue_wait_seconds = self.queue_wait_seconds.labels(model, version)
        self._session_seconds = self.session_seconds.labels(model, version)
        self._oom_splits = self.oom_splits.labels(model, version)

    @classmethod
    def setup(cls, multiproc_dir: str | None, model: str, version: str) -> Metrics:
        """Make the directory of this server's metrics (PROMETHEUS_MULTIPROC_DIR, the setting, or this server's own),
        then the metrics, labelled with the `model` and `version` this worker serves.  First thing in a worker, once:
        prometheus_client reads the directory when it is imported, and keeps what it read for the life of the process
        (its multiprocess mode is process-wide, not ours)."""
        if "prometheus_client" in sys.modules:  # imported before: its values stay in this process
            off = "prometheus_client was imported before the metrics were set up"
            return cls(off=off, model=model, version=version)
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"] = _multiproc_dir(multiproc_dir)  # read by prometheus_client
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as err:  # a read-only temp dir must not stop the scoring: metrics go off, with a warning
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]  # prometheus_client then keeps this worker's values in memory
            off = f"cannot create PROMETHEUS_MULTIPROC_DIR {directory}: {err.strerror}"
            return cls(off=off, model=model, version=version)
        return cls(directory, model=model, version=version)

    # The batcher's and the model's BatchObserver (batching/observer.py).

    def queued(self, rows: int) -> None:
        self.queued_rows.set(rows)

    def waited(self, seconds: float) -> None:
        self._queue_wait_seconds.observe(seconds)

    def batched(self, rows: int) -> None:
        self._batch_rows.observe(rows)

    def session_call(self, seconds: float) -> None:
        self._session_seconds.observe(seconds)

    def split(self) -> None:
        self._oom_splits.inc()

    def count(self, record: RequestRecord) -> None:
        """A request the scoring script answered: by status, its time, and its rows when they were scored."""
        self.requests.labels(str(record.status), self.model, self.version).inc()
        self._request_seconds.observe(record.seconds)
        if record.status < 300:
            self._rows.inc(record.rows)

    def start_worker(self, bind: str, port: int, device: str, visible_gpus: str | None = None) -> str:
        """Register this worker, clear the live gauges of dead ones, and serve everyone's metrics when its turn comes.

        Every worker waits on one lock file in the multiprocess directory, in a thread of its
        own; the one holding it serves bind:port.  The kernel releases the lock when that
        worker dies, and a waiting worker takes over.  `visible_gpus` is CUDA_VISIBLE_DEVICES, for the GPU
        metrics.  Returns a description for the log.
        """
        from prometheus_client import multiprocess

        if self.directory is None:
            log.warning("metrics off: %s", self._off or "Metrics.setup() was not called")
            return "off (see the warning above)"
        for stale in Path(self.directory).glob("gauge_live*_*.db"):
            pid = int(stale.stem.rsplit("_", 1)[1])
            if _process_start(pid) is None:
                with contextlib.suppress(OSError):  # another new worker may have cleared it first
                    multiprocess.mark_process_dead(pid)
        self.device.labels(device, self.model, self.version).set(1)
        atexit.register(multiprocess.mark_process_dead, os.getpid())
        if not port:
            return "not served (METRICS_PORT=0)"
        threading.Thread(
            target=self._serve_when_free, args=(bind, port, visible_gpus), name="metrics-port", daemon=True
        ).start()
        return f"on {_address(bind, port)}"

    def _serve_when_free(self, bind: str, port: int, visible_gpus: str | None) -> None:
        # The lock is held for the worker's life: this thread never returns, and the kernel lets go when it dies.
        lock = open(Path(self.directory) / "metrics-port.lock", "a")  # noqa: SIM115
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while a sibling serves
        from prometheus_client import CollectorRegistry, multiprocess

        from tfscoring.observability.gpumetrics import GpuCollector

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(GpuCollector(visible_gpus))  # read at each scrape, by the worker that serves
        family = socket.AF_INET6 if ipaddress.ip_address(bind).version == 6 else socket.AF_INET
        warned = False
        while True:
            try:
                listener = socket.create_server((bind, port), family=family)
            except OSError as err:
                if not warned:  # e.g. a worker of this server's previous generation, or another program
                    log.warning("metrics port %d is taken (%s); retrying every %d s", port, err.strerror, _RETRY_S)
                    warned = True
                time.sleep(_RETRY_S)
                continue
            log.info("worker %d serves the metrics of every worker on %s", os.getpid(), _address(bind, port))
            responder = Responder(
                functools.partial(_answer, registry),
                max_connections=_MAX_CONNECTIONS,
                deadline_s=_DEADLINE_S,
                max_head=_MAX_HEAD,
            )
            asyncio.run(responder.serve_forever(listener))


def _address(bind: str, port: int) -> str:
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"


def _answer(registry: CollectorRegistry, request: Request) -> Answer:
    """GET (or HEAD) /metrics: the metrics of every worker, as the registry collects them at this scrape."""
    if request.path != PATH:
        return plain_refusal(404)
    if request.method not in ("GET", "HEAD"):
        return plain_refusal(405, ("Allow", "GET, HEAD"))
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    try:
        body = generate_latest(registry)
    except Exception:
        log.exception("cannot collect the metrics")
        return plain_refusal(500)
    return Answer(200, (("Content-Type", CONTENT_TYPE_LATEST),), body)

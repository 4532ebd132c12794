"""Prometheus metrics of every worker, added up across processes, served on a port of their own.

Gunicorn runs several worker processes; prometheus_client's multiprocess mode
has each write its samples to memory-mapped files in one directory, and a
scrape reads them all.  The directory must be set before prometheus_client is
imported and must be fresh for each server run, so setup(), the first thing a
worker's init() calls, names it after the gunicorn master (its pid and start
time) and removes directories of masters that are gone (one the operator sets
is used as it is), and only then imports prometheus_client and makes the
metrics.  Importing this module does nothing of the kind; a metric used in a
process that never called setup() (a unit test) lives in that process only.  One
worker at a time, the holder of a lock file in that directory, serves
everyone's metrics on METRICS_BIND:METRICS_PORT; when it dies the kernel
releases the lock and another takes over.  It serves them from one thread, an
asyncio loop, with a bounded number of connections and a deadline for each, so
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

if TYPE_CHECKING:  # prometheus_client is imported by setup(), not here: see above
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DIR_PREFIX = "tfscoring-metrics-"
_RETRY_S = 5
_MAX_CONNECTIONS = 64
_DEADLINE_S = 5.0  # for one connection: reading the request, answering it and closing
_MAX_HEAD = 8192  # request line and headers


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


MULTIPROC_DIR: str | None = None  # this server's, once setup() has made it
_DIR_ERROR: str | None = None


def setup(multiproc_dir: str | None) -> None:
    """Make the directory of this server's metrics (PROMETHEUS_MULTIPROC_DIR, the setting, or this server's own),
    then the metrics.  First thing in a worker: prometheus_client reads the directory when it is imported."""
    global MULTIPROC_DIR, _DIR_ERROR
    if MULTIPROC_DIR is not None or _DIR_ERROR is not None:
        return
    if "prometheus_client" in sys.modules:  # imported before: its values stay in this process
        _DIR_ERROR = "prometheus_client was imported before the metrics were set up"
        _make()
        return
    MULTIPROC_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = _multiproc_dir(multiproc_dir)  # read by prometheus_client
    try:
        os.makedirs(MULTIPROC_DIR, mode=0o700, exist_ok=True)
    except OSError as err:  # a read-only temp dir must not stop the scoring: metrics go off, with a warning
        _DIR_ERROR = f"cannot create PROMETHEUS_MULTIPROC_DIR {MULTIPROC_DIR}: {err.strerror}"
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]  # prometheus_client then keeps this worker's values in memory
    _make()


_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ROWS = tuple(float(2**i) for i in range(17))  # 1 .. 65536

# The metrics, made by _make() (setup(), or the first use in a process that never called it).
REQUESTS: Counter
REQUEST_SECONDS: Histogram
ROWS: Counter
BATCH_ROWS: Histogram
QUEUE_WAIT_SECONDS: Histogram
SESSION_SECONDS: Histogram
QUEUED_ROWS: Gauge
REQUESTS_IN_FLIGHT: Gauge
LOG_LINES_DROPPED: Counter
SPLIT_RETRIES: Counter
COLLECTED: Counter
COLLECTION_DROPPED: Counter
DEVICE: Gauge
_NAMES = {name for name, kind in __annotations__.items() if kind in ("Counter", "Gauge", "Histogram")}
_make_lock = threading.Lock()


def __getattr__(name: str):
    if name in _NAMES:  # used before setup(): made now, kept in this process
        _make()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make() -> None:
    from prometheus_client import Counter, Gauge, Histogram

    with _make_lock:
        if "REQUESTS" in globals():
            return
        made = {
            "REQUESTS": Counter(
                "tfscoring_requests", "POST /score requests answered by the scoring script, by status", ["status"]
            ),
            "REQUEST_SECONDS": Histogram(
                "tfscoring_request_duration_seconds", "time in run(): read, decode, queue, infer, encode",
                buckets=_LATENCY,
            ),
            "ROWS": Counter("tfscoring_rows", "rows scored"),
            "BATCH_ROWS": Histogram("tfscoring_batch_rows", "rows per session call (one batch)", buckets=_ROWS),
            "QUEUE_WAIT_SECONDS": Histogram(
                "tfscoring_queue_wait_seconds", "time from a request joining the queue to its first batch",
                buckets=_LATENCY,
            ),
            "SESSION_SECONDS": Histogram("tfscoring_session_seconds", "time of one session call", buckets=_LATENCY),
            "QUEUED_ROWS": Gauge("tfscoring_queued_rows", "rows waiting to be scored", multiprocess_mode="livesum"),
            "REQUESTS_IN_FLIGHT": Gauge(
                "tfscoring_requests_in_flight",
                "requests in the scoring script (read, decoded, queued or scored), each holding a gunicorn thread",
                multiprocess_mode="livesum",
            ),
            "LOG_LINES_DROPPED": Counter(
                "tfscoring_log_lines_dropped",
                "request log lines that could not be written to stdout (closed or stuck)",
            ),
            "SPLIT_RETRIES": Counter(
                "tfscoring_oom_splits",
                "times a worker lowered its rows per session call after running out of device memory",
            ),
            "COLLECTED": Counter(
                "tfscoring_collected",
                "requests whose inputs and outputs were handed to the data collector's package (send_failed below "
                "counts those it then could not deliver)",
            ),
            "COLLECTION_DROPPED": Counter(
                "tfscoring_collection_dropped",
                "sampled requests whose data was not collected: buffer_full (DATA_COLLECTION_MAX_BYTES), too_large "
                "(over an eighth of it), collector (the azureml-ai-monitoring package refused it), send_failed (the "
                "collector did not take it), error",
                ["reason"],
            ),
            "DEVICE": Gauge(
                "tfscoring_worker_device", "1 per live worker, labelled with the device its session runs on",
                ["device"], multiprocess_mode="liveall",
            ),
        }  # fmt: skip
        globals().update(made)


_held: list = []  # the metrics-port lock of the worker that serves, open for the worker's life


_visible_gpus: str | None = None  # CUDA_VISIBLE_DEVICES, as start_worker was given it


def start_worker(bind: str, port: int, device: str, visible_gpus: str | None = None) -> str:
    """Register this worker, clear the live gauges of dead ones, and serve everyone's metrics when its turn comes.

    Every worker waits on one lock file in the multiprocess directory, in a thread of its
    own; the one holding it serves bind:port.  The kernel releases the lock when that
    worker dies, and a waiting worker takes over.  Returns a description for the log.
    """
    from prometheus_client import multiprocess

    if _DIR_ERROR or MULTIPROC_DIR is None:
        log.warning("metrics off: %s", _DIR_ERROR or "metrics.setup() was not called")
        return "off (see the warning above)"
    for stale in Path(MULTIPROC_DIR).glob("gauge_live*_*.db"):
        pid = int(stale.stem.rsplit("_", 1)[1])
        if _process_start(pid) is None:
            with contextlib.suppress(OSError):  # another new worker may have cleared it first
                multiprocess.mark_process_dead(pid)
    global _visible_gpus
    _visible_gpus = visible_gpus
    globals()["DEVICE"].labels(device).set(1)  # made by setup(); a name only annotated above, hence globals()
    atexit.register(multiprocess.mark_process_dead, os.getpid())
    if not port:
        return "not served (METRICS_PORT=0)"
    threading.Thread(target=_serve_when_free, args=(bind, port), name="metrics-port", daemon=True).start()
    return f"on {_address(bind, port)}"


def _address(bind: str, port: int) -> str:
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"


def _serve_when_free(bind: str, port: int) -> None:
    lock = open(Path(MULTIPROC_DIR) / "metrics-port.lock", "a")  # noqa: SIM115 - held for the worker's life
    fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while a sibling serves
    _held.append(lock)
    from prometheus_client import CollectorRegistry, multiprocess

    from tfscoring.observability.gpumetrics import GpuCollector

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(GpuCollector(_visible_gpus))  # read at each scrape, by the worker that serves
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
        asyncio.run(_MetricsServer(registry).serve(listener))


class _MetricsServer:
    """GET /metrics over HTTP/1.1 on one asyncio loop: one request per connection, then `Connection: close`.

    At most _MAX_CONNECTIONS are open at once.  A connection beyond that closes the one that
    has waited longest for its request, so a flood of idle connections cannot lock a scraper
    out; each connection is closed after _DEADLINE_S whatever state it is in.
    """

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry
        self._open: set[asyncio.StreamWriter] = set()
        self._reading: dict[asyncio.StreamWriter, None] = {}  # still reading their request, oldest first

    async def serve(self, listener: socket.socket) -> None:
        server = await asyncio.start_server(self._connection, sock=listener, limit=_MAX_HEAD)
        await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= _MAX_CONNECTIONS:
            if not self._reading:
                writer.transport.abort()
                return
            oldest = next(iter(self._reading))
            self._forget(oldest)
            oldest.transport.abort()
        self._open.add(writer)
        self._reading[writer] = None
        try:
            await asyncio.wait_for(self._exchange(reader, writer), _DEADLINE_S)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
            pass  # a silent or slow client, or one that went away
        finally:
            self._forget(writer)
            writer.transport.abort()  # no-op once closed; drops what a client that stopped reading left unsent

    def _forget(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        self._reading.pop(writer, None)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            head = None
        self._reading.pop(writer, None)
        writer.write(self._answer(head))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    def _answer(self, head: bytes | None) -> bytes:
        if head is None:
            return _response(431, "Request Header Fields Too Large")
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(request_line) != 3:
            return _response(400, "Bad Request")
        method, target, _ = request_line
        if target.split("?", 1)[0] != "/metrics":
            return _response(404, "Not Found")
        if method not in ("GET", "HEAD"):
            return _response(405, "Method Not Allowed", ("Allow", "GET, HEAD"))
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        try:
            body = generate_latest(self._registry)
        except Exception:
            log.exception("cannot collect the metrics")
            return _response(500, "Internal Server Error")
        return _response(200, "OK", ("Content-Type", CONTENT_TYPE_LATEST), body=body, head_only=method == "HEAD")


def _response(status: int, reason: str, *headers: tuple[str, str], body: bytes = b"", head_only: bool = False) -> bytes:
    if status >= 400:
        body = f"{reason}\n".encode()
        headers = (*headers, ("Content-Type", "text/plain; charset=utf-8"))
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head_only else body)

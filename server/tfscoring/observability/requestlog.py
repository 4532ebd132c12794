"""One structured log line and the metrics of each POST /score request.

azmlinfsrv and gunicorn log three lines of their own for each request: the
access line, "run() output is HTTP Response", and the method/path/status line.
For requests this script answered, those three are dropped and one JSON line
takes their place, with the request ids, status, rows, time and, for an error,
what the client was told.  Requests the script never saw (a 431 for an
over-long request id, for instance) keep the server's lines.  The server's
deprecation warning for x-ms-request-id, logged for every request that carries
it, is dropped always: the header still works and is echoed.

LOG_REQUESTS: `all` (default) logs every request, `errors` only those not 2xx,
`none` none.

Cost, measured with py-spy (bench/results/profile.md): gunicorn built its access
line (a dict of atoms and a log record) only for the filter to drop it, 7 % of a
worker's Python time; it is now not built for requests logged here.  Our own
line went through a logging handler whose lock is held across the write and
flush, a convoy of up to 15 % of samples with 16 threads; it is now built
without a lock and written with one `os.write` under a lock of its own.  Each
field is cut to FIELD_CHARS, so a line stays under PIPE_BUF (4 KiB) and one
write of it to a pipe is never interleaved with another process's lines.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import select
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import flask
import orjson

from tfscoring.http.routes import PATH_HEADER
from tfscoring.observability import metrics, tracing
from tfscoring.shared import FIELD_CHARS  # longest text field in a line (ids, content type, error): under PIPE_BUF

_enabled = True
_errors_only = False
_DEPRECATED_HEADER = "x-ms-request-id header has been deprecated"
_REQUEST_LINE = re.compile(r"[A-Z]+ /")  # azmlinfsrv's request lines; its other lines (tracebacks) stay whole
_SCORE_LINE = re.compile(r"[A-Z]+ /score[ ?]")  # azmlinfsrv's "<method> <path> <status> <ms>ms <bytes>"
_LOGGED = "tfscoring.logged"  # key in the WSGI environ of a request this module logs: gunicorn skips its line
_STDOUT = 1
_STUCK_S = 1.0  # longest wait for a stdout that cannot take more (non-blocking and full) before a line is dropped
_write_lock = threading.Lock()  # this worker's threads write whole lines, one at a time
_dropped = False  # a line was dropped already (said once on stderr)


@dataclass
class RequestRecord:
    status: int = 500
    rows: int = 0
    error: str | None = None
    path: str = "/score"  # the path the client asked for: /score, or a /v2 path nginx routed here
    # Filled by the batcher for a request it scored: the largest batch its rows were in, how long it waited
    # for its first batch, and the time of its session calls.
    batch_rows: int | None = None
    queue_ms: float | None = None
    session_ms: float | None = None
    reserved_bytes: int | None = None  # its reservation of the in-flight budget at its largest (budget.py)


def configure(mode: str) -> None:
    """Log request lines as JSON on stdout, and drop the server's own lines for the requests logged here."""
    global _enabled, _errors_only
    _enabled = mode != "none"
    _errors_only = mode == "errors"
    for handler in logging.getLogger("azmlinfsrv").handlers:
        if not any(isinstance(f, _ServerRequestLines) for f in handler.filters):
            handler.addFilter(_ServerRequestLines())
    _skip_gunicorn_access_lines()


@contextmanager
def observed(request: flask.Request) -> Iterator[RequestRecord]:
    """Time a request; on the way out count it and log its line, also when the server's timeout cuts it short."""
    flask.g.tfscoring_logged = True  # per request: the server's own lines for it are dropped
    request.environ[_LOGGED] = True  # and gunicorn's access line is not built
    record = RequestRecord(path=request.headers.get(PATH_HEADER) or request.path)
    started = time.perf_counter()
    with tracing.request_span(request, record.path) as spans:
        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            yield record
        except TimeoutError:
            record.status, record.error = 500, "scoring timeout (SCORING_TIMEOUT_MS)"
            raise
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()
            tracing.finish(spans, _span_attributes(record), record.status)
            _account(request, record, time.perf_counter() - started)


def _span_attributes(record: RequestRecord) -> dict:
    return {
        "tfscoring.request_id": getattr(flask.g, "request_id", None),
        "url.path": record.path,
        "tfscoring.rows": record.rows,
        "tfscoring.batch_rows": record.batch_rows,
        "tfscoring.queue_wait_ms": record.queue_ms,
        "tfscoring.session_ms": record.session_ms,
        "tfscoring.error": record.error,
    }


def _account(request: flask.Request, record: RequestRecord, seconds: float) -> None:
    """Count the request and log its line."""
    metrics.REQUESTS.labels(str(record.status)).inc()
    metrics.REQUEST_SECONDS.observe(seconds)
    if record.status < 300:
        metrics.ROWS.inc(record.rows)
    if _enabled and not (_errors_only and record.status < 300):
        _log_line(request, record, seconds)


def _log_line(request: flask.Request, record: RequestRecord, seconds: float) -> None:
    g = flask.g
    line = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "level": "INFO",
        "pid": os.getpid(),
        "event": "request",
        "request_id": getattr(g, "request_id", "")[:FIELD_CHARS],
        "client_request_id": getattr(g, "client_request_id", "")[:FIELD_CHARS],
        "path": record.path[:FIELD_CHARS],
        "status": record.status,
        "rows": record.rows,
        "batch_rows": record.batch_rows,
        "queue_ms": record.queue_ms,
        "session_ms": record.session_ms,
        "reserved_bytes": record.reserved_bytes,
        "ms": round(seconds * 1e3, 3),
        "bytes": request.content_length,
        "content_type": request.mimetype[:FIELD_CHARS],  # the client's, of any length
    }
    if record.error is not None:
        line["error"] = record.error[:FIELD_CHARS]
    _write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))


def _write(line: bytes) -> None:
    """Write the whole line to stdout.  A log that cannot be written never fails the request: the line is
    dropped, counted (tfscoring_log_lines_dropped_total), and the first drop is said on stderr."""
    global _dropped
    with _write_lock:
        try:
            while line:
                try:
                    line = line[os.write(_STDOUT, line) :]
                except BlockingIOError:  # a non-blocking stdout that is full: wait, bounded, for room
                    if not select.select([], [_STDOUT], [], _STUCK_S)[1]:
                        raise
        except TimeoutError:
            raise  # the server's scoring timeout (SIGALRM), not the log's
        except OSError as err:
            metrics.LOG_LINES_DROPPED.inc()
            if not _dropped:
                _dropped = True
                print(f"tfscoring: request log lines are being dropped: stdout: {err}", file=sys.stderr, flush=True)


def _skip_gunicorn_access_lines() -> None:
    """Make gunicorn's access log skip the requests logged here, in this worker process: it would build
    the line (every atom of the request) only for the filter to drop it.  Other requests keep theirs."""
    try:
        from gunicorn import glogging
    except ImportError:  # served by something other than gunicorn: nothing to skip
        return
    build_line = glogging.Logger.access
    if getattr(build_line, "skips_logged_requests", False):
        return

    def access(self, resp, req, environ, request_time):
        if not environ.get(_LOGGED):
            build_line(self, resp, req, environ, request_time)

    access.skips_logged_requests = True
    glogging.Logger.access = access


class _ServerRequestLines(logging.Filter):
    """Drop azmlinfsrv's per-request lines for a request this script logged itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "azmlinfsrv":
            return True
        message = record.getMessage()
        if len(message) > FIELD_CHARS + 80 and _REQUEST_LINE.match(message):  # the path and query are the client's
            record.msg, record.args = f"{message[:FIELD_CHARS]}...{message[-60:]}", ()
        if message.startswith(_DEPRECATED_HEADER):
            return False  # a warning for every request that carries x-ms-request-id: the header works, still echoed
        if flask.has_request_context() and flask.g.get("tfscoring_logged"):
            return not (message == "run() output is HTTP Response" or _SCORE_LINE.match(message))
        return True

"""One structured log line for each request the scoring script answers, from its finished record (record.py).

azmlinfsrv and gunicorn log three lines of their own for each request: the
access line, "run() output is HTTP Response", and the method/path/status line.
For requests this script answered, those three are dropped and one JSON line
takes their place, with the request ids, the model and version that answered, status, rows, time and, for an error,
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
from typing import TYPE_CHECKING

import flask
import orjson

from tfscoring.observability.record import RequestRecord
from tfscoring.shared import FIELD_CHARS  # longest text field in a line (ids, content type, error): under PIPE_BUF

if TYPE_CHECKING:
    from prometheus_client import Counter

_DEPRECATED_HEADER = "x-ms-request-id header has been deprecated"
_REQUEST_LINE = re.compile(r"[A-Z]+ /")  # azmlinfsrv's request lines; its other lines (tracebacks) stay whole
_SCORE_LINE = re.compile(r"[A-Z]+ /score[ ?]")  # azmlinfsrv's "<method> <path> <status> <ms>ms <bytes>"
_LOGGED = "tfscoring.logged"  # key in the WSGI environ of a request this module logs: gunicorn skips its line
_STUCK_S = 1.0  # longest wait for a stdout that cannot take more (non-blocking and full) before a line is dropped


class RequestLog:
    """The request lines of one worker, written to `stdout` (a file descriptor); LOG_REQUESTS is `mode`.  A line
    that cannot be written is counted in `dropped` (tfscoring_log_lines_dropped_total)."""

    def __init__(self, mode: str, dropped: Counter, stdout: int = 1, stuck_s: float = _STUCK_S):
        self._enabled = mode != "none"
        self._errors_only = mode == "errors"
        self._dropped = dropped
        self._stdout = stdout
        self._stuck_s = stuck_s
        self._write_lock = threading.Lock()  # this worker's threads write whole lines, one at a time
        self._dropping = False  # a line was dropped already (said once on stderr)

    @classmethod
    def configure(cls, mode: str, dropped: Counter) -> RequestLog:
        """Log request lines as JSON on stdout, and drop the server's own lines for the requests logged here."""
        for handler in logging.getLogger("azmlinfsrv").handlers:
            if not any(isinstance(f, _ServerRequestLines) for f in handler.filters):
                handler.addFilter(_ServerRequestLines())
        _skip_gunicorn_access_lines()
        return cls(mode, dropped)

    @staticmethod
    def mark_logged(request: flask.Request) -> None:
        """This request is logged here: the server's own lines for it are dropped, gunicorn's access line not built
        (whatever LOG_REQUESTS says)."""
        flask.g.tfscoring_logged = True
        request.environ[_LOGGED] = True

    def write(self, record: RequestRecord) -> None:
        """The request's line, unless LOG_REQUESTS leaves it out."""
        if self._enabled and not (self._errors_only and record.status < 300):
            self.write_line(line(record))

    def write_line(self, line: bytes) -> None:
        """Write the whole line to stdout.  A log that cannot be written never fails the request: the line is
        dropped, counted (tfscoring_log_lines_dropped_total), and the first drop is said on stderr."""
        with self._write_lock:
            try:
                while line:
                    try:
                        line = line[os.write(self._stdout, line) :]
                    except BlockingIOError:  # a non-blocking stdout that is full: wait, bounded, for room
                        if not select.select([], [self._stdout], [], self._stuck_s)[1]:
                            raise
            except TimeoutError:
                raise  # the server's scoring timeout (SIGALRM), not the log's
            except OSError as err:
                self._dropped.inc()
                if not self._dropping:
                    self._dropping = True
                    print(f"tfscoring: request log lines are being dropped: stdout: {err}", file=sys.stderr, flush=True)


def line(record: RequestRecord) -> bytes:
    """The request's log line: compact JSON, each text field cut to FIELD_CHARS."""
    fields = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "level": "INFO",
        "pid": os.getpid(),
        "event": "request",
        "request_id": (record.request_id or "")[:FIELD_CHARS],
        "client_request_id": record.client_request_id[:FIELD_CHARS],
        "path": record.path[:FIELD_CHARS],
        "model": record.model[:FIELD_CHARS],  # a folder's name (or MODEL_NAME): bounded like the client's fields
        "model_version": record.model_version[:FIELD_CHARS],
        "status": record.status,
        "rows": record.rows,
        "batch_rows": record.batch_rows,
        "queue_ms": record.queue_ms,
        "session_ms": record.session_ms,
        "reserved_bytes": record.reserved_bytes,
        "ms": round(record.seconds * 1e3, 3),
        "bytes": record.content_length,
        "content_type": record.content_type[:FIELD_CHARS],  # the client's, of any length
    }
    if record.error is not None:
        fields["error"] = record.error[:FIELD_CHARS]
    return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)


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

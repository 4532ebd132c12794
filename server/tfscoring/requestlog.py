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
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import flask
import orjson

from tfscoring import metrics

_logger = logging.getLogger("tfscoring.requests")  # not under "azmlinfsrv": its lines are JSON, not the server's format
_handled = threading.local()  # .request_id: the request this thread logged last, until gunicorn's access line for it
_errors_only = False
_DEPRECATED_HEADER = "x-ms-request-id header has been deprecated"
_SCORE_LINE = re.compile(r"[A-Z]+ /score[ ?]")  # azmlinfsrv's "<method> <path> <status> <ms>ms <bytes>"


@dataclass
class RequestRecord:
    status: int = 500
    rows: int = 0
    error: str | None = None


def configure(mode: str) -> None:
    """Log request lines as JSON on stdout, and drop the server's own lines for the requests logged here."""
    global _errors_only
    _logger.handlers[:] = [_json_handler()] if mode != "none" else []
    _logger.setLevel(logging.INFO)
    _logger.propagate = False
    _logger.disabled = mode == "none"
    _errors_only = mode == "errors"
    for name in ("azmlinfsrv", "gunicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _ServerRequestLines) for f in handler.filters):
                handler.addFilter(_ServerRequestLines())


@contextmanager
def observed(request: flask.Request) -> Iterator[RequestRecord]:
    """Time a request; on the way out count it and log its line, also when the server's timeout cuts it short."""
    flask.g.tfscoring_logged = True  # per request: the server's own lines for it are dropped
    _handled.request_id = _escaped(getattr(flask.g, "request_id", ""))
    record = RequestRecord()
    started = time.perf_counter()
    try:
        yield record
    except TimeoutError:
        record.status, record.error = 500, "scoring timeout (SCORING_TIMEOUT_MS)"
        raise
    finally:
        seconds = time.perf_counter() - started
        metrics.REQUESTS.labels(str(record.status)).inc()
        metrics.REQUEST_SECONDS.observe(seconds)
        if record.status < 300:
            metrics.ROWS.inc(record.rows)
        if not _logger.disabled and not (_errors_only and record.status < 300):
            _log_line(request, record, seconds)


def _log_line(request: flask.Request, record: RequestRecord, seconds: float) -> None:
    g = flask.g
    fields = {
        "request_id": getattr(g, "request_id", ""),
        "client_request_id": getattr(g, "client_request_id", ""),
        "status": record.status,
        "rows": record.rows,
        "ms": round(seconds * 1e3, 3),
        "bytes": request.content_length,
        "content_type": request.mimetype,
    }
    if record.error is not None:
        fields["error"] = record.error[:300]
    _logger.info("request", extra={"fields": fields})


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "pid": os.getpid(),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return orjson.dumps(line).decode()


def _json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    return handler


class _ServerRequestLines(logging.Filter):
    """Drop azmlinfsrv's and gunicorn's per-request lines for a request this script logged itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "gunicorn.access":  # written after the response, outside Flask's context
            request_id = getattr(_handled, "request_id", None)
            if request_id and isinstance(record.args, dict) and record.args["{x-request-id}o"] == request_id:
                _handled.request_id = None
                return False
            return True
        if record.name != "azmlinfsrv":
            return True
        message = record.getMessage()
        if message.startswith(_DEPRECATED_HEADER):
            return False  # a warning for every request that carries x-ms-request-id: the header works, still echoed
        if flask.has_request_context() and flask.g.get("tfscoring_logged"):
            return not (message == "run() output is HTTP Response" or _SCORE_LINE.match(message))
        return True


def _escaped(request_id: str) -> str:
    return request_id.replace('"', '\\"')  # as gunicorn escapes the values of its access-log atoms

"""Each request's record, and what sees it once the request is answered: its span, the metrics, its log line.

The request path fills the record in (status, rows, error, batch statistics, reservation); this module stamps it
with the model and version this worker serves, times it and hands the finished record to each of the three, also
when the server's timeout (SCORING_TIMEOUT_MS) cuts the request short.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import flask

from tfscoring.observability.metrics import Metrics
from tfscoring.observability.record import RequestRecord
from tfscoring.observability.requestlog import RequestLog
from tfscoring.observability.tracing import Tracing


class RequestObserver:
    def __init__(self, metrics: Metrics, tracing: Tracing, request_log: RequestLog):
        self.metrics = metrics
        self.tracing = tracing
        self.request_log = request_log

    @classmethod
    def local(cls) -> RequestObserver:
        """Metrics kept in this process, no spans, every line to stdout: for an application a test assembles."""
        metrics = Metrics()
        return cls(metrics, Tracing(), RequestLog("all", metrics.log_lines_dropped))

    @contextmanager
    def recording(self, request: flask.Request, path: str) -> Iterator[RequestRecord]:
        """The record of `request`, asked for at `path`, for the request path to fill in while it is in flight."""
        self.request_log.mark_logged(request)
        g = flask.g  # azmlinfsrv has set the request ids before run()
        record = RequestRecord(
            path=path,
            model=self.metrics.model,  # what this worker serves, as its metrics are labelled
            model_version=self.metrics.version,
            request_id=getattr(g, "request_id", None),
            client_request_id=getattr(g, "client_request_id", ""),
            content_type=request.mimetype,
            content_length=request.content_length,
        )
        started = time.perf_counter()
        with self.tracing.span(request, path) as spans:
            self.metrics.requests_in_flight.inc()
            try:
                yield record
            except TimeoutError:
                record.status, record.error = 500, "scoring timeout (SCORING_TIMEOUT_MS)"
                raise
            finally:
                self.metrics.requests_in_flight.dec()
                record.seconds = time.perf_counter() - started
                spans.finish(record)
                self.metrics.count(record)
                self.request_log.write(record)

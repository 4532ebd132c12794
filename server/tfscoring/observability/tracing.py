"""An OpenTelemetry span per scoring request: request id, model and version, rows, batch size, queue wait, session
time, status.

Exported over OTLP/HTTP (protobuf) when OpenTelemetry's standard variables name an endpoint
(OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE; config.py reads
them), through a tracer provider of this module's own, so that only these spans go there; and to
Application Insights where azmlinfsrv's own switch (AML_APP_INSIGHTS_ENABLED) has set up its tracer
provider, as an internal span beside the server span azmlinfsrv writes itself once run() has returned
(Application Insights counts each server span as a request): the two are joined on the request id
(`tfscoring.request_id`, azmlinfsrv's "Request Id"), not as parent and child.  A client's W3C `traceparent`
header makes the span its child.  Spans
leave through the SDK's BatchSpanProcessor: a bounded queue and a thread of its own, so an exporter that is
slow or down never delays a request (spans beyond the queue are dropped by the SDK); at exit, what is
queued gets at most _EXIT_FLUSH_S, so a hung exporter does not hold a worker's exit.

Why the exporter is written here: azmlinfsrv 1.5.1 pins opentelemetry-sdk 1.33.0, whose OTLP exporter
needs protobuf < 6, while TensorFlow 2.21 needs protobuf >= 6.31.  The OTLP encoder of a later release
(opentelemetry-exporter-otlp-proto-common, protobuf < 8) encodes the SDK's spans; this module only POSTs
them, as the OTLP/HTTP specification says.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import flask
import requests
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tfscoring import log
from tfscoring.config import OtlpTraces
from tfscoring.shared import FIELD_CHARS

if TYPE_CHECKING:
    from tfscoring.observability.record import RequestRecord

_EXIT_FLUSH_S = 2.0
_NAME_CHARS = 100  # a span name's path (a client sets X-Tfscoring-Path where no front door clears it)
_PROPAGATION_LOGGERS = ("opentelemetry.trace.span", "opentelemetry.trace.propagation.tracecontext")


class OtlpHttpExporter(SpanExporter):
    """Spans to an OTLP/HTTP endpoint, protobuf-encoded; a failed export is logged once and dropped."""

    def __init__(self, otlp: OtlpTraces):
        self._otlp = otlp
        self._session = requests.Session()
        self._session.headers.update({**otlp.headers, "Content-Type": "application/x-protobuf"})
        if otlp.gzip:
            self._session.headers["Content-Encoding"] = "gzip"
        if otlp.certificate:
            self._session.verify = str(otlp.certificate)
        self._failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = encode_spans(spans).SerializeToString()
        try:
            answer = self._session.post(
                self._otlp.endpoint, data=gzip.compress(body) if self._otlp.gzip else body, timeout=self._otlp.timeout_s
            )
            answer.raise_for_status()
        except Exception as err:  # a RequestException, or an OSError of the TLS set-up: this batch is dropped
            if not self._failing:  # the reason's type only: its text may quote a header value or the URL
                log.warning("cannot export %d spans to %s: %s (said once until an export works)", len(spans),
                            self._otlp.shown, _reason(err))  # fmt: skip
            self._failing = True
            return SpanExportResult.FAILURE
        self._failing = False
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._session.close()


def _reason(err: Exception) -> str:
    response = getattr(err, "response", None)
    return f"HTTP {response.status_code}" if response is not None else type(err).__name__


class _CappedWarnings(logging.Filter):
    """OpenTelemetry's propagator logs a malformed tracestate member verbatim ("Member doesn't match the w3c
    identifiers format ..."): the client's header, up to the server's header limit.  Cut such a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > FIELD_CHARS:
            record.msg, record.args = message[:FIELD_CHARS] + "...", ()
        return True


class Tracing:
    """Where this worker's request spans go: a (tracer, kind of the request's span) for each place; none: spans are
    off, and none is made.  `description` says where, for the log."""

    def __init__(self, tracers: tuple[tuple[trace.Tracer, trace.SpanKind], ...] = (), description: str = "off"):
        self._tracers = tracers
        self.description = description

    @classmethod
    def configure(cls, otlp: OtlpTraces | None, service_name: str) -> Tracing:
        """Set up the spans of this worker (after the fork: in Application.build, once)."""
        for name in _PROPAGATION_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _CappedWarnings) for f in logger.filters):
                logger.addFilter(_CappedWarnings())
        tracers, targets = [], []
        azmlinfsrv_provider = trace.get_tracer_provider()  # the global one: set by azmlinfsrv before init(), or none
        if isinstance(azmlinfsrv_provider, TracerProvider):  # Application Insights: under azmlinfsrv's server span
            tracers.append((azmlinfsrv_provider.get_tracer("tfscoring"), trace.SpanKind.INTERNAL))
            targets.append("Application Insights")
        if otlp:
            provider = TracerProvider(resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False)
            processor = BatchSpanProcessor(OtlpHttpExporter(otlp))
            provider.add_span_processor(processor)
            atexit.register(processor.force_flush, int(_EXIT_FLUSH_S * 1e3))  # bounded, unlike the SDK's shutdown
            tracers.append((provider.get_tracer("tfscoring"), trace.SpanKind.SERVER))
            targets.append(f"OTLP/HTTP {otlp.shown}")
        return cls(tuple(tracers), ", ".join(targets) or "off")

    @contextlib.contextmanager
    def span(self, request: flask.Request, path: str) -> Iterator[RequestSpans]:
        """The request's spans (none when spans are off), children of the client's traceparent where it sent one;
        ended on the way out."""
        if not self._tracers:
            yield RequestSpans([])
            return
        parent = propagate.extract(request.headers)  # its get() is case-insensitive, as header names are
        name, method = f"{request.method} {path[:_NAME_CHARS]}", {"http.request.method": request.method}
        spans = [
            tracer.start_span(name, context=parent, kind=kind, attributes=method) for tracer, kind in self._tracers
        ]
        try:
            yield RequestSpans(spans)
        finally:
            for span in spans:
                span.end()


class RequestSpans:
    """One request's spans, one for each place spans go."""

    def __init__(self, spans: list[trace.Span]):
        self._spans = spans

    def finish(self, record: RequestRecord) -> None:
        """What the request did, from its finished record."""
        if not self._spans:
            return
        attributes = {
            "tfscoring.request_id": record.request_id,
            "url.path": record.path,
            # OpenTelemetry has no convention for a served model's name and version (gen_ai.request.model is a
            # generative-AI client's, and has no version), so they are the service's own, as the others here.
            "tfscoring.model.name": record.model or None,
            "tfscoring.model.version": record.model_version or None,
            "tfscoring.rows": record.rows,
            "tfscoring.batch_rows": record.batch_rows,
            "tfscoring.queue_wait_ms": record.queue_ms,
            "tfscoring.session_ms": record.session_ms,
            "tfscoring.error": record.error,
        }
        for span in self._spans:
            span.set_attributes({key: value for key, value in attributes.items() if value is not None})
            span.set_attribute("http.response.status_code", record.status)
            if record.status >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR))

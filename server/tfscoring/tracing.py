"""An OpenTelemetry span per scoring request: request id, rows, batch size, queue wait, session time, status.

Exported over OTLP/HTTP (protobuf) when OpenTelemetry's standard variables name an endpoint
(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS), and to
Application Insights where azmlinfsrv's own switch (AML_APP_INSIGHTS_ENABLED) has set up its tracer
provider; both at once too.  A client's W3C `traceparent` header makes the span its child.  Spans leave
through the SDK's BatchSpanProcessor: a bounded queue and a thread of its own, so an exporter that is
slow or down never delays a request (spans beyond the queue are dropped by the SDK).  With neither
configured, no span is made at all.

Why the exporter is written here: azmlinfsrv 1.5.1 pins opentelemetry-sdk 1.33.0, whose OTLP exporter
needs protobuf < 6, while TensorFlow 2.21 needs protobuf >= 6.31.  The OTLP encoder of a later release
(opentelemetry-exporter-otlp-proto-common, protobuf < 8) encodes the SDK's spans; this module only POSTs
them, as the OTLP/HTTP specification says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from urllib.parse import unquote

import flask
import requests
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tfscoring import log

_tracer: trace.Tracer | None = None  # None: no span is made
_EXPORT_TIMEOUT_S = 10


class OtlpHttpExporter(SpanExporter):
    """Spans to an OTLP/HTTP endpoint, protobuf-encoded; a failed export is logged once and dropped."""

    def __init__(self, endpoint: str, headers: dict[str, str]):
        self._endpoint = endpoint
        self._session = requests.Session()
        self._session.headers.update({**headers, "Content-Type": "application/x-protobuf"})
        self._failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            answer = self._session.post(
                self._endpoint, data=encode_spans(spans).SerializeToString(), timeout=_EXPORT_TIMEOUT_S
            )
            answer.raise_for_status()
        except requests.RequestException as err:
            if not self._failing:
                log.warning("cannot export %d spans to %s: %s (logged once until it works)", len(spans),
                            self._endpoint, err)  # fmt: skip
            self._failing = True
            return SpanExportResult.FAILURE
        self._failing = False
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._session.close()


def configure(endpoint: str | None, headers: str | None, service_name: str) -> str:
    """Set up the spans of this worker; returns a description for the log."""
    global _tracer
    provider = trace.get_tracer_provider()
    targets = []
    if isinstance(provider, TracerProvider):  # azmlinfsrv's, for Application Insights
        targets.append("Application Insights")
    if endpoint:
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            trace.set_tracer_provider(provider)
        provider.add_span_processor(BatchSpanProcessor(OtlpHttpExporter(endpoint, _parse_headers(headers))))
        targets.append(f"OTLP/HTTP {endpoint}")
    _tracer = provider.get_tracer("tfscoring") if targets else None
    return ", ".join(targets) or "off"


def _parse_headers(headers: str | None) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS: `key=value,key2=value2`, values URL-encoded (the specification's format)."""
    pairs = (item.split("=", 1) for item in (headers or "").split(",") if "=" in item)
    return {unquote(key).strip(): unquote(value).strip() for key, value in pairs}


@contextlib.contextmanager
def request_span(request: flask.Request) -> Iterator[trace.Span | None]:
    """The request's span (None when spans are off), a child of the client's traceparent where it sent one."""
    if _tracer is None:
        yield None
        return
    parent = propagate.extract(request.headers)  # its get() is case-insensitive, as header names are
    with _tracer.start_as_current_span(
        "POST /score" if request.method == "POST" else f"{request.method} /score",
        context=parent,
        kind=trace.SpanKind.SERVER,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def finish(span: trace.Span | None, attributes: dict, status: int) -> None:
    if span is None:
        return
    span.set_attributes({key: value for key, value in attributes.items() if value is not None})
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))

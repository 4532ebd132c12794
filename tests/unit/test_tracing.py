"""With azmlinfsrv's Application Insights tracer provider set, the script's spans go to it too: in a process of its
own, with an in-memory exporter (the spans exported over OTLP/HTTP: tests/http/test_tracing.py)."""

from __future__ import annotations

from tests.support import SCORE_PY


def test_with_azmlinfsrvs_application_insights_provider_the_spans_go_to_it_too():
    """AML_APP_INSIGHTS_ENABLED makes azmlinfsrv set an SDK tracer provider before init(); the script's spans are
    added to it.  In-process, with an in-memory exporter standing for Application Insights' one."""
    import subprocess
    import sys

    program = r"""
import flask
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tfscoring.observability.record import RequestRecord
from tfscoring.observability.tracing import Tracing

exported = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exported))
trace.set_tracer_provider(provider)  # as azmlinfsrv's AppInsightsClient does
tracing = Tracing.configure(None, "m")
print(tracing.description)
with flask.Flask(__name__).test_request_context("/score", method="POST"):
    with tracing.span(flask.request, "/score") as spans:
        spans.finish(RequestRecord(path="/score", model="m", model_version="3", status=200, rows=2))
(span,) = exported.get_finished_spans()
print(span.name, span.kind.name, span.attributes["tfscoring.rows"], span.attributes["http.response.status_code"])
print(span.attributes["tfscoring.model.name"], span.attributes["tfscoring.model.version"])
"""
    # A process of its own: the global tracer provider can be set once per process.
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                         cwd=str(SCORE_PY.parent))  # fmt: skip
    assert run.returncode == 0, run.stderr
    # Internal: azmlinfsrv writes the request's server span itself, and Application Insights counts each as a request.
    assert run.stdout.splitlines() == ["Application Insights", "POST /score INTERNAL 2 200", "m 3"]

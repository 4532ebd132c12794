"""A request's record, filled in by the request path, and what sees it once the request is answered: its log line,
the metrics and its span (observability/observer.py).  Served, they are tested in tests/http/test_observability.py
and test_tracing.py."""

from __future__ import annotations

import json
import os

import flask
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tfscoring.observability.metrics import Metrics
from tfscoring.observability.observer import RequestObserver
from tfscoring.observability.requestlog import RequestLog
from tfscoring.observability.tracing import Tracing


@pytest.fixture
def stdout():
    """The request log's stdout, a pipe: yields (read end, write end)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


def lines(read_end: int) -> list[dict]:
    try:
        return [json.loads(line) for line in os.read(read_end, 1 << 16).splitlines()]
    except BlockingIOError:  # nothing written
        return []


@pytest.fixture
def spans():
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return exported, Tracing(((provider.get_tracer("test"), trace.SpanKind.SERVER),), "in memory")


def request_context(**headers):
    return flask.Flask(__name__).test_request_context(
        "/score", method="POST", content_type="application/json", data=b"{}", headers=headers
    )


def test_an_answered_request_is_one_log_line_its_metrics_and_a_span(stdout, spans):
    read_end, write_end = stdout
    exported, tracing = spans
    metrics = Metrics(model="m", version="3")  # what this worker serves: every series, line and span says it
    observer = RequestObserver(metrics, tracing, RequestLog("all", metrics.log_lines_dropped, stdout=write_end))
    with request_context():
        flask.g.request_id, flask.g.client_request_id = "req-1", "client-1"  # as azmlinfsrv sets them before run()
        with observer.recording(flask.request, "/v2/models/m/infer") as record:
            assert metrics.requests_in_flight._value.get() == 1
            record.status, record.rows, record.batch_rows, record.queue_ms = 200, 3, 8, 0.5

    (line,) = lines(read_end)
    assert line["request_id"] == "req-1" and line["client_request_id"] == "client-1"
    assert line["path"] == "/v2/models/m/infer" and line["status"] == 200 and line["rows"] == 3
    assert line["model"] == "m" and line["model_version"] == "3"
    assert line["batch_rows"] == 8 and line["queue_ms"] == 0.5 and line["session_ms"] is None
    assert line["bytes"] == 2 and line["content_type"] == "application/json" and line["ms"] >= 0
    assert "error" not in line
    assert metrics.requests_in_flight._value.get() == 0
    assert metrics.requests.labels("200", "m", "3")._value.get() == 1
    assert metrics.rows.labels("m", "3")._value.get() == 3
    assert metrics.request_seconds.labels("m", "3")._sum.get() > 0
    (span,) = exported.get_finished_spans()
    assert span.name == "POST /v2/models/m/infer" and span.kind == trace.SpanKind.SERVER
    assert dict(span.attributes) == {
        "http.request.method": "POST",
        "tfscoring.request_id": "req-1",
        "url.path": "/v2/models/m/infer",
        "tfscoring.model.name": "m",
        "tfscoring.model.version": "3",
        "tfscoring.rows": 3,
        "tfscoring.batch_rows": 8,
        "tfscoring.queue_wait_ms": 0.5,
        "http.response.status_code": 200,
    }


def test_a_request_the_servers_timeout_cuts_short_is_recorded_as_a_500(stdout, spans):
    read_end, write_end = stdout
    exported, tracing = spans
    metrics = Metrics()
    observer = RequestObserver(metrics, tracing, RequestLog("all", metrics.log_lines_dropped, stdout=write_end))
    with request_context(), pytest.raises(TimeoutError), observer.recording(flask.request, "/score"):
        raise TimeoutError  # SCORING_TIMEOUT_MS's alarm, in the middle of the request

    (line,) = lines(read_end)
    assert line["status"] == 500 and line["error"] == "scoring timeout (SCORING_TIMEOUT_MS)"
    assert metrics.requests.labels("500", "", "")._value.get() == 1 and metrics.rows.labels("", "")._value.get() == 0
    assert metrics.requests_in_flight._value.get() == 0
    (span,) = exported.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR


@pytest.mark.parametrize(("mode", "logged"), [("all", [200, 400]), ("errors", [400]), ("none", [])])
def test_log_requests_chooses_the_lines_and_every_request_is_counted(stdout, mode, logged):
    read_end, write_end = stdout
    metrics = Metrics()
    observer = RequestObserver(metrics, Tracing(), RequestLog(mode, metrics.log_lines_dropped, stdout=write_end))
    for status in (200, 400):
        with request_context(), observer.recording(flask.request, "/score") as record:
            record.status = status
            assert flask.g.tfscoring_logged  # the server's own lines for it are dropped, whatever LOG_REQUESTS says
    assert [line["status"] for line in lines(read_end)] == logged
    assert (
        metrics.requests.labels("200", "", "")._value.get() == metrics.requests.labels("400", "", "")._value.get() == 1
    )


def test_the_batches_series_carry_the_model_and_version_too():
    """A worker serves one version for its life: its session calls, batches, queue waits and out-of-memory splits are
    that version's, so a canary's are told apart from its stable twin's during a swap."""
    metrics = Metrics(model="m", version="3")
    metrics.batched(8)
    metrics.waited(0.002)
    metrics.session_call(0.01)
    metrics.split()
    assert metrics.batch_rows.labels("m", "3")._sum.get() == 8
    assert metrics.queue_wait_seconds.labels("m", "3")._sum.get() == 0.002
    assert metrics.session_seconds.labels("m", "3")._sum.get() == 0.01
    assert metrics.oom_splits.labels("m", "3")._value.get() == 1
    # The pod's load stays one series: the autoscalers read one value per pod, whichever versions its workers serve.
    assert metrics.queued_rows._labelnames == metrics.requests_in_flight._labelnames == ()

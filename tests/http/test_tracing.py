"""An OpenTelemetry span per request, exported over OTLP/HTTP to what OTEL_EXPORTER_OTLP_ENDPOINT names: here a
receiver on 127.0.0.1 that decodes what the server's real exporter sends."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.receivers import Receiver
from tests.support import SCORE_PY, SETTLE_S, ServerProcess, data_body, free_port, post, wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"

ENV = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 4", "OTEL_BSP_SCHEDULE_DELAY": "100"}


def spans(receiver: Receiver) -> list:
    found = []
    for path, _, body in receiver.received:
        if path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            found += [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    return found


def attributes(span) -> dict:
    values = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind)
    return values


@pytest.fixture(scope="module")
def traced(model_dir, tmp_path_factory):
    with Receiver() as receiver:
        env = {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s%3Dcret"}
        with ServerProcess(SCORE_PY, model_dir, tmp_path_factory.mktemp("traced"), env) as server:
            yield server, receiver


def test_each_request_is_a_span_with_its_id_rows_batch_queue_wait_session_time_and_status(traced, t10k):
    server, receiver = traced
    headers = {"x-request-id": "traced-1", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    assert post(server.score_url, data_body(t10k[0][:3]), headers=headers).status_code == 200
    assert post(server.score_url, b'{"data": [[1]]}', headers={"x-request-id": "traced-2"}).status_code == 400

    found = wait_for(lambda: len(spans(receiver)) >= 2 and spans(receiver), SETTLE_S, "two spans exported")
    by_id = {attributes(span)["tfscoring.request_id"]: span for span in found}
    scored = attributes(by_id["traced-1"])
    assert scored["http.response.status_code"] == 200 and scored["tfscoring.rows"] == 3
    assert scored["tfscoring.batch_rows"] >= 3 and scored["url.path"] == "/score"
    assert scored["tfscoring.queue_wait_ms"] >= 0 and scored["tfscoring.session_ms"] > 0
    assert (scored["tfscoring.model.name"], scored["tfscoring.model.version"]) == ("tf-dnn-mnist", "1")  # who answered
    assert by_id["traced-1"].trace_id.hex() == TRACE_ID  # the client's trace goes on here
    refused = attributes(by_id["traced-2"])
    assert refused["http.response.status_code"] == 400 and "expected shape (N, 784)" in refused["tfscoring.error"]
    _, headers, _ = next(r for r in receiver.received if r[0] == "/v1/traces")
    assert headers["x-api-key"] == "s=cret" and headers["content-type"] == "application/x-protobuf"


def test_an_exporter_that_cannot_be_reached_never_delays_or_fails_a_request(model_dir, tmp_path, t10k):
    env = {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}  # nobody listens there
    with ServerProcess(SCORE_PY, model_dir, tmp_path, env) as server:
        answers = [post(server.score_url, data_body(t10k[0][i : i + 2])) for i in range(20)]
        assert [a.status_code for a in answers] == [200] * 20
        expected = np.asarray([a.json() for a in answers]).ravel().tolist()
        assert len(expected) == 40
        server.wait_for_log("cannot export")  # said once, in the log

"""Model data collection (DATA_COLLECTION=1): Azure ML's own package, azureml-ai-monitoring, sends a sample of
requests' inputs and outputs to the collector beside the container; here a receiver on 127.0.0.1 stands where
that collector listens (AZUREML_MDC_HOST / AZUREML_MDC_PORT, as the platform sets them)."""

from __future__ import annotations

import json

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.receivers import Receiver
from tests.support import SCORE_PY, SETTLE_S, ServerProcess, data_body, free_port, post, wait_for

ENV = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 4", "DATA_COLLECTION": "1"}


def collector_env(port: int) -> dict[str, str]:
    return {"AZUREML_MDC_ENABLED": "true", "AZUREML_MDC_HOST": "127.0.0.1", "AZUREML_MDC_PORT": str(port)}


def payloads(receiver: Receiver, kind: str) -> dict[str, list]:
    """What reached the collector for the collection `kind`, by the request id it carries."""
    return {
        headers["ce-x-request-id"]: json.loads(body)
        for path, headers, body in receiver.received
        if path == "/modeldata/log" and headers.get("ce-type") == f"azureml.inference.{kind}"
    }


def test_inputs_and_outputs_reach_azure_mls_collector_correlated_by_request_id(model_dir, tmp_path, t10k):
    rows = t10k[0][:2]
    with (
        Receiver() as receiver,
        ServerProcess(SCORE_PY, model_dir, tmp_path, {**ENV, **collector_env(receiver.port)}) as server,
    ):
        answer = post(server.score_url, data_body(rows), headers={"x-request-id": "collected-1"})
        assert answer.status_code == 200
        wait_for(lambda: "collected-1" in payloads(receiver, "model_outputs"), SETTLE_S, "the outputs collected")
        inputs = payloads(receiver, "model_inputs")["collected-1"]
        outputs = payloads(receiver, "model_outputs")["collected-1"]
    assert np.allclose([record["network/X"] for record in inputs], rows)
    scores = np.asarray([record["network/output/MatMul"] for record in outputs])
    assert scores.shape == (2, 10) and scores.argmax(axis=1).tolist() == answer.json()


def test_a_collector_that_is_down_never_delays_or_fails_a_request(model_dir, tmp_path, t10k):
    env = {**ENV, **collector_env(free_port())}  # nobody listens there
    with ServerProcess(SCORE_PY, model_dir, tmp_path, env) as server:
        answers = [post(server.score_url, data_body(t10k[0][i : i + 4])) for i in range(25)]
    assert [a.status_code for a in answers] == [200] * 25


def test_what_does_not_fit_the_buffer_is_dropped_and_counted(model_dir, tmp_path, t10k):
    port = free_port()
    env = {**ENV, **collector_env(free_port()), "DATA_COLLECTION_MAX_BYTES": "1", "METRICS_PORT": str(port)}
    with ServerProcess(SCORE_PY, model_dir, tmp_path, env) as server:
        assert all(post(server.score_url, data_body(t10k[0][:1])).status_code == 200 for _ in range(3))

        def dropped() -> float:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
            full = {"reason": "buffer_full"}
            return sum(s.value for s in samples if s.name == "tfscoring_collection_dropped_total" and s.labels == full)

        assert wait_for(lambda: dropped() >= 3, SETTLE_S, "3 drops counted")


def test_without_azure_mls_collector_configured_collection_is_off_with_one_warning(model_dir, tmp_path, t10k):
    with ServerProcess(SCORE_PY, model_dir, tmp_path, ENV) as server:
        assert post(server.score_url, data_body(t10k[0][:1])).status_code == 200
        server.wait_for_log("data collection off:")

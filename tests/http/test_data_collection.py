"""Model data collection (DATA_COLLECTION=1): Azure ML's own package, azureml-ai-monitoring, sends a sample of
requests' inputs and outputs to the collector beside the container; here a receiver on 127.0.0.1 stands where
that collector listens (AZUREML_MDC_HOST / AZUREML_MDC_PORT, as the platform sets them)."""

from __future__ import annotations

import json

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.receivers import HungReceiver, Receiver
from tests.support import SCORE_PY, SETTLE_S, ServerProcess, data_body, free_port, post, wait_for

ENV = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 4", "DATA_COLLECTION": "1"}


def collector_env(port: int) -> dict[str, str]:
    return {"AZUREML_MDC_ENABLED": "true", "AZUREML_MDC_HOST": "127.0.0.1", "AZUREML_MDC_PORT": str(port)}


def platform_env(tmp_path, port: int) -> dict[str, str]:
    """As Azure ML sets a deployment up whose data_collector enables the two collections: a configuration file."""
    config = tmp_path / "mdc-config.json"
    collections = {name: {"enabled": True, "sampleRatePercentage": 100} for name in ("model_inputs", "model_outputs")}
    config.write_text(json.dumps({"runMode": "cloud", "collections": collections}))
    return {"AZUREML_MDC_CONFIG_PATH": str(config), "AZUREML_MDC_HOST": "127.0.0.1", "AZUREML_MDC_PORT": str(port)}


def metric(port: int, name: str, **labels) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return sum(s.value for s in samples if s.name == name and s.labels == labels)


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
        ServerProcess(SCORE_PY, model_dir, tmp_path, {**ENV, **platform_env(tmp_path, receiver.port)}) as server,
    ):
        answer = post(server.score_url, data_body(rows), headers={"x-request-id": "collected-1"})
        assert answer.status_code == 200
        wait_for(lambda: "collected-1" in payloads(receiver, "model_outputs"), SETTLE_S, "the outputs collected")
        inputs = payloads(receiver, "model_inputs")["collected-1"]
        outputs = payloads(receiver, "model_outputs")["collected-1"]
    # A column per value of a row, as drift monitoring reads them.
    assert np.allclose([[record[f"network/X_{i}"] for i in range(784)] for record in inputs], rows)
    scores = np.asarray([[record[f"network/output/MatMul_{i}"] for i in range(10)] for record in outputs])
    assert scores.shape == (2, 10) and scores.argmax(axis=1).tolist() == answer.json()


def test_a_collector_that_is_down_never_fails_a_request_and_each_undelivered_one_is_counted(model_dir, tmp_path, t10k):
    port = free_port()
    env = {**ENV, **collector_env(free_port()), "METRICS_PORT": str(port)}  # nobody listens at the collector's port
    with ServerProcess(SCORE_PY, model_dir, tmp_path, env) as server:
        answers = [post(server.score_url, data_body(t10k[0][i : i + 4])) for i in range(25)]
        assert [a.status_code for a in answers] == [200] * 25
        wait_for(lambda: metric(port, "tfscoring_collection_dropped_total", reason="send_failed") >= 25, SETTLE_S,
                 "25 undelivered requests counted")  # fmt: skip
        assert server.log().count("data collector:") == 1  # said once, not two lines a payload


def test_a_collector_that_hangs_never_fails_a_request_and_the_buffer_stays_bounded(model_dir, tmp_path, t10k):
    port = free_port()
    with HungReceiver() as collector:
        env = {**ENV, **collector_env(collector.port), "METRICS_PORT": str(port),
               "DATA_COLLECTION_MAX_BYTES": str(2 * 1024 * 1024)}  # some 20 requests of 4 rows  # fmt: skip
        with ServerProcess(SCORE_PY, model_dir, tmp_path, env) as server:
            answers = [post(server.score_url, data_body(t10k[0][i : i + 4])) for i in range(60)]
            assert [a.status_code for a in answers] == [200] * 60
            # One payload hangs in the package's sender; what comes after waits in the bounded buffer, the rest
            # is dropped and counted: nothing piles up in the package's queue.
            wait_for(lambda: metric(port, "tfscoring_collection_dropped_total", reason="buffer_full") >= 10,
                     SETTLE_S, "drops counted")  # fmt: skip
            assert metric(port, "tfscoring_collected_total") <= 2


def test_a_request_larger_than_an_eighth_of_the_buffer_is_dropped_and_counted(model_dir, tmp_path, t10k):
    port = free_port()
    env = {**ENV, **collector_env(free_port()), "DATA_COLLECTION_MAX_BYTES": "1024", "METRICS_PORT": str(port)}
    with ServerProcess(SCORE_PY, model_dir, tmp_path, env) as server:
        assert all(post(server.score_url, data_body(t10k[0][:1])).status_code == 200 for _ in range(3))
        assert wait_for(lambda: metric(port, "tfscoring_collection_dropped_total", reason="too_large") >= 3,
                        SETTLE_S, "3 drops counted")  # fmt: skip


def test_without_azure_mls_collector_configured_collection_is_off_with_one_warning(model_dir, tmp_path, t10k):
    port = free_port()
    with ServerProcess(SCORE_PY, model_dir, tmp_path, {**ENV, "METRICS_PORT": str(port)}) as server:
        server.wait_for_log("data collection off:")
        assert post(server.score_url, data_body(t10k[0][:1])).status_code == 200
        assert metric(port, "tfscoring_collection_dropped_total", reason="buffer_full") == 0  # nothing kept, no drop

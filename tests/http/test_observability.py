"""Prometheus metrics of every worker on a port of their own, and one JSON log line per request."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import SCORE_PY, ServerProcess, data_body, free_port, post, wait_for, worker_pids


@pytest.fixture(scope="module")
def observed_server(model_dir, tmp_path_factory):
    port = free_port()
    env = {
        "WORKER_COUNT": "2",
        "GUNICORN_CMD_ARGS": "--threads 4",
        "METRICS_PORT": str(port),
        "MAX_REQUEST_ROWS": "100",
        "MAX_BATCH_ROWS": "32",
    }
    process = ServerProcess(SCORE_PY, model_dir, tmp_path_factory.mktemp("observed"), env)
    process.metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        process.wait_healthy()
        both_ready = lambda: len(worker_pids(process.process.pid)) == 2 and _ready_workers(process) >= 2  # noqa: E731
        wait_for(both_ready, 120, "both workers ready")
        wait_for(lambda: _metrics_servers(process), 120, "a worker serving the metrics")  # from a thread of its own
        yield process
    finally:
        process.stop()


def scrape(server) -> dict[tuple[str, tuple], float]:
    """Every sample of the metrics endpoint, keyed by (name, sorted labels)."""
    text = requests.get(server.metrics_url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    """The sum of `name`'s samples that carry `labels`, whatever their other labels (the model and version that
    answered: PromQL's `sum without (model, version)`)."""
    return sum(
        sampled
        for (sample_name, sample_labels), sampled in samples.items()
        if sample_name == name and labels.items() <= dict(sample_labels).items()
    )


# The series of a request and of its batches, labelled with the model and version that answered.
LABELLED = {
    "tfscoring_requests_total", "tfscoring_request_duration_seconds", "tfscoring_rows_total", "tfscoring_batch_rows",
    "tfscoring_queue_wait_seconds", "tfscoring_session_seconds", "tfscoring_oom_splits_total",
}  # fmt: skip


def _family(sample: str) -> str:
    """A histogram sample's metric: tfscoring_batch_rows_sum -> tfscoring_batch_rows."""
    for suffix in ("_bucket", "_count", "_sum"):
        if sample.endswith(suffix) and not sample.endswith("_total"):
            return sample.removesuffix(suffix)
    return sample


def _ready_workers(server) -> int:
    return len(re.findall(r"Worker with pid \d+ ready for serving traffic", server.log()))


def _metrics_servers(server) -> list[int]:
    """The workers that have served the metrics port, in turn."""
    return [int(pid) for pid in re.findall(r"worker (\d+) serves the metrics of every worker", server.log())]


def test_metrics_count_the_requests_rows_and_batches_of_every_worker(observed_server, t10k):
    images, _ = t10k
    before = scrape(observed_server)
    with ThreadPoolExecutor(8) as pool:
        good = list(pool.map(lambda i: post(observed_server.score_url, data_body(images[i : i + 3])), range(40)))
        bad = list(pool.map(lambda _: post(observed_server.score_url, b'{"data": [[1, 2]]}'), range(5)))
    too_many = post(observed_server.score_url, data_body(images[:101]))
    assert [r.status_code for r in good] == [200] * 40
    assert [r.status_code for r in bad] == [400] * 5
    assert too_many.status_code == 413

    after = scrape(observed_server)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tfscoring_requests_total", status="200") == 40
    assert delta("tfscoring_requests_total", status="200", model="tf-dnn-mnist", version="1") == 40  # who answered
    assert delta("tfscoring_requests_total", status="400") == 5
    assert delta("tfscoring_requests_total", status="413") == 1
    assert delta("tfscoring_request_duration_seconds_count") == 46
    assert delta("tfscoring_rows_total") == 120
    assert delta("tfscoring_batch_rows_sum") == 120  # every scored row went through exactly one session call
    assert 4 <= delta("tfscoring_batch_rows_count") <= 40  # 32 rows at most per call, one call per request at most
    assert delta("tfscoring_session_seconds_count") == delta("tfscoring_batch_rows_count")
    assert delta("tfscoring_queue_wait_seconds_count") == 40  # each scored request waited once for its first batch
    assert value(after, "tfscoring_queued_rows") == 0
    # Every series of a request and of its batches says which model and version answered: models/tf-dnn-mnist/1.
    labelled = [(_family(name), dict(labels)) for name, labels in after if _family(name) in LABELLED]
    assert {family for family, _ in labelled} == LABELLED
    assert all((labels["model"], labels["version"]) == ("tf-dnn-mnist", "1") for _, labels in labelled), labelled


def test_every_live_worker_reports_the_device_it_scores_on(observed_server):
    samples = scrape(observed_server)
    devices = {
        dict(labels)["pid"]: dict(labels)["device"] for name, labels in samples if name == "tfscoring_worker_device"
    }
    assert set(devices) == {str(pid) for pid in worker_pids(observed_server.process.pid)}
    ready = re.findall(r"model ready on (\S+):", observed_server.log())
    assert set(devices.values()) <= set(ready)


def test_each_request_logs_one_json_line_with_its_ids(observed_server, t10k):
    request_id, client_id = f"req-{uuid.uuid4()}", f"client-{uuid.uuid4()}"
    headers = {"x-request-id": request_id, "x-ms-request-id": client_id}
    response = post(observed_server.score_url, data_body(t10k[0][:3]), headers=headers)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id  # echoed by the inference server
    assert response.headers["x-ms-request-id"] == client_id

    refused = post(observed_server.score_url, b'{"data": []}', headers={"x-request-id": f"{request_id}-bad"})
    assert refused.status_code == 400

    lines = [line for line in observed_server.settled_log().splitlines() if request_id in line]
    assert len(lines) == 2, lines
    scored, bad = (json.loads(line) for line in lines)
    assert scored["request_id"] == request_id
    assert scored["client_request_id"] == client_id
    assert (scored["status"], scored["rows"], scored["event"]) == (200, 3, "request")
    assert (scored["model"], scored["model_version"]) == (bad["model"], bad["model_version"]) == ("tf-dnn-mnist", "1")
    assert "error" not in scored
    assert (bad["status"], bad["rows"]) == (400, 0)
    assert bad["error"] == refused.json()["error"]


def test_the_servers_own_per_request_lines_are_not_logged_for_scored_requests(observed_server, t10k):
    post(observed_server.score_url, data_body(t10k[0][:1]))
    log = observed_server.settled_log()
    assert '"POST /score HTTP/1.1"' not in log  # gunicorn's access line
    assert "run() output is HTTP Response" not in log
    assert not re.search(r"azmlinfsrv - POST /score \d{3} ", log)
    assert "x-ms-request-id header has been deprecated" not in log


def test_metrics_outlive_the_worker_that_served_them(observed_server, t10k):
    """SIGKILL the worker holding the metrics port: its replacement serves them, totals kept, its gauge gone."""
    killed = _metrics_servers(observed_server)[-1]
    before = scrape(observed_server)
    scored_before = value(before, "tfscoring_requests_total", status="200")
    survivor = worker_pids(observed_server.process.pid) - {killed}

    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: len(worker_pids(observed_server.process.pid) - survivor - {killed}) == 1, 120, "a replacement")
    (replacement,) = worker_pids(observed_server.process.pid) - survivor
    ready = f"[{replacement}] azmlinfsrv - Worker with pid {replacement} ready"
    observed_server.wait_for_log(ready, timeout=120)
    wait_for(lambda: _metrics_servers(observed_server)[-1] != killed, 120, "another worker serving the metrics")

    assert post(observed_server.score_url, data_body(t10k[0][:2])).status_code == 200
    after = scrape(observed_server)
    assert value(after, "tfscoring_requests_total", status="200") >= scored_before + 1
    pids = {dict(labels)["pid"] for name, labels in after if name == "tfscoring_worker_device"}
    assert pids == {str(pid) for pid in survivor | {replacement}}


@pytest.fixture(scope="module")
def sync_server(model_dir, tmp_path_factory):
    """azmlinfsrv's default: one sync worker, no threads; its metrics port held by another program at start."""
    holder = socket.create_server(("", 0))  # all interfaces, as the metrics server binds
    port = holder.getsockname()[1]
    env = {"WORKER_COUNT": "1", "METRICS_PORT": str(port)}
    process = ServerProcess(SCORE_PY, model_dir, tmp_path_factory.mktemp("sync"), env)
    process.metrics_url = f"http://127.0.0.1:{port}/metrics"
    process.port_holder = holder
    try:
        yield process.wait_healthy()
    finally:
        holder.close()
        process.stop()


def test_a_metrics_port_held_by_another_program_is_taken_once_it_is_free(sync_server, t10k):
    sync_server.wait_for_log(f"metrics port {sync_server.metrics_url.split(':')[2].split('/')[0]} is taken")
    sync_server.port_holder.close()
    assert post(sync_server.score_url, data_body(t10k[0][:2])).status_code == 200

    def served() -> bool:
        try:
            return requests.get(sync_server.metrics_url, timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(served, 60, "the metrics to be served")
    assert value(scrape(sync_server), "tfscoring_requests_total", status="200") >= 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/score", 200), ("POST", "/score?verbose=1", 200), ("GET", "/score", 200), ("POST", "/score", 400)],
)
def test_a_sync_worker_logs_one_line_per_request_too(sync_server, t10k, method, path, status):
    request_id = f"sync-{uuid.uuid4()}"
    body = data_body(t10k[0][:1]) if status != 400 else b"[]"
    response = requests.request(method, sync_server.url + path, data=body, headers={"x-request-id": request_id})
    assert response.status_code == status
    log = sync_server.settled_log()
    assert len([line for line in log.splitlines() if request_id in line]) == 1
    assert not re.search(rf"azmlinfsrv - {method} /score\S* {status} ", log)


def test_a_request_the_script_never_saw_keeps_the_servers_lines(sync_server, t10k):
    """A /score request whose access line gunicorn's own filter drops must not hide the next request's lines."""
    sneaky = post(sync_server.score_url, data_body(t10k[0][:1]), headers={"User-Agent": "GET / HTTP/1.1"})
    assert sneaky.status_code == 200
    marker = f"agent-{uuid.uuid4()}"
    refused = post(sync_server.score_url, b"{}", headers={"x-request-id": "x" * 101, "User-Agent": marker})
    assert refused.status_code == 431  # answered by azmlinfsrv before run()
    sync_server.wait_for_log(marker)  # gunicorn's access line for it, written after the response


def test_importing_the_metrics_module_makes_no_directory_and_sets_no_variable(tmp_path):
    """The metrics' directory is made by Metrics.setup(), which init() calls, never by an import (a unit test,
    a tool importing the package)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["TMPDIR"] = str(tmp_path)
    program = (
        "import os, tfscoring.observability.metrics as metrics; "
        "print('PROMETHEUS_MULTIPROC_DIR' in os.environ, sorted(os.listdir(os.environ['TMPDIR']))); "
        "made = metrics.Metrics(); made.batched(3); print(made.directory)"
    )
    run = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60,
                         cwd=SCORE_PY.parent)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["False []", "None"]  # a metric used before setup() stays in the process

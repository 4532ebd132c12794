"""Which model and version answered, everywhere: a response header on every answer of /score and /v2 (errors too),
the metrics' series, the request log line; the /v2 paths of the version served and a worded 404 for another; and
warm-up with the requests shipped beside the model (warmup.jsonl), which a broken line stops at start-up.

The server serves a versioned folder through the front door: mnist/1 and mnist/2 (each linking the how-to's
checkpoint), so version 2, whose folder holds a warm-up file, is the one served."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import SCORE_PY, FrontDoorProcess, ServerProcess, data_body, free_port, post, wait_for

NAME, SERVED, OLDER = "mnist", "2", "1"
ALLOWED = "https://app.example.com"
MAX_ROWS = 50


def versioned_folder(root, model_dir, warmup_lines: list[str]):
    """root/mnist/{1,2}/model -> the how-to's checkpoint; warmup.jsonl in 2/ holding `warmup_lines`."""
    for version in (OLDER, SERVED):
        folder = root / NAME / version
        folder.mkdir(parents=True)
        (folder / "model").symlink_to((model_dir / "model").resolve(), target_is_directory=True)
    (root / NAME / SERVED / "warmup.jsonl").write_text("".join(line + "\n" for line in warmup_lines))
    return root / NAME


WARMUP = [
    json.dumps({"data": [[0.5] * 784]}),
    "",
    json.dumps({"inputs": [{"name": "network/X", "shape": [2, 784], "datatype": "FP32", "data": [0.25] * 1568}]}),
]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    metrics_port = free_port()
    env = {
        "WORKER_COUNT": "1",
        "GUNICORN_CMD_ARGS": "--threads 4",
        "MAX_REQUEST_ROWS": str(MAX_ROWS),
        "METRICS_PORT": str(metrics_port),
        "AML_CORS_ORIGINS": ALLOWED,
    }
    with FrontDoorProcess(versioned_folder(root, model_dir, WARMUP), root, env) as running:
        running.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        yield running


def oip(server, path: str) -> str:
    return f"{server.url}/v2/models/{path}"


def infer_body(rows) -> dict:
    return {
        "inputs": [{"name": "network/X", "shape": [len(rows), 784], "datatype": "FP32", "data": rows.ravel().tolist()}]
    }


def answers(server, t10k) -> dict[str, requests.Response]:
    """One answer of each kind the scoring script gives, successes and errors."""
    rows = t10k[0][:2]
    return {
        "GET /score": requests.get(server.score_url, timeout=30),
        "POST /score": post(server.score_url, data_body(rows)),
        "POST /score 400": post(server.score_url, b'{"data": [[1, 2]]}'),
        "POST /score 413": post(server.score_url, data_body(t10k[0][: MAX_ROWS + 1])),
        "OPTIONS /score": requests.options(server.score_url, timeout=30),
        "GET /v2": requests.get(f"{server.url}/v2", timeout=30),
        "GET model": requests.get(oip(server, NAME), timeout=30),
        "GET version": requests.get(oip(server, f"{NAME}/versions/{SERVED}"), timeout=30),
        "GET ready": requests.get(oip(server, f"{NAME}/versions/{SERVED}/ready"), timeout=30),
        "POST infer": requests.post(oip(server, f"{NAME}/versions/{SERVED}/infer"), json=infer_body(rows), timeout=30),
        "GET other version 404": requests.get(oip(server, f"{NAME}/versions/{OLDER}"), timeout=30),
        "GET other model 404": requests.get(oip(server, "another"), timeout=30),
        "GET infer 405": requests.get(oip(server, f"{NAME}/infer"), timeout=30),
    }


def test_every_answer_of_the_script_names_the_model_and_version_that_answered(server, t10k):
    got = answers(server, t10k)
    statuses = {what: answer.status_code for what, answer in got.items()}
    assert statuses == {what: int(what.rsplit(" ", 1)[1]) if what.rsplit(" ", 1)[1].isdigit() else 200 for what in got}
    for what, answer in got.items():
        assert (answer.headers.get("X-Model-Name"), answer.headers.get("X-Model-Version")) == (NAME, SERVED), what


def test_a_browser_page_may_read_the_model_headers(server, t10k):
    for answer in (
        post(server.score_url, data_body(t10k[0][:1]), headers={"Origin": ALLOWED}),
        post(server.score_url, b"{}", headers={"Origin": ALLOWED}),  # a 400
    ):
        exposed = {name.strip() for name in answer.headers["Access-Control-Expose-Headers"].lower().split(",")}
        assert {"x-model-name", "x-model-version"} <= exposed, answer.status_code


def test_the_paths_of_the_version_served_answer_for_it(server, t10k):
    metadata = requests.get(server.score_url, timeout=30).json()
    assert (metadata["name"], metadata["versions"]) == (NAME, [SERVED])
    assert requests.get(oip(server, NAME), timeout=30).json() == metadata
    assert requests.get(oip(server, f"{NAME}/versions/{SERVED}"), timeout=30).json() == metadata
    ready = requests.get(oip(server, f"{NAME}/versions/{SERVED}/ready"), timeout=30)
    assert (ready.status_code, ready.json()["ready"]) == (200, True)
    inferred = requests.post(oip(server, f"{NAME}/versions/{SERVED}/infer"), json=infer_body(t10k[0][:3]), timeout=30)
    assert inferred.status_code == 200
    assert (inferred.json()["model_name"], inferred.json()["model_version"]) == (NAME, SERVED)


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("GET", "/ready"), ("GET", "/config"), ("POST", "/infer")])
def test_a_version_not_served_is_a_worded_404(server, t10k, method, suffix):
    body = infer_body(t10k[0][:1]) if method == "POST" else None
    answer = requests.request(method, oip(server, f"{NAME}/versions/{OLDER}{suffix}"), json=body, timeout=30)
    assert answer.status_code == 404
    assert answer.json()["error"] == (
        f"version '{OLDER}' of model '{NAME}' is not served here; the version served is '{SERVED}'"
    )


def scrape(server) -> list[tuple[str, dict[str, str], float]]:
    text = requests.get(server.metrics_url, timeout=10).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def test_the_metrics_of_requests_and_batches_carry_the_model_and_version(server, t10k):
    assert post(server.score_url, data_body(t10k[0][:4])).status_code == 200
    assert post(server.score_url, b"[]").status_code == 400

    def scored() -> list:
        samples = scrape(server)
        counted = [v for n, labels, v in samples if n == "tfscoring_requests_total" and labels["status"] == "400"]
        return counted and samples

    samples = wait_for(scored, 30, "the requests counted")  # counted once answered: the scrape may come first
    for family in ("tfscoring_requests_total", "tfscoring_request_duration_seconds_count", "tfscoring_rows_total",
                   "tfscoring_batch_rows_count", "tfscoring_queue_wait_seconds_count",
                   "tfscoring_session_seconds_count", "tfscoring_oom_splits_total"):  # fmt: skip
        series = [labels for name, labels, _ in samples if name == family]
        assert series, family
        assert all((labels["model"], labels["version"]) == (NAME, SERVED) for labels in series), (family, series)
    (device,) = [labels for name, labels, _ in samples if name == "tfscoring_worker_device"]
    assert (device["model"], device["version"]) == (NAME, SERVED)


def test_the_request_log_line_names_the_model_and_version(server, t10k):
    request_id = f"labels-{uuid.uuid4()}"
    assert post(server.score_url, data_body(t10k[0][:1]), headers={"x-request-id": request_id}).status_code == 200
    log = server.wait_for_log(request_id)
    (line,) = [json.loads(line) for line in log.splitlines() if request_id in line and line.startswith("{")]
    assert (line["model"], line["model_version"], line["status"]) == (NAME, SERVED, 200)


def test_the_warm_up_file_is_scored_before_the_worker_is_ready(server):
    log = server.log()  # the server is ready: its worker has written every start-up line
    warmed = re.search(r"warm-up requests: (\d+) requests \((\d+) rows\) from (\S+) in \d+ ms", log)
    assert warmed, log[-3000:]
    assert (warmed[1], warmed[2]) == ("2", "3")
    assert warmed[3].endswith(f"/{NAME}/{SERVED}/warmup.jsonl")
    assert log.index(warmed[0]) < log.index("ready for serving traffic")


def test_a_broken_warm_up_line_stops_start_up_naming_the_file_and_line(model_dir, tmp_path):
    broken = [json.dumps({"data": [[0.5] * 784]}), json.dumps({"data": [[1, 2, 3]]})]
    folder = versioned_folder(tmp_path, model_dir, broken)
    process = ServerProcess(SCORE_PY, folder, tmp_path, {"WORKER_COUNT": "1", "METRICS_PORT": "0"})
    exit_code = process.wait_exit(timeout=180)
    log = process.log()
    assert exit_code == 3, log[-3000:]
    (failure,) = [line for line in log.splitlines() if "start-up failed:" in line]
    assert f"start-up failed: warm-up file {folder / SERVED / 'warmup.jsonl'}, line 2: refused (400): " in failure
    assert "expected shape (N, 784)" in failure  # the reason
    # azmlinfsrv's own Application Insights set-up logs a traceback of its own before init() for a versioned folder
    # (it reads AZUREML_MODEL_DIR as a folder of models); from init() on, the line above says everything.
    assert "Traceback" not in log[log.index("Invoking user's init function") :]

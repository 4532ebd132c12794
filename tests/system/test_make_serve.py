"""`make serve MODEL_DIR=<dir>` serves a graph the project has never seen, as the README says, and never writes
into that folder: the demo graph's serving signature alone gives its interface (issue: any TF1 graph)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from model import demo
from tests.support import ISOLATED_SETTINGS, REPO, free_port, post, wait_for_health
from tfscoring.config import Settings
from tfscoring.tf.model import GraphModel


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def served(tmp_path):
    """make serve on the demo graph, in the registered-model layout <name>/<version>/, on a free port."""
    model_dir = tmp_path / "fraud-check" / "7"
    demo.build(model_dir, kind="two-inputs", prefix="export")
    before = snapshot(model_dir)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_SETTINGS}
    env.update({"WORKER_COUNT": "1", "METRICS_PORT": "0", "TF_CPP_MIN_LOG_LEVEL": "2"})
    log = (tmp_path / "make-serve.log").open("wb")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"MODEL_DIR={model_dir}", f"PORT={port}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url + "/v2/health/ready", process, lambda: (tmp_path / "make-serve.log").read_text(), 300)
        yield url, model_dir
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        log.close()
    assert snapshot(model_dir) == before, "make serve wrote into MODEL_DIR"


def test_make_serve_serves_another_models_folder_in_every_json_protocol_and_leaves_it_as_it_was(served):
    url, model_dir = served
    rng = np.random.default_rng(8)
    images, offsets = rng.random((3, 28, 28, 1), dtype=np.float32), np.array([4, -2, 9], np.int64)
    model = GraphModel.load(Settings(azureml_model_dir=model_dir))
    try:
        labels, probabilities = model.predict((images, offsets))
    finally:
        model.close()

    assert requests.get(url + "/score", timeout=10).json()["name"] == "fraud-check"
    rows = [{"image": images[i].tolist(), "offset": int(offsets[i])} for i in range(3)]
    predictions = post(url + "/score", json.dumps({"instances": rows}).encode()).json()["predictions"]
    assert [p["label"] for p in predictions] == labels.tolist()
    assert np.allclose([p["probabilities"] for p in predictions], probabilities, atol=1e-6)
    columns = {"image": images.tolist(), "offset": offsets.tolist()}
    assert post(url + "/score", json.dumps({"inputs": columns}).encode()).json()["outputs"]["label"] == labels.tolist()
    tensors = [
        {"name": "image", "shape": [3, 28, 28, 1], "datatype": "FP32", "data": images.ravel().tolist()},
        {"name": "offset", "shape": [3], "datatype": "INT64", "data": offsets.tolist()},
    ]
    answer = post(url + "/v2/models/fraud-check/versions/7/infer", json.dumps({"inputs": tensors}).encode())
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0] == {"name": "label", "shape": [3], "datatype": "INT64", "data": labels.tolist()}

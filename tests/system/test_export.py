"""`make export` as docs/export.md runs it on the trained model, then the export served by this server over HTTP:
a way off TF1 that keeps the answers (issue 24, item 6)."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from tests.support import ISOLATED_SETTINGS, REPO, SCORE_PY, ServerProcess, post
from tfscoring.config import Settings
from tfscoring.tf.model import GraphModel


@pytest.fixture(scope="module")
def export(model_dir, data_dir, tmp_path_factory):
    """The trained model exported by make export, in TF Serving's layout <base>/<version>/, and make's output."""
    folder = tmp_path_factory.mktemp("exports") / "tf-dnn-mnist" / "1"
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_SETTINGS}
    argv = ["make", "--no-print-directory", "export", f"MODEL_DIR={model_dir}", f"EXPORT_DIR={folder}"]
    done = subprocess.run([*argv, f"DATA_DIR={data_dir}"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder, done.stdout


def test_make_export_compares_the_trained_models_answers_bit_for_bit(export):
    folder, report = export
    assert (folder / "saved_model.pb").is_file()
    assert "256 rows, Fashion-MNIST t10k images" in report
    assert report.count("network/output/MatMul float32 (256, 10): max |diff| 0 (bit-exact)") == 2
    assert "the export answers as the served model does" in report


def test_the_export_served_over_http_answers_as_the_checkpoint_does(export, model_dir, t10k, tmp_path):
    folder, _ = export
    images = t10k[0][:50]
    served = GraphModel.load(Settings(azureml_model_dir=model_dir))
    try:
        (logits,) = served.predict((images,))
    finally:
        served.close()

    with ServerProcess(SCORE_PY, folder, tmp_path, {"WORKER_COUNT": "1"}) as server:
        how_to = post(server.score_url, json.dumps({"data": images.tolist()}).encode())
        columns = post(server.score_url, json.dumps({"inputs": images.tolist()}).encode())

    assert how_to.status_code == 200, how_to.text
    assert how_to.json() == logits.argmax(axis=1).tolist()
    assert columns.status_code == 200, columns.text
    assert np.array_equal(np.array(columns.json()["outputs"], np.float32), logits)

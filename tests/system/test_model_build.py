"""model/build.py as make model runs it (python -m model.build): the same seed gives the same weights, a short build
reports its accuracy, missing data is a clear error; and the model make model built (MODEL_DIR, the trained model the
unit tests go without): its registered-model layout, names and held-out accuracy, in-process and in the how-to's
score.py, which loads it unchanged."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.support import REPO, data_body
from tfscoring.config import Settings
from tfscoring.tf.model import GraphModel


def _build(out: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "model.build", "--out", str(out), "--data-dir", str(data_dir), *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("mnist-tf.model.data-*")}


def test_same_seed_same_weights_and_a_short_build_reports_accuracy(tmp_path, data_dir):
    small = ("--epochs", "1", "--limit", "3000")
    first, second = _build(tmp_path / "a", data_dir, *small), _build(tmp_path / "b", data_dir, *small)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:]
    assert "held-out (t10k) accuracy" in first.stdout
    assert _digest(tmp_path / "a" / "model") == _digest(tmp_path / "b" / "model") != {}


def test_missing_data_is_a_clear_error(tmp_path):
    result = _build(tmp_path / "m", tmp_path / "no-data")
    assert result.returncode == 2
    assert f"no train-images-idx?-ubyte[.gz] in {tmp_path / 'no-data'}" in result.stderr


def test_built_model_has_the_registered_model_layout(model_dir):
    folder = model_dir / "model"
    names = {p.name for p in folder.iterdir()}
    assert {"mnist-tf.model.meta", "mnist-tf.model.index", "checkpoint", "model-info.json"} <= names
    assert any(n.startswith("mnist-tf.model.data-") for n in names)


def test_built_model_info_and_held_out_accuracy(model_dir):
    info = json.loads((model_dir / "model" / "model-info.json").read_text())
    assert info["input_tensor"] == "network/X:0"
    assert info["output_tensor"] == "network/output/MatMul:0"
    assert info["input_width"] == 784 and info["classes"] == 10
    assert info["test_images"] == 10000
    assert info["test_accuracy"] >= 0.87


def test_the_built_model_scores_t10k_in_process(model_dir, t10k):
    """GraphModel on the trained model: ten float32 scores per row, whose argmax is most often right (the rest of
    GraphModel's tests: tests/unit/test_graph_model.py, on the how-to's graph untrained)."""
    images, labels = t10k
    model = GraphModel.load(Settings(azureml_model_dir=model_dir))
    try:
        (scores,) = model.predict((images[:1000],))  # one session call of all 1000 rows
    finally:
        model.close()
    assert scores.dtype == np.float32 and scores.shape == (1000, 10)
    predicted = scores.argmax(axis=1)
    assert (predicted == labels[:1000]).mean() > 0.85


def test_howto_score_py_loads_the_model_unchanged(model_dir, t10k, monkeypatch):
    """The how-to's init()/run(), in-process, with the how-to's JSON body."""
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_dir))
    howto = importlib.import_module("bench.howto_score")
    howto.init()
    images, labels = t10k
    predictions = howto.run(data_body(images[:500]))
    assert (np.array(predictions) == labels[:500]).mean() > 0.85

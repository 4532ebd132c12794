"""Fixtures of every kind of test: the built model, the t10k data, a worker's environment, and the how-to's own
server, the reference of the HTTP tests and the image's (started once per session, only where a test asks for it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from model import idx
from tests.support import GPU_SHARING, HOWTO_SCORE_PY, REPO, ServerProcess
from tfscoring.config import Settings

os.environ.update(GPU_SHARING)  # for the sessions the tests open in-process


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = REPO / os.environ.get("MODEL_DIR", "models/tf-dnn-mnist/1")
    if not (path / "model" / "mnist-tf.model.index").is_file():
        pytest.fail(f"no model at {path}: run `make model` (make test does it)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR", idx.DEFAULT_DATA_DIR))


@pytest.fixture(scope="session")
def t10k(data_dir) -> tuple[np.ndarray, np.ndarray]:
    return idx.load_split(data_dir, "t10k")


@pytest.fixture
def env(monkeypatch):
    """The environment of a worker as Azure ML starts it: the model directory and no other setting."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("AZUREML_MODEL_DIR", "/models/tf-dnn-mnist/1")
    return monkeypatch


@pytest.fixture(scope="session")
def howto_server(model_dir, tmp_path_factory):
    """The how-to's own score.py on the same azmlinfsrv and model: the reference."""
    with ServerProcess(HOWTO_SCORE_PY, model_dir, tmp_path_factory.mktemp("howto-server")) as server:
        yield server


@pytest.fixture(scope="session")
def t10k_class_ids(model_dir, t10k) -> np.ndarray:
    """The how-to's model's class ids for the first 600 t10k rows, in-process: what every split must give."""
    from tfscoring.config import Settings
    from tfscoring.tf.model import GraphModel

    reference = GraphModel.load(Settings(azureml_model_dir=model_dir))
    try:
        return reference.predict((t10k[0][:600],))[0].argmax(axis=1)
    finally:
        reference.close()

"""The model model/ builds for the how-to: its layout, names and accuracy, the how-to loads it, and the data reader
(the build program itself: tests/system/test_model_build.py)."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from model import idx
from tests.support import data_body


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


def test_howto_score_py_loads_the_model_unchanged(model_dir, t10k, monkeypatch):
    """The how-to's init()/run(), in-process, with the how-to's JSON body."""
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_dir))
    howto = importlib.import_module("bench.howto_score")
    howto.init()
    images, labels = t10k
    predictions = howto.run(data_body(images[:500]))
    assert (np.array(predictions) == labels[:500]).mean() > 0.85


def test_idx_reader_accepts_gzipped_and_raw_files(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    (tmp_path / "raw-idx3-ubyte").write_bytes(header + array.tobytes())
    assert (idx.read_idx(tmp_path / "raw-idx3-ubyte") == array).all()
    with pytest.raises(idx.IdxError, match="not an unsigned-byte idx file"):
        (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
        idx.read_idx(tmp_path / "bad")
    with pytest.raises(idx.IdxError, match=r"header says shape \(2, 3, 4\), file holds 23 values"):
        (tmp_path / "short").write_bytes(header + array.tobytes()[:-1])
        idx.read_idx(tmp_path / "short")


def test_debian_fashion_mnist_is_read_as_28x28_images(t10k):
    images, labels = t10k
    assert images.shape == (10000, 784) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(np.unique(labels)) == set(range(10))

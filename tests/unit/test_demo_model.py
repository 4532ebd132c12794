"""model.demo writes an untrained meta-graph checkpoint whose serving signature names its tensors under other keys."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from model import demo
from tests.support import REPO

v1 = tf.compat.v1

FLOAT, INT64 = tf.float32.as_datatype_enum, tf.int64.as_datatype_enum


def load(prefix):
    """A fresh graph and session holding the checkpoint, and its MetaGraphDef."""
    meta = v1.MetaGraphDef()
    meta.ParseFromString(prefix.with_name(prefix.name + ".meta").read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        saver = v1.train.import_meta_graph(meta, clear_devices=True)
        session = v1.Session(graph=graph)
        saver.restore(session, str(prefix))
    return meta, graph, session


def shape(info):
    return tuple(None if d.size == -1 else d.size for d in info.tensor_shape.dim)


def images(n):
    return np.random.RandomState(0).rand(n, 28, 28, 1).astype(np.float32)


def test_two_inputs_signature_and_outputs(tmp_path):
    prefix = demo.build(tmp_path)
    assert prefix == tmp_path / "model" / "demo.model"
    assert {p.name for p in prefix.parent.iterdir()} == {
        "checkpoint",
        "demo.model.meta",
        "demo.model.index",
        "demo.model.data-00000-of-00001",
    }
    meta, graph, session = load(prefix)
    with session:
        assert list(meta.signature_def) == ["serving_default"]
        sig = meta.signature_def["serving_default"]
        assert sig.method_name == "tensorflow/serving/predict"
        assert {k: (v.name, v.dtype, shape(v)) for k, v in sig.inputs.items()} == {
            "image": ("inputs/pixels:0", FLOAT, (None, 28, 28, 1)),
            "offset": ("inputs/shift:0", INT64, (None,)),
        }
        assert {k: (v.name, v.dtype, shape(v)) for k, v in sig.outputs.items()} == {
            "probabilities": ("head/probs:0", FLOAT, (None, 10)),
            "label": ("head/label:0", INT64, (None,)),
        }
        fetches = [graph.get_tensor_by_name(sig.outputs[k].name) for k in ("probabilities", "label")]
        pixels, shift = (graph.get_tensor_by_name(sig.inputs[k].name) for k in ("image", "offset"))
        x = images(8)
        probs, label = session.run(fetches, {pixels: x, shift: np.zeros(8, np.int64)})
        assert probs.shape == (8, 10) and probs.dtype == np.float32 and np.isfinite(probs).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
        assert label.shape == (8,) and label.dtype == np.int64
        assert label.tolist() == probs.argmax(axis=1).tolist()
        assert len({row.tobytes() for row in probs}) == 8  # distinct inputs, distinct answers
        shifted, _ = session.run(fetches, {pixels: x, shift: np.full(8, 5, np.int64)})
        assert np.abs(shifted - probs).max() > 1e-3


def test_image_signature_and_outputs(tmp_path):
    prefix = demo.build(tmp_path, kind="image", prefix="other")
    meta, _, session = load(prefix)
    with session:
        sig = meta.signature_def["serving_default"]
        assert {k: (v.name, v.dtype, shape(v)) for k, v in sig.inputs.items()} == {
            "image": ("inputs/pixels:0", FLOAT, (None, 28, 28, 1))
        }
        assert {k: (v.name, v.dtype, shape(v)) for k, v in sig.outputs.items()} == {
            "scores": ("head/logits:0", FLOAT, (None, 10))
        }
        scores = session.run("head/logits:0", {"inputs/pixels:0": images(4)})
        assert scores.shape == (4, 10) and np.isfinite(scores).all()
        assert len({row.tobytes() for row in scores}) == 4


def test_build_is_deterministic_and_leaves_the_default_graph_alone(tmp_path):
    outer = tf.Graph()
    with outer.as_default():
        first = demo.build(tmp_path / "a")
        second = demo.build(tmp_path / "b")
        assert outer.get_operations() == []
    results = []
    for prefix in (first, second):
        _, _, session = load(prefix)
        with session:
            results.append(session.run("head/probs:0", {"inputs/pixels:0": images(3), "inputs/shift:0": [0, 1, 2]}))
    np.testing.assert_array_equal(*results)


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown kind 'text'"):
        demo.build(tmp_path, kind="text")


@pytest.mark.parametrize("eager", ["enabled", "disabled"])
def test_command_line_in_a_fresh_process(tmp_path, eager):
    # A process of its own: eager execution cannot be turned back on once disabled.
    code = (
        "import sys, tensorflow.compat.v1 as tf\n"
        + ("tf.disable_eager_execution()\n" if eager == "disabled" else "")
        + "from model import demo\n"
        "demo.build(demo.Path(sys.argv[2]), 'two-inputs', 'q')\n"  # twice in one process
        "sys.exit(demo.main(sys.argv[1:]))\n"
    )
    args = [sys.executable, "-c", code, "--out", str(tmp_path), "--kind", "image", "--prefix", "p"]
    subprocess.run(args, cwd=REPO, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "model" / "p.meta").is_file() and (tmp_path / "model" / "q.meta").is_file()
    assert (tmp_path / "model" / "checkpoint").read_text().startswith('model_checkpoint_path: "p"')

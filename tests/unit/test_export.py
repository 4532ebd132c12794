"""python -m tools.export_savedmodel (docs/export.md): the served model, whatever its format, exported to a SavedModel
with a serving_default signature keyed by the served names, and the export's answers compared with the served
model's, loaded in a fresh TF1 session and through TF2's signatures: equal, bit for bit on the CPU, and a
difference named, with a non-zero exit.  The served model of each test is one of tests/graphs.py's, untrained."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tests import formats, graphs
from tools import export_savedmodel
from tools.export_savedmodel import DIFFERENT, FAILED, SAME, Tolerance, compare

v1 = tf.compat.v1


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = export_savedmodel.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def signature_of(export: Path) -> tuple[list[str], v1.SignatureDef]:
    """The export's tags and serving_default signature, read from saved_model.pb as TF Serving reads them."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((export / "saved_model.pb").read_bytes())
    (meta,) = saved.meta_graphs
    return list(meta.meta_info_def.tags), meta.signature_def["serving_default"]


def tamper(export: Path, variable: str, column: int, delta: float) -> None:
    """Add delta to one column of one of the export's variables, in its variables/ files, as a bad copy would."""
    graph = tf.Graph()
    with v1.Session(graph=graph) as session, graph.as_default():
        meta = v1.saved_model.load(session, ["serve"], str(export))
        (kernel,) = [v for v in v1.global_variables() if v.op.name == variable]
        shift = np.zeros(kernel.shape, np.float32)
        shift[:, column] = delta
        session.run(kernel.assign_add(shift))
        saver = v1.train.Saver(saver_def=meta.saver_def)
        saver.save(session, str(export / "variables" / "variables"), write_meta_graph=False, write_state=False)


def test_the_howtos_model_is_exported_with_its_served_names_and_answers_bit_for_bit(
    env, howto_model_dir, tmp_path, capsys
):
    export = tmp_path / "export" / "1"
    status, out, err = run(capsys, "--model-dir", howto_model_dir, "--out", export)

    assert status == SAME, err
    tags, signature = signature_of(export)
    assert tags == ["serve"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert list(signature.inputs) == ["network/X"] and list(signature.outputs) == ["network/output/MatMul"]
    assert "256 rows, Fashion-MNIST t10k images" in out
    assert out.count("network/output/MatMul float32 (256, 10): max |diff| 0 (bit-exact)") == 2  # TF1 and TF2
    assert out.rstrip().endswith("the export answers as the served model does")


def test_several_inputs_and_outputs_of_every_kind_are_compared_exactly(env, tmp_path, capsys):
    """INT32, FP16, BOOL and UINT8 inputs; a gather (ids in range), FP16, BOOL and INT32 outputs."""
    graphs.save(tmp_path / "dtypes" / "1", graphs.dtypes)
    status, out, err = run(capsys, "--model-dir", tmp_path / "dtypes" / "1", "--out", tmp_path / "export")

    assert status == SAME, err
    _, signature = signature_of(tmp_path / "export")
    assert sorted(signature.inputs) == ["flag", "half", "ids", "pixels"]
    assert sorted(signature.outputs) == ["doubled", "notflag", "picked", "total"]
    assert "random values (seed 0, free dimensions 3)" in out
    for line in ("notflag bool (256,): equal", "total int32 (256,): equal", "doubled float16 (256, 2): max |diff| 0"):
        assert out.count(line) == 2, out


def test_tensors_named_by_the_settings_keep_their_names_two_outputs_of_one_op_too(env, tmp_path, capsys):
    graphs.save(tmp_path / "top" / "1", graphs.top_two, signature=False)
    env.setenv("INPUT_TENSOR", "x:0")
    env.setenv("OUTPUT_TENSOR", "topk:0,topk:1")
    status, out, err = run(capsys, "--model-dir", tmp_path / "top" / "1", "--out", tmp_path / "export")

    assert status == SAME, err
    _, signature = signature_of(tmp_path / "export")
    assert list(signature.inputs) == ["x"] and sorted(signature.outputs) == ["topk:0", "topk:1"]
    assert out.count("topk:1 int32 (256, 2): equal") == 2


def test_a_frozen_graph_is_exported_without_variables(env, tmp_path, capsys):
    model_dir = tmp_path / "frozen" / "1"
    graph = tf.Graph()
    with graph.as_default():
        graphs.top_two()
    (model_dir / "model").mkdir(parents=True)
    (model_dir / "model" / "frozen_graph.pb").write_bytes(graph.as_graph_def().SerializeToString())
    env.setenv("INPUT_TENSOR", "x:0")
    env.setenv("OUTPUT_TENSOR", "topk:0,topk:1")
    status, out, err = run(capsys, "--model-dir", model_dir, "--out", tmp_path / "export")

    assert status == SAME, err
    assert out.count("topk:0 float32 (256, 2): max |diff| 0 (bit-exact)") == 2


# A TF2 SavedModel as tf.saved_model.save writes it, eager: in a Python of its own, since loading a TF1 graph (as the
# other tests do) turns eager execution off for the whole process.
SAVE_TF2 = """
import sys
import tensorflow as tf

class Model(tf.Module):
    def __init__(self):
        self.w = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
        keys, values = tf.constant([0, 1], tf.int64), tf.constant([10.0, 20.0])
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None], tf.int64)])
    def serve(self, x, k):
        return {"y": tf.matmul(x, self.w), "v": self.table.lookup(k)}

model = Model()
tf.saved_model.save(model, sys.argv[1], signatures={"serving_default": model.serve})
"""


def test_a_tf2_savedmodels_variables_and_table_go_into_the_export(env, tmp_path, capsys):
    """A TF2 SavedModel loaded into a TF1 session has its variables in no collection and its table filled by an init
    op: both must reach the export, or its answers differ (its keys 0 and 1 are among the random ids)."""
    saved = subprocess.run(
        [sys.executable, "-c", SAVE_TF2, str(tmp_path / "tf2" / "1")], capture_output=True, text=True
    )
    assert saved.returncode == 0, saved.stderr[-2000:]
    status, out, err = run(capsys, "--model-dir", tmp_path / "tf2" / "1", "--out", tmp_path / "export")

    assert status == SAME, err
    assert out.count("v float32 (256,): max |diff| 0 (bit-exact)") == 2
    assert out.count("y float32 (256, 2): max |diff| 0 (bit-exact)") == 2


def test_a_keras_3_export_is_exported_with_the_variables_its_signature_reads(env, tmp_path, capsys):
    """Keras 3's model.export() leaves in its graph handles of the layer's variables that nothing restores (scores/bias)
    beside those the loader restores and the signature reads (scores/bias_1): the export saves the variables that
    hold values, and answers as the served model does, bit for bit, and as Keras did."""
    built = formats.build(tmp_path / "built", ["keras_export"])
    reference = formats.reference(built, "keras_export")
    np.save(tmp_path / "x.npy", reference["x"])
    export = tmp_path / "export"
    status, out, err = run(
        capsys, "--model-dir", built / "keras_export", "--out", export, "--inputs", tmp_path / "x.npy"
    )

    assert status == SAME, err
    assert out.count("output_0 float32 (16, 3): max |diff| 0 (bit-exact)") == 2  # TF1 and TF2
    saved = [
        v1.train.load_variable(str(export / "variables" / "variables"), name)
        for name, _ in v1.train.list_variables(str(export / "variables" / "variables"))
    ]
    kernel, bias = formats.weights()
    assert any(np.array_equal(value, kernel) for value in saved)
    assert any(np.array_equal(value, bias) for value in saved)
    inputs = [export_savedmodel.Input("x", np.dtype(np.float32), (4,))]
    answers = export_savedmodel.run_tf1(export, inputs, ["output_0"], (reference["x"],))
    assert np.allclose(answers["output_0"], reference["output_0"], rtol=1e-6, atol=1e-6)


def test_an_unforeseen_failure_is_one_line_and_exit_status_2(env, tmp_path, capsys):
    """Exit status 1 says the export answers differently; any other failure, here TensorFlow's own error where the
    export's folder cannot be made (its parent is a file), is one line and 2, no traceback."""
    graphs.save(tmp_path / "top" / "1", graphs.top_two)
    (tmp_path / "file").write_text("x")
    status, _, err = run(capsys, "--model-dir", tmp_path / "top" / "1", "--out", tmp_path / "file" / "export")

    assert status == FAILED
    assert len(err.splitlines()) == 1, err
    assert err.startswith("export failed: ") and "Error: " in err, err
    assert "Traceback" not in err and "DIFFERENT" not in err


def test_an_export_that_answers_differently_fails_naming_the_output_and_the_largest_difference(
    env, howto_model_dir, tmp_path, capsys
):
    export = tmp_path / "export"
    assert run(capsys, "--model-dir", howto_model_dir, "--out", export)[0] == SAME
    assert run(capsys, "--model-dir", howto_model_dir, "--out", export, "--check-only")[0] == SAME

    tamper(export, "network/output/kernel", column=7, delta=0.25)
    status, _, err = run(capsys, "--model-dir", howto_model_dir, "--out", export, "--check-only")

    assert status == DIFFERENT
    assert "DIFFERENT: the export does not answer as the served model does (2):" in err
    differences = [line for line in err.splitlines() if "network/output/MatMul float32 (256, 10)" in line]
    assert len(differences) == 2  # TF1 and TF2, one line each
    for line in differences:
        assert re.search(r"max \|diff\| [0-9.e+-]+ at \(\d+, 7\); 256 values beyond the tolerance", line), line


def test_an_export_folder_in_use_and_a_model_that_cannot_load_fail_in_one_line(env, howto_model_dir, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    status, _, err = run(capsys, "--model-dir", howto_model_dir, "--out", tmp_path / "taken")
    assert status == FAILED
    assert (
        err == f"export failed: {tmp_path / 'taken'} exists and is not empty: give a new folder (for TF Serving, "
        "<base>/<version>)\n"
    )

    status, _, err = run(capsys, "--model-dir", tmp_path / "nothing", "--out", tmp_path / "export")
    assert status == FAILED
    assert err.startswith("export failed: the served model cannot be loaded: model directory not found")
    assert not (tmp_path / "export").exists()


def test_the_reference_batch_may_come_from_npy_files(env, tmp_path, capsys):
    graphs.save(tmp_path / "top" / "1", graphs.top_two)
    rows = np.arange(40, dtype=np.float64).reshape(8, 5)  # float64: cast to the input's float32, as a decoder would
    np.save(tmp_path / "x.npy", rows)
    status, out, err = run(
        capsys, "--model-dir", tmp_path / "top" / "1", "--out", tmp_path / "export", "--inputs", tmp_path / "x.npy"
    )
    assert status == SAME, err
    assert f"8 rows, from {tmp_path / 'x.npy'}" in out

    np.save(tmp_path / "wide.npy", np.zeros((8, 6), np.float32))
    status, _, err = run(
        capsys,
        "--model-dir",
        tmp_path / "top" / "1",
        "--out",
        tmp_path / "e2",
        "--inputs",
        f"x={tmp_path / 'wide.npy'}",
    )
    assert status == FAILED
    assert "wide.npy has shape (8, 6); input x takes rows of (5,)" in err


def test_onnx_through_tf2onnx_answers_within_its_tolerance(env, howto_model_dir, tmp_path, capsys):
    """tf2onnx 1.17.0 beside TensorFlow 2.21 and protobuf 7 (requirements/onnx.txt); onnxruntime's kernels are not
    TensorFlow's, so its answers are close, not bit-exact."""
    pytest.importorskip("onnxruntime", reason="requirements/onnx.txt is not installed")
    onnx_file = tmp_path / "model.onnx"
    status, out, err = run(capsys, "--model-dir", howto_model_dir, "--out", tmp_path / "export", "--onnx", onnx_file)

    assert status == SAME, err
    assert onnx_file.stat().st_size > 0
    assert re.search(r"ONNX .*model.onnx \(tf2onnx, onnxruntime; \|diff\| <= 1e-05 \+ 1e-05\*\|served\|\):\n", out)


class TestCompare:
    """The comparison itself: integers, booleans and bytes equal; floats within the tolerance, NaN where NaN."""

    exact = Tolerance(0.0, 0.0)

    def test_an_integer_off_by_one_is_a_difference_named_where(self):
        result = compare("ids", np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]]), self.exact)
        assert not result.same
        assert (
            result.line
            == "ids int64 (2, 2): 1 values differ, first at (1, 1): served 4, export 5; max |diff| 1 at (1, 1)"
        )

    def test_floats_pass_within_the_tolerance_and_fail_beyond_it(self):
        served = np.array([1.0, 100.0], np.float32)
        close = np.array([1.0000005, 100.00005], np.float32)
        assert compare("y", served, close, Tolerance(1e-6, 1e-6)).same
        result = compare("y", served, np.array([1.0, 100.01], np.float32), Tolerance(1e-6, 1e-6))
        assert not result.same
        assert "1 values beyond the tolerance, worst at (1,)" in result.line

    def test_nan_must_be_nan_on_both_sides(self):
        served = np.array([np.nan, 1.0], np.float32)
        assert compare("y", served, served.copy(), self.exact).line == "y float32 (2,): max |diff| 0 (bit-exact)"
        result = compare("y", served, np.array([0.0, 1.0], np.float32), self.exact)
        assert not result.same and "worst at (0,): served nan, export 0.0" in result.line

    def test_a_different_dtype_or_shape_or_a_missing_output_is_a_difference(self):
        served = np.zeros((2, 3), np.float32)
        assert not compare("y", served, np.zeros((2, 3), np.float64), self.exact).same
        assert not compare("y", served, np.zeros((3, 2), np.float32), self.exact).same
        assert compare("y", served, None, self.exact).line == "y: missing from the export's answers"

    def test_bytes_and_booleans_are_compared_exactly(self):
        served = np.array([b"a", b"b"], object)
        assert compare("s", served, np.array([b"a", b"b"], object), self.exact).same
        assert not compare("s", served, np.array([b"a", b"c"], object), self.exact).same
        assert not compare("f", np.array([True, False]), np.array([True, True]), self.exact).same

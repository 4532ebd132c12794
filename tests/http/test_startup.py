"""A broken model directory, checkpoint, tensor name or setting stops start-up with one line that names it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from tests.support import SCORE_PY, ServerProcess


def _copy_model(model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "tf-dnn-mnist" / "1"
    shutil.copytree(model_dir, copy)
    return copy


def _without_index(model_dir, tmp_path):
    copy = _copy_model(model_dir, tmp_path)
    (copy / "model" / "mnist-tf.model.index").unlink()
    return copy, {}


def _truncated_weights(model_dir, tmp_path):
    copy = _copy_model(model_dir, tmp_path)
    data = next((copy / "model").glob("mnist-tf.model.data-*"))
    data.write_bytes(data.read_bytes()[:1000])
    return copy, {}


CASES = {
    "missing model dir": (lambda m, t: (t / "nowhere", {}), "model directory not found: {tmp}/nowhere"),
    "missing meta-graph": (
        lambda m, t: (m, {"MODEL_FILE_PREFIX": "other"}),
        "meta-graph not found: {model}/model/other.meta",
    ),
    "missing checkpoint": (_without_index, "checkpoint not found: {tmp}/tf-dnn-mnist/1/model/mnist-tf.model.index"),
    "corrupt checkpoint": (_truncated_weights, "cannot restore checkpoint {tmp}/tf-dnn-mnist/1/model/mnist-tf.model"),
    "wrong input tensor": (
        lambda m, t: (m, {"INPUT_TENSOR": "network/Y:0"}),
        "tensor 'network/Y:0' (INPUT_TENSOR) is not in the graph",
    ),
    "wrong output tensor": (
        lambda m, t: (m, {"OUTPUT_TENSOR": "out:0"}),
        "tensor 'out:0' (OUTPUT_TENSOR) is not in the graph",
    ),
    "invalid setting": (lambda m, t: (m, {"MAX_BATCH_ROWS": "0"}), "invalid configuration: MAX_BATCH_ROWS='0'"),
    "GPU required, none present": (
        lambda m, t: (m, {"REQUIRE_GPU": "1"}),
        "REQUIRE_GPU is set but TensorFlow sees no GPU",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_broken_start_up_stops_the_server_with_one_line(case, model_dir, tmp_path):
    make, expected = CASES[case]
    if case.startswith("GPU") and tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    served_dir, env = make(model_dir, tmp_path)
    server = ServerProcess(SCORE_PY, served_dir, tmp_path, env)
    exit_code = server.wait_exit(timeout=120)
    log = server.log()
    assert exit_code == 3, log[-3000:]  # gunicorn's boot error: the master stops, no restart loop
    failures = [line for line in log.splitlines() if "start-up failed:" in line]
    assert len(failures) == 1, log[-3000:]
    assert expected.format(tmp=tmp_path, model=model_dir) in failures[0]
    assert "Traceback" not in log

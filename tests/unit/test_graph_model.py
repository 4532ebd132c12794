"""The model behind one batch function, in-process: loading, chunking, devices, worker slots."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfscoring.config import Settings
from tfscoring.errors import StartupError
from tfscoring.tf import model as model_module
from tfscoring.tf.devices import claim_worker_slot
from tfscoring.tf.model import GraphModel


@pytest.fixture(scope="module")
def settings(model_dir) -> Settings:
    return Settings(azureml_model_dir=model_dir)


@pytest.fixture(scope="module")
def graph_model(settings):
    model = GraphModel.load(settings)
    yield model
    model.close()


def test_loads_the_howto_layout_and_reads_width_from_the_graph(graph_model):
    assert graph_model.inputs[0].shape == (784,)
    assert graph_model.device == "CPU" or graph_model.device.startswith("GPU")


def test_warm_up_reports_the_device_the_output_op_ran_on(graph_model):
    ran_on = graph_model.warm_up()
    expected = "CPU:0" if graph_model.device == "CPU" else "GPU:0"
    assert ran_on.endswith(expected)


@pytest.mark.parametrize("max_batch_rows", [1, 7, 64, 5000])
def test_predictions_do_not_depend_on_the_chunk_size(settings, graph_model, t10k, max_batch_rows):
    images, _ = t10k
    rows = images[:700]
    chunked = GraphModel.load(settings.model_copy(update={"max_batch_rows": max_batch_rows}))
    try:
        assert chunked.infer(rows).tolist() == graph_model.infer(rows).tolist()
    finally:
        chunked.close()


def test_infer_returns_one_int64_class_id_per_row(graph_model, t10k):
    images, labels = t10k
    predicted = graph_model.infer(images[:1000])
    assert predicted.dtype == np.int64 and predicted.shape == (1000,)
    assert (predicted == labels[:1000]).mean() > 0.85


def test_no_session_call_is_larger_than_a_whole_request(settings):
    model = GraphModel.load(settings.model_copy(update={"max_batch_rows": 5000, "max_request_rows": 100}))
    try:
        assert model.max_batch_rows == 100  # so warm-up allocates 100 rows, not 5000
    finally:
        model.close()


def test_a_missing_tensor_is_named(settings):
    with pytest.raises(StartupError, match=r"tensor 'network/nope:0' \(INPUT_TENSOR\) is not in the graph of"):
        GraphModel.load(settings.model_copy(update={"input_tensor": "network/nope:0"}))


def test_an_input_tensor_without_a_batch_dimension_is_refused(settings):
    # The kernel's tensor is its variable's handle: a scalar, which no rows can be fed to.
    with pytest.raises(StartupError, match="INPUT_TENSOR network/h1/kernel:0 is a scalar"):
        GraphModel.load(settings.model_copy(update={"input_tensor": "network/h1/kernel:0"}))


def test_worker_slots_are_distinct_per_live_process_and_reused_after_exit(tmp_path):
    claim = (
        "import sys; from pathlib import Path; from tfscoring.tf.devices import claim_worker_slot;"
        f"print(claim_worker_slot(Path({str(tmp_path)!r})), flush=True); sys.stdin.read()"  # held until killed
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", claim], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        slots = [int(w.stdout.readline()) for w in workers]
        assert sorted(slots) == [0, 1, 2]
        holder_of_1 = workers[slots.index(1)]
        holder_of_1.kill()
        holder_of_1.wait()
        assert claim_worker_slot(tmp_path) == 1  # freed with its process; 0 and 2 are still held
        assert claim_worker_slot(tmp_path) == 1  # a process keeps its slot: every session on one GPU
    finally:
        for w in workers:
            w.kill()
            w.wait()


def test_session_calls_through_the_callable_handle_equal_session_run(graph_model, t10k):
    # model.py calls the session through TensorFlow's private callable handle (a quarter of the Python cost
    # of the public make_callable); its outputs must be session.run's, bit for bit.
    rows = t10k[0][:300]
    session, x, y = graph_model._session, graph_model._feeds[0], graph_model._fetches[0]
    assert np.array_equal(model_module._session_callable(session, [x], [y])(rows)[0], session.run(y, {x: rows}))


def test_loading_takes_the_callable_handle(settings, caplog):
    # A TensorFlow that drops the private handle must show here, not only as a slower server.
    GraphModel.load(settings).close()
    assert "callable handle is unavailable" not in caplog.text


@pytest.mark.parametrize("dtype", [tf.float64, tf.float16, tf.int64])
def test_a_placeholder_of_another_dtype_takes_rows_of_that_dtype_through_the_handle(dtype):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(dtype, [None, 3])
        y = tf.reduce_sum(x, axis=1, keepdims=True)
    with tf.compat.v1.Session(graph=graph) as session:
        rows = np.arange(6, dtype=dtype.as_numpy_dtype).reshape(2, 3)
        assert model_module._session_callable(session, [x], [y])(rows)[0].ravel().tolist() == [3, 12]


def test_without_the_private_handle_session_calls_take_the_public_path(graph_model, t10k, caplog):
    class PublicSessionOnly:  # a TensorFlow whose Session lacks _make_callable_from_options
        def __init__(self, session):
            self.make_callable = session.make_callable

    session, x, y = graph_model._session, graph_model._feeds[0], graph_model._fetches[0]
    call = model_module._session_callable(PublicSessionOnly(session), [x], [y])
    assert np.array_equal(call(t10k[0][:64])[0], session.run(y, {x: t10k[0][:64]}))
    assert "callable handle is unavailable" in caplog.text


def copy_checkpoint(model_dir, into, prefix: str) -> None:
    """The how-to's checkpoint under another folder and prefix, as another team's registered model lays it out."""
    into.mkdir(parents=True)
    for source in (model_dir / "model").glob("mnist-tf.model.*"):
        (into / source.name.replace("mnist-tf.model", prefix)).write_bytes(source.read_bytes())


def test_without_folder_and_prefix_set_the_one_meta_graph_in_the_model_directory_is_served(model_dir, tmp_path, t10k):
    copy_checkpoint(model_dir, tmp_path / "export", "net-final")
    loaded = GraphModel.load(Settings(azureml_model_dir=tmp_path))
    try:
        reference = GraphModel.load(Settings(azureml_model_dir=model_dir))
        assert loaded.infer(t10k[0][:50]).tolist() == reference.infer(t10k[0][:50]).tolist()
        reference.close()
    finally:
        loaded.close()


def test_several_meta_graphs_and_no_prefix_set_stop_start_up_naming_them(model_dir, tmp_path):
    copy_checkpoint(model_dir, tmp_path / "a", "first")
    copy_checkpoint(model_dir, tmp_path / "b", "second")
    with pytest.raises(StartupError, match=r"2 meta-graphs under .* \(a/first.meta, b/second.meta\); set MODEL_FOLDER"):
        GraphModel.load(Settings(azureml_model_dir=tmp_path))


def test_a_prefix_that_is_set_is_used_as_it_is(model_dir, tmp_path):
    copy_checkpoint(model_dir, tmp_path / "export", "net-final")
    with pytest.raises(StartupError, match=r"meta-graph not found: .*export/missing\.meta"):
        GraphModel.load(Settings(azureml_model_dir=tmp_path, model_folder="export", model_file_prefix="missing"))


def test_of_a_saver_folders_steps_the_latest_in_its_checkpoint_file_is_served(model_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    copy_checkpoint(model_dir, tmp_path / "train", "model.ckpt-100")
    for source in (tmp_path / "train").glob("model.ckpt-100.*"):  # a later step, as tf.train.Saver writes it
        (source.parent / source.name.replace("-100", "-200")).write_bytes(source.read_bytes())
    (tmp_path / "train" / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt-200"\nall_model_checkpoint_paths: "model.ckpt-100"\n'
        'all_model_checkpoint_paths: "model.ckpt-200"\n'
    )
    GraphModel.load(Settings(azureml_model_dir=tmp_path)).close()
    assert "checkpoint found: " in caplog.text and "model.ckpt-200" in caplog.text


def test_with_only_a_model_folder_set_the_meta_graph_is_looked_for_inside_it(model_dir, tmp_path):
    copy_checkpoint(model_dir, tmp_path / "export", "net-final")
    copy_checkpoint(model_dir, tmp_path / "old", "net-old")  # outside the folder: not a second candidate
    GraphModel.load(Settings(azureml_model_dir=tmp_path, model_folder="export")).close()


def test_a_checkpoint_folder_linked_into_the_model_directory_is_found_through_the_link(model_dir, tmp_path):
    copy_checkpoint(model_dir, tmp_path / "store" / "export", "net-final")
    (tmp_path / "registered").mkdir()
    (tmp_path / "registered" / "model").symlink_to(tmp_path / "store" / "export", target_is_directory=True)
    (tmp_path / "registered" / "loop").symlink_to(tmp_path / "registered", target_is_directory=True)  # no endless walk
    GraphModel.load(Settings(azureml_model_dir=tmp_path / "registered")).close()


def test_a_saved_model_folder_is_named_as_such(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(StartupError, match="holds a SavedModel; this server serves TF1 meta-graph checkpoints"):
        GraphModel.load(Settings(azureml_model_dir=tmp_path))


def test_the_model_loads_under_tf1_shape_behaviour_too(settings, t10k):
    # The how-to's score.py calls tf.disable_v2_behavior(), which makes every static dimension a Dimension
    # object for the whole process: "is None" checks then never hold (a CI run failed on it).
    tf.compat.v1.disable_v2_tensorshape()
    try:
        model = GraphModel.load(settings)
        assert model.infer(t10k[0][:5]).shape == (5,)
        model.close()
    finally:
        tf.compat.v1.enable_v2_tensorshape()

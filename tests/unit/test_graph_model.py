"""Loading a graph and predicting with it, in-process: checkpoints, tensors, session calls, their errors, devices,
worker slots.  On the how-to's graph untrained (howto_model_dir): the trained model's accuracy in-process is
tests/system/test_model_build.py's."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfscoring.batching.calls import SessionCalls
from tfscoring.config import Settings
from tfscoring.errors import DeviceFailed, OutOfMemory, RowsRefused, StartupError
from tfscoring.tf.devices import claim_worker_slot
from tfscoring.tf.load import LoadedGraph, load_graph, session_callable
from tfscoring.tf.model import GraphModel


@pytest.fixture(scope="module")
def settings(howto_model_dir) -> Settings:
    return Settings(azureml_model_dir=howto_model_dir)


@pytest.fixture(scope="module")
def graph(settings) -> LoadedGraph:
    loaded = load_graph(settings)
    yield loaded
    loaded.session.close()


@pytest.fixture(scope="module")
def graph_model(graph, settings) -> GraphModel:
    return GraphModel(graph, settings.max_batch_rows)


def class_ids(model: GraphModel, images: np.ndarray) -> np.ndarray:
    """The how-to's answer: the argmax of its one output's scores."""
    return model.predict((images,))[0].argmax(axis=1)


def on_device(graph: LoadedGraph, session_call) -> GraphModel:
    """The graph's model on a device whose session calls are `session_call`'s (each input's rows in, outputs out)."""
    return GraphModel(dataclasses.replace(graph, session_call=session_call), 256)


def test_loads_the_howto_layout_and_reads_width_from_the_graph(graph_model):
    assert graph_model.inputs[0].shape == (784,)
    assert graph_model.device == "CPU" or graph_model.device.startswith("GPU")


def test_warm_up_reports_the_device_the_output_op_ran_on(graph_model):
    ran_on = graph_model.warm_up(graph_model.predict)
    expected = "CPU:0" if graph_model.device == "CPU" else "GPU:0"
    assert ran_on.endswith(expected)


@pytest.mark.parametrize("max_batch_rows", [1, 7, 64, 5000])
def test_predictions_do_not_depend_on_how_a_batch_is_cut_into_session_calls(graph_model, t10k, max_batch_rows):
    images = t10k[0][:700]
    sizes = []

    def recorded(arrays):
        sizes.append(len(arrays[0]))
        return graph_model.predict(arrays)

    cut = SessionCalls(recorded, max_batch_rows).predict((images,))[0]
    assert cut.argmax(axis=1).tolist() == class_ids(graph_model, images).tolist()
    assert sum(sizes) == 700 and max(sizes) == min(max_batch_rows, 700)


def test_predict_answers_each_output_one_row_per_input_row(graph_model, t10k):
    (scores,) = graph_model.predict((t10k[0][:1000],))
    assert scores.dtype == np.float32 and scores.shape == (1000, 10)


def test_predict_tells_a_device_out_of_memory_from_values_the_graph_refuses(graph, t10k):
    def out_of_memory(*arrays):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[8,300]")

    def refusing(*arrays):
        raise tf.errors.InvalidArgumentError(None, None, "indices[0] = -1 is not in [0, 3)")

    with pytest.raises(OutOfMemory, match=r"OOM when allocating tensor with shape\[8,300\]"):  # a smaller call may fit
        on_device(graph, out_of_memory).predict((t10k[0][:8],))
    with pytest.raises(RowsRefused, match=r"the model refused this request's values: indices\[0\] = -1"):  # 400
        on_device(graph, refusing).predict((t10k[0][:8],))


def test_a_device_that_fails_its_probe_too_has_failed_for_good_and_the_worker_is_replaced(graph, t10k, caplog):
    calls = []

    def broken(*arrays):
        calls.append(len(arrays[0]))
        raise tf.errors.InternalError(None, None, "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access")

    model = on_device(graph, broken)
    replaced = []
    model.on_failure = replaced.append
    with pytest.raises(DeviceFailed, match="the device cannot run the model: CUDA_ERROR_ILLEGAL_ADDRESS") as failed:
        model.predict((t10k[0][:8],))
    assert failed.value.status_code == 503 and failed.value.headers == {"Retry-After": "5"}
    assert calls == [8, 1]  # the batch, then one zero row to probe the device
    assert replaced == [model.failure] and "this worker stops and is replaced" in caplog.text
    with pytest.raises(DeviceFailed):  # every later call, without calling the device
        model.predict((t10k[0][:8],))
    assert calls == [8, 1]


def test_a_device_error_that_passes_fails_its_own_call_only(graph, t10k):
    errors = iter([tf.errors.InternalError(None, None, "a passing error")])

    def flaky(*arrays):
        error = next(errors, None)
        if error:
            raise error
        return graph.session_call(*arrays)

    model = on_device(graph, flaky)
    with pytest.raises(tf.errors.InternalError, match="a passing error"):  # the caller's 500
        model.predict((t10k[0][:8],))
    assert model.failure is None
    assert model.predict((t10k[0][:8],))[0].shape == (8, 10)


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


def test_session_calls_through_the_callable_handle_equal_session_run(graph, t10k):
    # load.py calls the session through TensorFlow's private callable handle (a quarter of the Python cost
    # of the public make_callable); its outputs must be session.run's, bit for bit.
    images = t10k[0][:300]
    session, x, y = graph.session, graph.feeds[0], graph.fetches[0]
    assert np.array_equal(session_callable(session, [x], [y])(images)[0], session.run(y, {x: images}))


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
        arrays = np.arange(6, dtype=dtype.as_numpy_dtype).reshape(2, 3)
        assert session_callable(session, [x], [y])(arrays)[0].ravel().tolist() == [3, 12]


def test_without_the_private_handle_session_calls_take_the_public_path(graph, t10k, caplog):
    class PublicSessionOnly:  # a TensorFlow whose Session lacks _make_callable_from_options
        def __init__(self, session):
            self.make_callable = session.make_callable

    session, x, y = graph.session, graph.feeds[0], graph.fetches[0]
    call = session_callable(PublicSessionOnly(session), [x], [y])
    assert np.array_equal(call(t10k[0][:64])[0], session.run(y, {x: t10k[0][:64]}))
    assert "callable handle is unavailable" in caplog.text


def copy_checkpoint(model_dir, into, prefix: str) -> None:
    """The how-to's checkpoint (its graph's) under another folder and prefix, as another team's registered model lays
    it out."""
    into.mkdir(parents=True)
    for source in (model_dir / "model").glob("mnist-tf.model.*"):
        (into / source.name.replace("mnist-tf.model", prefix)).write_bytes(source.read_bytes())


def test_without_folder_and_prefix_set_the_one_meta_graph_in_the_model_directory_is_served(
    howto_model_dir, tmp_path, t10k
):
    copy_checkpoint(howto_model_dir, tmp_path / "export", "net-final")
    loaded = GraphModel.load(Settings(azureml_model_dir=tmp_path))
    try:
        reference = GraphModel.load(Settings(azureml_model_dir=howto_model_dir))
        assert class_ids(loaded, t10k[0][:50]).tolist() == class_ids(reference, t10k[0][:50]).tolist()
        reference.close()
    finally:
        loaded.close()


def test_several_meta_graphs_and_no_prefix_set_stop_start_up_naming_them(howto_model_dir, tmp_path):
    copy_checkpoint(howto_model_dir, tmp_path / "a", "first")
    copy_checkpoint(howto_model_dir, tmp_path / "b", "second")
    with pytest.raises(StartupError, match=r"2 meta-graphs under .* \(a/first.meta, b/second.meta\); set MODEL_FOLDER"):
        GraphModel.load(Settings(azureml_model_dir=tmp_path))


def test_a_prefix_that_is_set_is_used_as_it_is(howto_model_dir, tmp_path):
    copy_checkpoint(howto_model_dir, tmp_path / "export", "net-final")
    with pytest.raises(StartupError, match=r"meta-graph not found: .*export/missing\.meta"):
        GraphModel.load(Settings(azureml_model_dir=tmp_path, model_folder="export", model_file_prefix="missing"))


def test_of_a_saver_folders_steps_the_latest_in_its_checkpoint_file_is_served(howto_model_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    copy_checkpoint(howto_model_dir, tmp_path / "train", "model.ckpt-100")
    for source in (tmp_path / "train").glob("model.ckpt-100.*"):  # a later step, as tf.train.Saver writes it
        (source.parent / source.name.replace("-100", "-200")).write_bytes(source.read_bytes())
    (tmp_path / "train" / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt-200"\nall_model_checkpoint_paths: "model.ckpt-100"\n'
        'all_model_checkpoint_paths: "model.ckpt-200"\n'
    )
    GraphModel.load(Settings(azureml_model_dir=tmp_path)).close()
    assert "checkpoint found: " in caplog.text and "model.ckpt-200" in caplog.text


def test_with_only_a_model_folder_set_the_meta_graph_is_looked_for_inside_it(howto_model_dir, tmp_path):
    copy_checkpoint(howto_model_dir, tmp_path / "export", "net-final")
    copy_checkpoint(howto_model_dir, tmp_path / "old", "net-old")  # outside the folder: not a second candidate
    GraphModel.load(Settings(azureml_model_dir=tmp_path, model_folder="export")).close()


def test_a_checkpoint_folder_linked_into_the_model_directory_is_found_through_the_link(howto_model_dir, tmp_path):
    copy_checkpoint(howto_model_dir, tmp_path / "store" / "export", "net-final")
    (tmp_path / "registered").mkdir()
    (tmp_path / "registered" / "model").symlink_to(tmp_path / "store" / "export", target_is_directory=True)
    (tmp_path / "registered" / "loop").symlink_to(tmp_path / "registered", target_is_directory=True)  # no endless walk
    GraphModel.load(Settings(azureml_model_dir=tmp_path / "registered")).close()


def test_the_model_loads_under_tf1_shape_behaviour_too(settings, t10k):
    # The how-to's score.py calls tf.disable_v2_behavior(), which makes every static dimension a Dimension
    # object for the whole process: "is None" checks then never hold (a CI run failed on it).
    tf.compat.v1.disable_v2_tensorshape()
    try:
        model = GraphModel.load(settings)
        assert model.predict((t10k[0][:5],))[0].shape == (5, 10)
        model.close()
    finally:
        tf.compat.v1.enable_v2_tensorshape()

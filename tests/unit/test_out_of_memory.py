"""A session call that runs out of device memory is split and retried: the request still succeeds.

The session calls (batching/calls.py) of the graph model (tf/model.py, which tells the device's out-of-memory
errors from the others), forced on the CPU: the session call raises TensorFlow's ResourceExhaustedError
above a row count, as a GPU with little free memory would.  On the how-to's graph
untrained (howto_model_dir): every row still has a class id of its own to lose.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfscoring.batching.calls import SessionCalls
from tfscoring.config import Settings
from tfscoring.errors import ServiceUnavailable
from tfscoring.tf.load import LoadedGraph, load_graph
from tfscoring.tf.messages import first_line
from tfscoring.tf.model import GraphModel

MAX_BATCH_ROWS = 256


def resource_exhausted(rows: int) -> tf.errors.OpError:
    return tf.errors.ResourceExhaustedError(None, None, f"OOM when allocating tensor with shape[{rows},300]")


def feed_not_copied(rows: int) -> tf.errors.OpError:
    # What TensorFlow raises when the GPU has no room for the copy of a feed.
    return tf.errors.InternalError(None, None, "Dst tensor is not initialized.")


class SmallDevice:
    """Session calls of more than `capacity` rows fail as a full device fails; records every call's size."""

    def __init__(self, session_call, capacity: int, error=resource_exhausted):
        self.capacity = capacity
        self.error = error
        self.calls: list[int] = []
        self._session_call = session_call

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        self.calls.append(len(arrays[0]))
        if len(arrays[0]) > self.capacity:
            raise self.error(len(arrays[0]))
        return self._session_call(*arrays)


class Splits:
    """The one report of a BatchObserver that session calls make: each out-of-memory retry with fewer rows."""

    def __init__(self):
        self.count = 0

    def split(self) -> None:
        self.count += 1


@pytest.fixture(scope="module")
def graph(howto_model_dir) -> LoadedGraph:
    loaded = load_graph(Settings(azureml_model_dir=howto_model_dir))
    yield loaded
    loaded.session.close()


def on_small_device(
    graph: LoadedGraph, capacity: int, error=resource_exhausted, **options
) -> tuple[SessionCalls, SmallDevice]:
    """The session calls of a model whose device takes `capacity` rows, up to MAX_BATCH_ROWS a call; and the
    device."""
    device = SmallDevice(graph.session_call, capacity, error)
    model = GraphModel(dataclasses.replace(graph, session_call=device), MAX_BATCH_ROWS)
    return SessionCalls(model.predict, MAX_BATCH_ROWS, **options), device


def class_ids(calls: SessionCalls, images: np.ndarray) -> np.ndarray:
    return calls.predict((images,))[0].argmax(axis=1)


@pytest.fixture(scope="module")
def expected(graph, t10k) -> np.ndarray:
    """The graph's class ids for the first 600 t10k rows, on a device that fits them: what every split must give."""
    return GraphModel(graph, MAX_BATCH_ROWS).predict((t10k[0][:600],))[0].argmax(axis=1)


@pytest.mark.parametrize("error", [resource_exhausted, feed_not_copied])
def test_a_batch_too_large_for_the_device_is_split_until_it_fits(graph, t10k, expected, error):
    splits = Splits()
    calls, device = on_small_device(graph, capacity=40, error=error, observer=splits)
    assert class_ids(calls, t10k[0][:256]).tolist() == expected[:256].tolist()
    assert device.calls[:3] == [256, 128, 64]  # halved until the halves fit
    assert max(size for size in device.calls if size <= 40) == 32
    assert splits.count == 3 and calls.rows == 32  # 256 -> 128 -> 64 -> 32 rows a call


def test_after_a_split_later_batches_go_at_the_size_that_fitted(graph, t10k, expected, caplog):
    calls, device = on_small_device(graph, capacity=40)
    class_ids(calls, t10k[0][:256])
    device.calls.clear()
    assert class_ids(calls, t10k[0][:600]).tolist() == expected.tolist()
    assert max(device.calls) == 32  # no call fails first any more
    assert "out of device memory scoring 256 rows" in caplog.text


def test_a_limit_that_drops_again_mid_request_loses_no_row(graph, t10k, expected):
    calls, device = on_small_device(graph, capacity=64)
    class_ids(calls, t10k[0][:256])  # learns 64
    device.capacity = 20  # the device fills up further
    assert class_ids(calls, t10k[0][:256]).tolist() == expected[:256].tolist()
    assert class_ids(calls, t10k[0][:600]).tolist() == expected.tolist()


def test_the_limit_is_raised_again_once_calls_have_fitted_for_a_while(graph, t10k, expected):
    calls, device = on_small_device(graph, capacity=40, retry_larger_after=5)  # RETRY_LARGER_AFTER in serving
    class_ids(calls, t10k[0][:256])  # learns 32
    device.capacity = 256  # the memory is free again
    for _ in range(30):
        assert class_ids(calls, t10k[0][:256]).tolist() == expected[:256].tolist()
    assert device.calls[-1] == 256  # doubled back, step by step, to MAX_BATCH_ROWS


@pytest.mark.parametrize("error", [resource_exhausted, feed_not_copied])
def test_a_single_row_that_does_not_fit_is_a_503_to_retry(graph, t10k, error):
    calls, _ = on_small_device(graph, capacity=0, error=error)
    with pytest.raises(ServiceUnavailable) as refused:
        class_ids(calls, t10k[0][:8])
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "1"}
    assert "ran out of memory scoring a single row" in refused.value.message


def test_the_split_is_logged_with_tensorflows_reason_not_its_graph_execution_header(graph, t10k, caplog):
    # On a GPU (make gpu-check, H100), TensorFlow 2's message opened with "Graph execution error:" and the
    # node's definition, and the log line said only that.  The reason is the line after "Node: '<name>'".
    def out_of_memory(rows: int) -> tf.errors.OpError:
        message = (
            "Graph execution error:\n\nDetected at node 'network/h1/MatMul' defined at (most recent call last):\n"
            "    File \"score.py\", line 1, in <module>\nNode: 'network/h1/MatMul'\n"
            f"OOM when allocating tensor with shape[{rows},300] and type float on /device:GPU:0\n"
            "\t [[{{node network/h1/MatMul}}]]"
        )
        return tf.errors.ResourceExhaustedError(None, None, message)

    calls, _ = on_small_device(graph, capacity=100, error=out_of_memory)
    class_ids(calls, t10k[0][:256])
    assert "out of device memory scoring 256 rows (OOM when allocating tensor with shape[256,300]" in caplog.text


def test_an_error_of_a_node_tensorflow_inserted_is_summarised_by_its_reason():
    # The first out-of-memory error on the H100: the copy of the feed to the GPU, a node with no "Node:" line.
    message = (
        "Graph execution error:\n\nSameWorkerRecvDone unable to allocate output tensor. "
        "Key: /job:localhost/replica:0/task:0/device:CPU:0;0000000000000001;network/X\n"
        "\t [[{{node network/X/_1}}]]"
    )
    err = tf.errors.ResourceExhaustedError(None, None, message)
    assert first_line(err).startswith("SameWorkerRecvDone unable to allocate output tensor")


def test_a_real_tensorflow_session_error_is_summarised_by_its_reason():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2])
        checked = tf.debugging.check_numerics(x, "rows hold NaN")
    with tf.compat.v1.Session(graph=graph) as session, pytest.raises(tf.errors.InvalidArgumentError) as raised:
        session.run(checked, {x: np.array([[np.nan, 1.0]], np.float32)})
    assert str(raised.value).startswith("Graph execution error")
    assert first_line(raised.value) == "rows hold NaN : Tensor had NaN values"

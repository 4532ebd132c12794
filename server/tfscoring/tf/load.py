"""Loading the served model into a session on this worker's device, once per worker process.

Find the model and its format (formats.py: a TF1 meta-graph checkpoint, a SavedModel, a frozen graph), open a
session on the device (devices.py), import the graph through the format's loader (checkpoint.py, savedmodel.py,
frozen.py), check that each tensor it serves is one this server can batch (tensors.py) and restore the weights.
What it gives, a LoadedGraph, is what the GraphModel (model.py) predicts with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow.compat.v1 as tf

from tfscoring import log
from tfscoring.config import Settings
from tfscoring.interface import Batch, TensorSpec
from tfscoring.tf import checkpoint, devices, formats, frozen, savedmodel
from tfscoring.tf.tensors import require, spec, tensor

LOADERS = {"checkpoint": checkpoint.load, "saved_model": savedmodel.load, "frozen_graph": frozen.load}


@dataclass(frozen=True)
class LoadedGraph:
    """A model's graph in a session on this worker's device, its weights restored."""

    session: tf.Session
    feeds: tuple[tf.Tensor, ...]  # the input tensors, in the order of `inputs`
    fetches: tuple[tf.Tensor, ...]  # the output tensors, in the order of `outputs`
    session_call: Callable[..., Batch]  # one session call: each input's rows in (positional), each output's out
    inputs: tuple[TensorSpec, ...]  # what clients send
    outputs: tuple[TensorSpec, ...]  # what they get
    signature_key: str | None  # the serving signature's key, where the tensors come from one
    device: str  # where the session runs, as the log names it: "CPU", "GPU 0 (<name>)"
    platform: str = "tensorflow_graphdef"  # Triton's name of the format: tensorflow_savedmodel, else graphdef


def load_graph(settings: Settings) -> LoadedGraph:
    """The model the settings name (or the one found in the served folder), loaded (StartupError: it cannot be)."""
    folder = settings.served_folder().path
    require(folder.is_dir(), f"model directory not found: {folder}")
    found = formats.find(settings)

    tf.disable_eager_execution()
    placement = devices.place(settings.require_gpu)
    threads = devices.intra_op_threads(settings.tf_num_intraop_threads, settings.worker_count)
    graph = tf.Graph()
    # Opened before the import: a SavedModel's loader restores its variables into a session as it imports.
    session = tf.Session(graph=graph, config=placement.session_config(settings.gpu_memory_limit_mb, threads))
    try:
        with graph.as_default():
            imported = LOADERS[found.format](found.path, settings, session)
            served = imported.served
            feeds = tuple(tensor(graph, name, label, imported.where) for _, name, label in served.inputs)
            fetches = tuple(tensor(graph, name, label, imported.where) for _, name, label in served.outputs)
        inputs = tuple(spec(t, *served.inputs[i][::2], "input") for i, t in enumerate(feeds))
        outputs = tuple(spec(t, *served.outputs[i][::2], "output") for i, t in enumerate(fetches))
        require(len({t.name for t in feeds}) == len(feeds), f"an input tensor is named twice: {served.inputs}")
        imported.restore()
        call = session_callable(session, feeds, fetches)
    except BaseException:
        session.close()
        raise
    platform = "tensorflow_savedmodel" if found.format == "saved_model" else "tensorflow_graphdef"
    return LoadedGraph(session, feeds, fetches, call, inputs, outputs, served.key, placement.description, platform)


def session_callable(session: tf.Session, feeds: tuple[tf.Tensor, ...], fetches: tuple[tf.Tensor, ...]) -> Callable:
    """One session call, each input's rows in, each output's values out, through TensorFlow's callable handle
    (TF_SessionRunCallable).

    In TF 2, the public `make_callable(fetches, feed_list)` only wraps `session.run`, which re-parses the feeds
    and fetches on every call: measured, 240 us of Python per 1-row call, against 64 us through
    `_make_callable_from_options`, the handle Keras' TF1 backend uses.  The handle does not convert a feed to
    the tensor's dtype; the decoders hand it arrays of that dtype already.  It is private, so where a
    TensorFlow no longer has it, the public wrapper is used, with a warning; tests compare the two.
    """
    try:
        from tensorflow.core.protobuf.config_pb2 import CallableOptions

        options = CallableOptions(feed=[t.name for t in feeds], fetch=[t.name for t in fetches])
        return session._make_callable_from_options(options)
    except (AttributeError, ImportError) as err:
        log.warning("TensorFlow's callable handle is unavailable (%s): session calls take the slower path", err)
        return session.make_callable(list(fetches), feed_list=list(feeds))

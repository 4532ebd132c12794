"""Loading a TF1 meta-graph checkpoint into a session on this worker's device, once per worker process.

Find the checkpoint, import its meta-graph, choose the tensors to serve (the settings', else the serving
signature's), check that each is one this server can batch, open a session on the device (devices.py) and
restore the weights.  What it gives, a LoadedGraph, is what the GraphModel (model.py) predicts with.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow.compat.v1 as tf

from tfscoring import log
from tfscoring.config import Settings
from tfscoring.errors import StartupError
from tfscoring.interface import DATATYPES, Batch, TensorSpec
from tfscoring.tf import devices, signature
from tfscoring.tf.messages import first_line


@dataclass(frozen=True)
class LoadedGraph:
    """A meta-graph in a session on this worker's device, its checkpoint restored."""

    session: tf.Session
    feeds: tuple[tf.Tensor, ...]  # the input tensors, in the order of `inputs`
    fetches: tuple[tf.Tensor, ...]  # the output tensors, in the order of `outputs`
    session_call: Callable[..., Batch]  # one session call: each input's rows in (positional), each output's out
    inputs: tuple[TensorSpec, ...]  # what clients send
    outputs: tuple[TensorSpec, ...]  # what they get
    signature_key: str | None  # the serving signature's key, where the tensors come from one
    device: str  # where the session runs, as the log names it: "CPU", "GPU 0 (<name>)"


def load_graph(settings: Settings) -> LoadedGraph:
    """The checkpoint the settings name (or the one found under the model directory), loaded (StartupError: it
    cannot be)."""
    folder = settings.served_folder().path
    _require(folder.is_dir(), f"model directory not found: {folder}")
    prefix = find_checkpoint(settings)
    meta = prefix.with_name(prefix.name + ".meta")
    _require(meta.is_file(), f"meta-graph not found: {meta} (check MODEL_FOLDER and MODEL_FILE_PREFIX)")
    index = prefix.with_name(prefix.name + ".index")
    _require(index.is_file(), f"checkpoint not found: {index} (check MODEL_FOLDER and MODEL_FILE_PREFIX)")

    tf.disable_eager_execution()
    placement = devices.place(settings.require_gpu)
    graph = tf.Graph()
    with graph.as_default():
        try:
            # clear_devices: run where this worker is pinned, not where the model was trained.
            saver = tf.train.import_meta_graph(str(meta), clear_devices=True)
        except Exception as err:  # protobuf and TF raise many types for a corrupt file
            raise StartupError(f"cannot import meta-graph {meta}: {first_line(err)}") from None
        served = _served_tensors(settings, meta)
        feeds = tuple(_tensor(graph, tensor, label, meta) for _, tensor, label in served.inputs)
        fetches = tuple(_tensor(graph, tensor, label, meta) for _, tensor, label in served.outputs)
    inputs = tuple(_spec(t, *served.inputs[i][::2], "input") for i, t in enumerate(feeds))
    outputs = tuple(_spec(t, *served.outputs[i][::2], "output") for i, t in enumerate(fetches))
    _require(len({t.name for t in feeds}) == len(feeds), f"an input tensor is named twice: {served.inputs}")

    threads = devices.intra_op_threads(settings.tf_num_intraop_threads, settings.worker_count)
    session = tf.Session(graph=graph, config=placement.session_config(settings.gpu_memory_limit_mb, threads))
    try:
        saver.restore(session, str(prefix))
    except (tf.errors.OpError, ValueError) as err:
        session.close()
        raise StartupError(f"cannot restore checkpoint {prefix}: {first_line(err)}") from None
    call = session_callable(session, feeds, fetches)
    return LoadedGraph(session, feeds, fetches, call, inputs, outputs, served.key, placement.description)


def find_checkpoint(settings: Settings) -> Path:
    """The checkpoint prefix: MODEL_FOLDER/MODEL_FILE_PREFIX (the how-to's model/mnist-tf.model by default).

    Where the prefix is not set and the default is absent, the meta-graph under the model directory (or under
    MODEL_FOLDER, where that alone is set): the only one, or the latest of a folder's `checkpoint` file (a
    tf.train.Saver folder holds one meta-graph per saved step)."""
    prefix, root = settings.checkpoint_prefix, settings.checkpoint_search
    if root is None or prefix.with_name(prefix.name + ".meta").is_file():
        return prefix
    found = sorted(_meta_graphs(root))
    if len(found) > 1 and len({p.parent for p in found}) == 1:
        latest = tf.train.latest_checkpoint(str(found[0].parent))  # None without a `checkpoint` file
        named = [p for p in found if latest and p.name == Path(latest).name]
        found = named or found
    if len(found) > 1:
        shown = ", ".join(f"{p.relative_to(root)}.meta" for p in found[:5])
        raise StartupError(
            f"{len(found)} meta-graphs under {root} ({shown}); set MODEL_FOLDER and MODEL_FILE_PREFIX to the one to "
            "serve"
        )
    if not found:
        if (root / "saved_model.pb").is_file() or (root / "saved_model.pbtxt").is_file():
            raise StartupError(f"{root} holds a SavedModel; this server serves TF1 meta-graph checkpoints (.meta)")
        return prefix  # load_graph() says what is missing
    log.info("checkpoint found: %s (MODEL_FILE_PREFIX is not set)", found[0])
    return found[0]


def _meta_graphs(root: Path) -> list[Path]:
    """The checkpoint prefixes of every .meta file under root, through symbolic links too (a model folder
    mounted or linked in; Path.rglob does not enter linked folders before Python 3.13)."""
    found, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree: walked already
            subfolders.clear()
            continue
        seen.add(real)
        found += [Path(folder, name[: -len(".meta")]) for name in names if name.endswith(".meta")]
    return found


@dataclass(frozen=True)
class _Served:
    key: str | None  # the serving signature's key, where the tensors come from one
    inputs: list[tuple[str, str, str]]  # (name for clients, graph tensor, what errors call it)
    outputs: list[tuple[str, str, str]]


def _served_tensors(settings: Settings, meta: Path) -> _Served:
    """The inputs and outputs to serve: each of INPUT_TENSOR and OUTPUT_TENSOR where it is set (one tensor or
    several, comma-separated), else the serving signature's, else the settings' defaults (the how-to's, whose
    meta-graph declares no signature).  Clients call a signature's tensors by its keys, others by op name."""
    given = settings.given_tensors

    def from_setting(setting: str) -> list[tuple[str, str, str]]:
        names = [name.strip() for name in getattr(settings, setting).split(",") if name.strip()]
        _require(bool(names), f"{setting.upper()} names no tensor")
        ops = [name.rsplit(":", 1)[0] for name in names]
        # Tensors of one op (top-k's values and indices) are told apart by their full names.
        return [
            (op if ops.count(op) == 1 else name, name, setting.upper()) for op, name in zip(ops, names, strict=True)
        ]

    served = None if len(given) == 2 else signature.read(meta)
    if served is None:
        return _Served(None, from_setting("input_tensor"), from_setting("output_tensor"))
    sides = {}
    for side, tensors, setting in (
        ("inputs", served.inputs, "input_tensor"),
        ("outputs", served.outputs, "output_tensor"),
    ):
        if setting in given:
            sides[side] = from_setting(setting)
        else:
            _require(bool(tensors), f"the serving signature {served.key!r} of {meta} has no {side}")
            label = side[:-1]
            sides[side] = [(key, name, f"signature {label} {key!r}") for key, name in tensors.items()]
    log.info(
        "serving signature %r: inputs %s, outputs %s",
        served.key,
        ", ".join(t for _, t, _ in sides["inputs"]),
        ", ".join(t for _, t, _ in sides["outputs"]),
    )
    return _Served(served.key, sides["inputs"], sides["outputs"])


def _spec(tensor: tf.Tensor, name: str, label: str, side: str) -> TensorSpec:
    """The tensor as clients see it, once it is one this server can batch: rows first, numbers or booleans."""
    label = f"{label} {tensor.name}"
    _require(tensor.shape.rank is not None, f"{label} has an unknown shape; export it with a static rank")
    _require(
        tensor.shape.rank >= 1,
        f"{label} is a scalar (shape ()); this server batches rows: every {side} needs a batch dimension",
    )
    _require(
        _size(tensor, 0) is None,
        f"{label} has a fixed batch size of {_size(tensor, 0)} (shape {tensor.shape}); this server batches rows: "
        "export the graph with a free batch dimension (None)",
    )
    dtype = np.dtype(tensor.dtype.as_numpy_dtype) if tensor.dtype.is_numpy_compatible else None
    _require(
        dtype in DATATYPES,
        f"{label} has dtype {tensor.dtype.name}; this server takes and answers numbers and booleans",
    )
    shape = tuple(-1 if _size(tensor, axis) is None else _size(tensor, axis) for axis in range(1, tensor.shape.rank))
    return TensorSpec(name, tensor.name, dtype, shape)


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


def _tensor(graph: tf.Graph, name: str, variable: str, meta: object) -> tf.Tensor:
    try:
        return graph.get_tensor_by_name(name)
    except (KeyError, ValueError):
        raise StartupError(f"tensor {name!r} ({variable}) is not in the graph of {meta}") from None


def _size(tensor: tf.Tensor, axis: int) -> int | None:
    """A static dimension as an int, None where it is free: under TF1 shape behaviour (which any module calling
    tf.disable_v2_behavior() turns on for the whole process, as the how-to's score.py does) a dimension is a
    Dimension object, never None itself."""
    return tf.dimension_value(tensor.shape[axis])


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StartupError(message)

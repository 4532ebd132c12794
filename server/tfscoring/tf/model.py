"""The TF1 meta-graph model behind one function that scores a batch.

Loaded once per worker process: import the meta-graph, restore the
checkpoint, pin the session to one device, warm up.  `infer` cuts batches larger
than MAX_BATCH_ROWS into session calls of at most that many rows (fewer after
the device ran out of memory).  In serving, the worker's batcher is its only
caller, one batch at a time, so the row limit it learns needs no lock.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow.compat.v1 as tf

from tfscoring import log
from tfscoring.config import RETRY_LARGER_AFTER, Settings
from tfscoring.errors import DeviceFailed, RowsRefused, ServiceUnavailable, StartupError
from tfscoring.interface import DATATYPES, Batch, TensorSpec
from tfscoring.observability import metrics
from tfscoring.tf import devices, signature


class GraphModel:
    def __init__(
        self,
        session: tf.Session,
        feeds: list[tf.Tensor],
        fetches: list[tf.Tensor],
        max_batch_rows: int,
        device: str,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        signature_key: str | None = None,
    ):
        self._session = session
        self._feeds = feeds
        self._fetches = fetches
        self._run = _session_callable(session, feeds, fetches)
        self.max_batch_rows = max_batch_rows
        self._fits_rows = max_batch_rows  # lowered when a session call runs out of device memory
        self._calls_since_split = 0
        self.inputs = inputs  # what clients send, in the order of `feeds`
        self.outputs = outputs  # what they get, in the order of `fetches`
        self.signature_key = signature_key
        self.device = device
        self.failure: str | None = None  # why the device can no longer run the session, once it cannot
        self.on_failure: Callable[[str], None] = lambda reason: None
        self._call_started: float | None = None  # when the running session call began

    @classmethod
    def load(cls, settings: Settings) -> GraphModel:
        _require(settings.azureml_model_dir.is_dir(), f"model directory not found: {settings.azureml_model_dir}")
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
                raise StartupError(f"cannot import meta-graph {meta}: {_first_line(err)}") from None
            served = _served_tensors(settings, meta)
            feeds = [_tensor(graph, tensor, label, meta) for _, tensor, label in served.inputs]
            fetches = [_tensor(graph, tensor, label, meta) for _, tensor, label in served.outputs]
        inputs = tuple(_spec(t, *served.inputs[i][::2], "input") for i, t in enumerate(feeds))
        outputs = tuple(_spec(t, *served.outputs[i][::2], "output") for i, t in enumerate(fetches))
        _require(len({t.name for t in feeds}) == len(feeds), f"an input tensor is named twice: {served.inputs}")

        threads = devices.intra_op_threads(settings.tf_num_intraop_threads, settings.worker_count)
        session = tf.Session(graph=graph, config=placement.session_config(settings.gpu_memory_limit_mb, threads))
        try:
            saver.restore(session, str(prefix))
        except (tf.errors.OpError, ValueError) as err:
            session.close()
            raise StartupError(f"cannot restore checkpoint {prefix}: {_first_line(err)}") from None
        # No session call is ever larger than a whole request, and warm-up runs the largest one.
        max_batch_rows = min(settings.max_batch_rows, settings.max_request_rows)
        return cls(session, feeds, fetches, max_batch_rows, placement.description, inputs, outputs, served.key)

    def infer(self, rows: np.ndarray) -> np.ndarray:
        """Class ids (argmax of the first output) for the rows of a one-input model (the how-to's answer)."""
        return self.run((rows,))[0].argmax(axis=1)

    def run(self, batch: Batch) -> Batch:
        """Every output's values, one row per input row, for a batch holding each input's rows.

        The rows go through the session in calls of at most max_batch_rows, so a batch
        of up to that many is one call.

        A session call that runs out of device memory (ResourceExhaustedError, e.g. a
        GPU shared with other processes) is split in halves and retried, down to one
        row; the size it was split to becomes this worker's limit, so later batches do
        not fail first.  After RETRY_LARGER_AFTER calls that fit, the limit is doubled
        again (up to max_batch_rows), so a passing shortage does not cost throughput for
        good.  One row that does not fit is a 503: the device is full, not the request
        wrong.
        """
        if self._fits_rows < self.max_batch_rows and self._calls_since_split >= RETRY_LARGER_AFTER:
            self._fits_rows = min(2 * self._fits_rows, self.max_batch_rows)
            self._calls_since_split = 0
        rows = len(batch[0])
        if rows <= self._fits_rows:  # the usual case: one session call
            return self._infer_or_split(batch)
        parts = []
        start = 0
        while start < rows:  # the limit may drop while this runs: re-read it for every chunk
            count = min(self._fits_rows, rows - start)
            parts.append(self._infer_or_split(tuple(a[start : start + count] for a in batch)))
            start += count
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

    def call_age(self) -> float:
        """Seconds the running session call has taken so far; 0 when none runs (the hang watchdog reads it)."""
        started = self._call_started
        return time.monotonic() - started if started is not None else 0.0

    def _session_call(self, batch: Batch) -> Batch:
        if self.failure:
            raise DeviceFailed(self.failure)
        self._call_started = time.monotonic()
        try:
            return self._run(*batch)
        finally:
            self._call_started = None

    def _infer_or_split(self, batch: Batch) -> Batch:
        rows = len(batch[0])
        try:
            outputs = self._session_call(batch)
            # A graph that mixes rows: a statically free batch dimension does not say.
            for spec, output in zip(self.outputs, outputs, strict=True):
                if output.ndim == 0 or len(output) != rows:
                    raise RuntimeError(f"output {spec.name!r} has shape {output.shape} for {rows} input rows")
        except tf.errors.OpError as err:
            if _out_of_memory(err):
                return self._split(batch, err)
            if isinstance(err, tf.errors.InvalidArgumentError):  # the rows' values, not the device
                raise RowsRefused(_first_line(err)) from None
            self._check_device(err)
            raise
        self._calls_since_split += 1
        return outputs

    def _split(self, batch: Batch, err: tf.errors.OpError) -> Batch:
        rows = len(batch[0])
        if rows == 1:
            raise ServiceUnavailable(
                "the device ran out of memory scoring a single row; retry later", {"Retry-After": "1"}
            ) from None
        half = (rows + 1) // 2
        self._calls_since_split = 0
        if half < self._fits_rows:
            self._fits_rows = half
            log.warning(
                "out of device memory scoring %d rows (%s): split; at most %d rows per session call from now on",
                rows,
                _first_line(err),
                half,
            )
            metrics.SPLIT_RETRIES.inc()
        first, second = self.run(tuple(a[:half] for a in batch)), self.run(tuple(a[half:] for a in batch))
        return tuple(np.concatenate(pair) for pair in zip(first, second, strict=True))

    def _check_device(self, err: tf.errors.OpError) -> None:
        """After a session call failed for no reason of its rows: if one zero row fails too, the failure
        sticks (a CUDA error leaves the context unusable), so this worker is done: DeviceFailed (503) now and
        for every later call, and on_failure to have the worker replaced.  Otherwise the error was passing."""
        try:  # through _session_call: a probe that hangs is seen by the hang watchdog too
            self._session_call(self.zeros(1))
        except tf.errors.OpError as probe_err:
            self.failure = f"the device cannot run the model: {_first_line(err)} (then: {_first_line(probe_err)})"
            log.critical("%s; this worker stops and is replaced", self.failure)
            self.on_failure(self.failure)
            raise DeviceFailed(self.failure) from None

    def zeros(self, rows: int) -> Batch:
        """A batch of zero rows for warm-up and probes (a free dimension of a row taken as 1)."""
        return tuple(np.zeros((rows, *(max(n, 1) for n in spec.shape)), spec.dtype) for spec in self.inputs)

    def warm_up(self) -> str:
        """Run the largest and the smallest batch once; return the device the first output's op ran on."""
        started = time.perf_counter()
        try:
            self.run(self.zeros(self.max_batch_rows))
        except RowsRefused as err:  # TensorFlow's InvalidArgumentError
            if all(spec.fixed for spec in self.inputs):
                raise StartupError(f"warm-up with zero rows failed: {err.reason}") from None
            # A free dimension taken as 1 need not suit the graph: the first requests pay the warm-up instead.
            log.warning("warm-up skipped (an input has a free dimension, taken as 1): %s", err.reason)
            return "unknown"
        options = tf.RunOptions(trace_level=tf.RunOptions.SOFTWARE_TRACE)  # records where each op ran
        metadata = tf.RunMetadata()
        first = self._fetches[0]
        feed = dict(zip(self._feeds, self.zeros(1), strict=True))
        self._session.run(first, feed, options=options, run_metadata=metadata)
        ran_on = next(
            (d.device for d in metadata.step_stats.dev_stats for n in d.node_stats if n.node_name == first.op.name),
            "unknown",
        )
        log.info(
            "model ready on %s: %s -> %s, max %d rows per session call, output op ran on %s, warm-up %.0f ms",
            self.device,
            ", ".join(f"{t.name} {t.shape}" for t in self._feeds),
            ", ".join(t.name for t in self._fetches),
            self.max_batch_rows,
            ran_on,
            (time.perf_counter() - started) * 1e3,
        )
        return ran_on

    def close(self) -> None:
        self._session.close()
        self._run = _closed  # as TensorFlow's public calls on a closed session: not a device failure


@dataclass(frozen=True)
class _Served:
    key: str | None  # the serving signature's key, where the tensors come from one
    inputs: list[tuple[str, str, str]]  # (name for clients, graph tensor, what errors call it)
    outputs: list[tuple[str, str, str]]


def _served_tensors(settings: Settings, meta: Path) -> _Served:
    """The inputs and outputs to serve: each of INPUT_TENSOR and OUTPUT_TENSOR where it is set (one tensor or
    several, comma-separated), else the serving signature's, else the settings' defaults (the how-to's, whose
    meta-graph declares no signature).  Clients call a signature's tensors by its keys, others by op name."""
    chosen = settings.model_fields_set

    def from_setting(setting: str) -> list[tuple[str, str, str]]:
        names = [name.strip() for name in getattr(settings, setting).split(",") if name.strip()]
        _require(bool(names), f"{setting.upper()} names no tensor")
        ops = [name.rsplit(":", 1)[0] for name in names]
        # Tensors of one op (top-k's values and indices) are told apart by their full names.
        return [
            (op if ops.count(op) == 1 else name, name, setting.upper()) for op, name in zip(ops, names, strict=True)
        ]

    served = None if {"input_tensor", "output_tensor"} <= chosen else signature.read(meta)
    if served is None:
        return _Served(None, from_setting("input_tensor"), from_setting("output_tensor"))
    sides = {}
    for side, tensors, setting in (
        ("inputs", served.inputs, "input_tensor"),
        ("outputs", served.outputs, "output_tensor"),
    ):
        if setting in chosen:
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


def find_checkpoint(settings: Settings) -> Path:
    """The checkpoint prefix: MODEL_FOLDER/MODEL_FILE_PREFIX (the how-to's model/mnist-tf.model by default).

    Where the prefix is not set and the default is absent, the meta-graph under the model directory (or under
    MODEL_FOLDER, where that alone is set): the only one, or the latest of a folder's `checkpoint` file (a
    tf.train.Saver folder holds one meta-graph per saved step)."""
    prefix = settings.checkpoint_prefix
    if "model_file_prefix" in settings.model_fields_set or prefix.with_name(prefix.name + ".meta").is_file():
        return prefix
    root = prefix.parent if "model_folder" in settings.model_fields_set else settings.azureml_model_dir
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
        return prefix  # load() says what is missing
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


def _session_callable(session: tf.Session, feeds: list[tf.Tensor], fetches: list[tf.Tensor]) -> Callable:
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
        return session.make_callable(fetches, feed_list=feeds)


def _closed(*batch: np.ndarray) -> Batch:
    raise RuntimeError("Attempted to use a closed Session.")


def _out_of_memory(err: tf.errors.OpError) -> bool:
    """Whether a session call failed for want of device memory.  Besides ResourceExhaustedError, TensorFlow
    raises InternalError "Dst tensor is not initialized" when it cannot allocate the copy of a feed on the GPU."""
    return isinstance(err, tf.errors.ResourceExhaustedError) or (
        isinstance(err, tf.errors.InternalError) and "Dst tensor is not initialized" in str(err)
    )


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


def _first_line(err: BaseException) -> str:
    """The line of an error worth logging.  A TensorFlow 2 session error opens with "Graph execution error:"
    and the node's definition; what went wrong is the line after "Node: '<name>'"."""
    lines = [line.strip() for line in str(getattr(err, "message", "") or err).strip().splitlines()]
    if lines and lines[0].startswith("Graph execution error"):
        after_node = [line for before, line in itertools.pairwise(lines) if before.startswith("Node: ") and line]
        # Without a "Node:" line (a node TensorFlow inserted itself, such as the copy of a feed to the GPU):
        # the first line that is neither the node's definition nor the trace around it.
        told = [line for line in lines[1:] if line and not line.startswith(("Detected at node", "File ", "[["))]
        if after_node or told:
            return (after_node or told)[0]
    return lines[0] if lines and lines[0] else type(err).__name__

"""The TF1 meta-graph model behind one function that scores a batch.

Loaded once per worker process: import the meta-graph, restore the
checkpoint, pin the session to one device, warm up.  `infer` cuts batches larger
than MAX_BATCH_ROWS into session calls of at most that many rows (fewer after
the device ran out of memory).  In serving, the worker's batcher is its only
caller, one batch at a time, so the row limit it learns needs no lock.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow.compat.v1 as tf

from tfscoring import devices, log, metrics, protocols, signature
from tfscoring.config import RETRY_LARGER_AFTER, Settings
from tfscoring.errors import DeviceFailed, ServiceUnavailable, StartupError


class GraphModel:
    def __init__(
        self,
        session: tf.Session,
        x: tf.Tensor,
        y: tf.Tensor,
        max_batch_rows: int,
        device: str,
        keys: tuple[str | None, str | None] = (None, None),
    ):
        self._session = session
        self._x = x
        self._y = y
        self._run = _session_callable(session, x, y)
        self.max_batch_rows = max_batch_rows
        self._fits_rows = max_batch_rows  # lowered when a session call runs out of device memory
        self._calls_since_split = 0
        self.input_width = int(x.shape[1])
        # What clients may call the input (its signature key first, where there is one) and the output.
        input_key, output_key = keys
        self.input_names = (input_key, x.op.name, x.name) if input_key else (x.op.name, x.name)
        self.output_name = output_key or y.op.name
        self.output_shape = tuple(_size(y, axis) or -1 for axis in range(1, y.shape.rank))
        self.output_dtype = np.dtype(y.dtype.as_numpy_dtype)
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
            (x_name, x_label), (y_name, y_label), keys = _served_tensors(settings, meta)
            x = _tensor(graph, x_name, x_label, meta)
            y = _tensor(graph, y_name, y_label, meta)
        _require(
            x.shape.rank == 2 and _size(x, 1) is not None,
            f"{x_label} {x.name} has shape {x.shape}; expected (None, width)",
        )
        _require(y.shape.rank == 2, f"{y_label} {y.name} has shape {y.shape}; expected (None, classes)")
        for tensor, label in ((x, x_label), (y, y_label)):  # the server batches rows: one output row per input row
            _require(
                _size(tensor, 0) is None,
                f"{label} {tensor.name} has a fixed batch size of {_size(tensor, 0)} (shape {tensor.shape}); this "
                "server batches rows: export the graph with a free batch dimension (None)",
            )
        _require(
            y.dtype.is_numpy_compatible and np.dtype(y.dtype.as_numpy_dtype) in protocols.DATATYPES,
            f"{y_label} {y.name} has dtype {y.dtype.name}; the server answers numbers or booleans",
        )

        session = tf.Session(graph=graph, config=placement.session_config(settings.gpu_memory_limit_mb))
        try:
            saver.restore(session, str(prefix))
        except (tf.errors.OpError, ValueError) as err:
            session.close()
            raise StartupError(f"cannot restore checkpoint {prefix}: {_first_line(err)}") from None
        # No session call is ever larger than a whole request, and warm-up runs the largest one.
        max_batch_rows = min(settings.max_batch_rows, settings.max_request_rows)
        return cls(session, x, y, max_batch_rows, placement.description, keys)

    def infer(self, rows: np.ndarray) -> np.ndarray:
        """Class ids (argmax of the output) for float32 rows of shape (N, input_width)."""
        return self.outputs(rows).argmax(axis=1)

    def outputs(self, rows: np.ndarray) -> np.ndarray:
        """The output tensor's values, one row per input row, for float32 rows of shape (N, input_width).

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
        parts = []
        start = 0
        while start < len(rows):  # the limit may drop while this runs: re-read it for every chunk
            chunk = rows[start : start + self._fits_rows]
            parts.append(self._infer_or_split(chunk))
            start += len(chunk)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def call_age(self) -> float:
        """Seconds the running session call has taken so far; 0 when none runs (the hang watchdog reads it)."""
        started = self._call_started
        return time.monotonic() - started if started is not None else 0.0

    def _session_call(self, rows: np.ndarray) -> np.ndarray:
        if self.failure:
            raise DeviceFailed(self.failure)
        self._call_started = time.monotonic()
        try:
            return self._run(rows)
        finally:
            self._call_started = None

    def _infer_or_split(self, rows: np.ndarray) -> np.ndarray:
        try:
            outputs = self._session_call(rows)
            if len(outputs) != len(rows):  # a graph that mixes rows (a statically free batch dimension does not say)
                raise RuntimeError(f"the output has {len(outputs)} rows for {len(rows)} input rows")
        except tf.errors.OpError as err:
            if _out_of_memory(err):
                return self._split(rows, err)
            if not isinstance(err, tf.errors.InvalidArgumentError):  # that one is the rows' values, not the device
                self._check_device(err)
            raise
        self._calls_since_split += 1
        return outputs

    def _split(self, rows: np.ndarray, err: tf.errors.OpError) -> np.ndarray:
        if len(rows) == 1:
            raise ServiceUnavailable(
                "the device ran out of memory scoring a single row; retry later", {"Retry-After": "1"}
            ) from None
        half = (len(rows) + 1) // 2
        self._calls_since_split = 0
        if half < self._fits_rows:
            self._fits_rows = half
            log.warning(
                "out of device memory scoring %d rows (%s): split; at most %d rows per session call from now on",
                len(rows),
                _first_line(err),
                half,
            )
            metrics.SPLIT_RETRIES.inc()
        return np.concatenate([self.outputs(rows[:half]), self.outputs(rows[half:])])

    def _check_device(self, err: tf.errors.OpError) -> None:
        """After a session call failed for no reason of its rows: if one zero row fails too, the failure
        sticks (a CUDA error leaves the context unusable), so this worker is done: DeviceFailed (503) now and
        for every later call, and on_failure to have the worker replaced.  Otherwise the error was passing."""
        try:  # through _session_call: a probe that hangs is seen by the hang watchdog too
            self._session_call(np.zeros((1, self.input_width), np.float32))
        except tf.errors.OpError as probe_err:
            self.failure = f"the device cannot run the model: {_first_line(err)} (then: {_first_line(probe_err)})"
            log.critical("%s; this worker stops and is replaced", self.failure)
            self.on_failure(self.failure)
            raise DeviceFailed(self.failure) from None

    def warm_up(self) -> str:
        """Run the largest and the smallest batch once; return the device the output op ran on."""
        started = time.perf_counter()
        self.infer(np.zeros((self.max_batch_rows, self.input_width), np.float32))
        options = tf.RunOptions(trace_level=tf.RunOptions.SOFTWARE_TRACE)  # records where each op ran
        metadata = tf.RunMetadata()
        self._session.run(
            self._y, {self._x: np.zeros((1, self.input_width), np.float32)}, options=options, run_metadata=metadata
        )
        ran_on = next(
            (d.device for d in metadata.step_stats.dev_stats for n in d.node_stats if n.node_name == self._y.op.name),
            "unknown",
        )
        log.info(
            "model ready on %s: %s %s -> %s, max %d rows per session call, output op ran on %s, warm-up %.0f ms",
            self.device,
            self._x.name,
            self._x.shape,
            self._y.name,
            self.max_batch_rows,
            ran_on,
            (time.perf_counter() - started) * 1e3,
        )
        return ran_on

    def close(self) -> None:
        self._session.close()
        self._run = _closed  # as TensorFlow's public calls on a closed session: not a device failure


def _served_tensors(
    settings: Settings, meta: Path
) -> tuple[tuple[str, str], tuple[str, str], tuple[str | None, str | None]]:
    """(tensor name, what to call it in errors) of the input and the output, and their names for clients where a
    signature gives them: each of INPUT_TENSOR and OUTPUT_TENSOR where it is set, else the serving signature's
    tensor, else the setting's default (the how-to's, whose meta-graph declares no signature)."""
    chosen = settings.model_fields_set
    x = (settings.input_tensor, "INPUT_TENSOR")
    y = (settings.output_tensor, "OUTPUT_TENSOR")
    if {"input_tensor", "output_tensor"} <= chosen:
        return x, y, (None, None)
    served = signature.read(meta)
    if served is None:
        return x, y, (None, None)
    for side, tensors, setting in (
        ("inputs", served.inputs, "input_tensor"),
        ("outputs", served.outputs, "output_tensor"),
    ):
        if setting not in chosen and len(tensors) != 1:
            raise StartupError(
                f"the serving signature {served.key!r} of {meta} has {side} {sorted(tensors)}; this server scores "
                f"one input and one output: set {setting.upper()} to the one to serve"
            )
    keys = [None, None]
    if "input_tensor" not in chosen:
        ((keys[0], name),) = served.inputs.items()
        x = (name, f"signature input {keys[0]!r}")
    if "output_tensor" not in chosen:
        ((keys[1], name),) = served.outputs.items()
        y = (name, f"signature output {keys[1]!r}")
    log.info("serving signature %r: input %s, output %s", served.key, x[0], y[0])
    return x, y, (keys[0], keys[1])


def find_checkpoint(settings: Settings) -> Path:
    """The checkpoint prefix: MODEL_FOLDER/MODEL_FILE_PREFIX (the how-to's model/mnist-tf.model by default).

    Where the prefix is not set and the default is absent, the meta-graph under the model directory (or under
    MODEL_FOLDER, where that alone is set): the only one, or the latest of a folder's `checkpoint` file (a
    tf.train.Saver folder holds one meta-graph per saved step)."""
    prefix = settings.checkpoint_prefix
    if "model_file_prefix" in settings.model_fields_set or prefix.with_name(prefix.name + ".meta").is_file():
        return prefix
    root = prefix.parent if "model_folder" in settings.model_fields_set else settings.azureml_model_dir
    found = sorted(meta.with_suffix("") for meta in root.rglob("*.meta"))
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


def _session_callable(session: tf.Session, x: tf.Tensor, y: tf.Tensor) -> Callable[[np.ndarray], np.ndarray]:
    """One session call, rows in, outputs out, through TensorFlow's callable handle (TF_SessionRunCallable).

    In TF 2, the public `make_callable(y, feed_list=[x])` only wraps `session.run`, which re-parses the feeds
    and fetches on every call: measured, 240 us of Python per 1-row call, against 64 us through
    `_make_callable_from_options`, the handle Keras' TF1 backend uses.  That one is private, so where a
    TensorFlow no longer has it, the public wrapper is used, with a warning; tests compare the two.
    """
    if x.dtype != tf.float32:  # the handle does not convert the rows to another dtype, as the public path does
        return session.make_callable(y, feed_list=[x])
    try:
        from tensorflow.core.protobuf.config_pb2 import CallableOptions

        handle = session._make_callable_from_options(CallableOptions(feed=[x.name], fetch=[y.name]))
    except (AttributeError, ImportError) as err:
        log.warning("TensorFlow's callable handle is unavailable (%s): session calls take the slower path", err)
        return session.make_callable(y, feed_list=[x])
    return lambda rows: handle(rows)[0]


def _closed(rows: np.ndarray) -> np.ndarray:
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

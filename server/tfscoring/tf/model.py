"""The TF1 meta-graph model behind one function: predict, one session call for a batch.

Loaded once per worker process (load.py), then warmed up.  `predict` runs one session call and says what went
wrong in the service's terms: the device out of memory (OutOfMemory: batching/calls.py, the one place that cuts
batches into session calls, retries with fewer rows), the rows' values refused (400), or the device failed for
good (503, and the worker is replaced).  In serving, the worker's batcher is its only caller, one batch at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tensorflow.compat.v1 as tf

from tfscoring import log
from tfscoring.config import Settings
from tfscoring.errors import DeviceFailed, OutOfMemory, RowsRefused, StartupError
from tfscoring.interface import Batch, Predict
from tfscoring.tf.load import LoadedGraph, load_graph
from tfscoring.tf.messages import first_line


class GraphModel:
    def __init__(self, graph: LoadedGraph, max_batch_rows: int):
        self._graph = graph
        # The session call itself (TensorFlow's callable handle); the test entry scripts wrap it to pretend a device.
        self.session_call = graph.session_call
        self.max_batch_rows = max_batch_rows  # the most rows in one session call: warm-up runs that many
        self.inputs = graph.inputs  # what clients send, in the order of the session call's feeds
        self.outputs = graph.outputs  # what they get, in the order of its fetches
        self.signature_key = graph.signature_key
        self.device = graph.device
        self.platform = graph.platform
        self.failure: str | None = None  # why the device can no longer run the session, once it cannot
        self.on_failure: Callable[[str], None] = lambda reason: None
        self._call_started: float | None = None  # when the running session call began
        self._probe: Batch | None = None  # one row a session call took, kept from the first that succeeded

    @classmethod
    def load(cls, settings: Settings) -> GraphModel:
        """The model the settings name, loaded (StartupError: it cannot be)."""
        # No session call is ever larger than a whole request, and warm-up runs the largest one.
        return cls(load_graph(settings), min(settings.max_batch_rows, settings.max_request_rows))

    def predict(self, arrays: Batch) -> Batch:
        """Every output's values, one row per input row, for a batch holding each input's rows: one session call.

        OutOfMemory where the device has no room for the rows (a smaller call may fit); RowsRefused (400) where
        the graph refuses their values; DeviceFailed (503) where the device cannot run the session any more.
        """
        n_rows = len(arrays[0])
        try:
            outputs = self._watched_call(arrays)
            if self._probe is None and n_rows:  # a row this graph took: the device probe's (a zero row may not be)
                self._probe = tuple(array[:1].copy() for array in arrays)
            # A graph that mixes rows: a statically free batch dimension does not say.
            for spec, output in zip(self.outputs, outputs, strict=True):
                if output.ndim == 0 or len(output) != n_rows:
                    raise RuntimeError(f"output {spec.name!r} has shape {output.shape} for {n_rows} input rows")
        except tf.errors.OpError as err:
            if _out_of_memory(err):
                raise OutOfMemory(first_line(err)) from None
            if isinstance(err, tf.errors.InvalidArgumentError):  # the rows' values, not the device
                raise RowsRefused(first_line(err)) from None
            self._check_device(err)
            raise
        return outputs

    def call_age(self) -> float:
        """Seconds the running session call has taken so far; 0 when none runs (the hang watchdog reads it)."""
        started = self._call_started
        return time.monotonic() - started if started is not None else 0.0

    def _watched_call(self, arrays: Batch) -> Batch:
        """The session call, refused once the device failed, and timed while it runs for the hang watchdog."""
        if self.failure:
            raise DeviceFailed(self.failure)
        self._call_started = time.monotonic()
        try:
            return self.session_call(*arrays)
        finally:
            self._call_started = None

    def _check_device(self, err: tf.errors.OpError) -> None:
        """After a session call failed for no reason of its rows: if one row fails too (the first row a call took,
        else a zero row), the failure sticks (a CUDA error leaves the context unusable), so this worker is done:
        DeviceFailed (503) now and for every later call, and on_failure to have the worker replaced.  Otherwise the
        error was passing."""
        try:  # through _watched_call: a probe that hangs is seen by the hang watchdog too
            self._watched_call(self._probe or self.zeros(1))
        except tf.errors.OpError as probe_err:
            if self._probe is None and isinstance(probe_err, tf.errors.InvalidArgumentError):
                return  # a zero row refused (a graph decoding image bytes refuses b""): it says nothing of the device
            self.failure = f"the device cannot run the model: {first_line(err)} (then: {first_line(probe_err)})"
            log.critical("%s; this worker stops and is replaced", self.failure)
            self.on_failure(self.failure)
            raise DeviceFailed(self.failure) from None

    def zeros(self, n_rows: int) -> Batch:
        """A batch of zero rows for warm-up and probes (a free dimension of a row taken as 1; byte strings empty)."""
        return tuple(
            np.full((n_rows, *(max(n, 1) for n in spec.shape)), b"" if spec.strings else 0, spec.dtype)
            for spec in self.inputs
        )

    def warm_up(self, predict: Predict) -> str:
        """Run the largest batch (max_batch_rows) once through `predict`, the session calls serving makes (so that
        a call too large for the device is split now, and its size learnt, before the first request), then the
        smallest; return the device the first output's op ran on."""
        started = time.perf_counter()
        try:
            predict(self.zeros(self.max_batch_rows))
        except RowsRefused as err:  # TensorFlow's InvalidArgumentError
            if all(spec.fixed and not spec.strings for spec in self.inputs):
                raise StartupError(f"warm-up with zero rows failed: {err.reason}") from None
            # A free dimension taken as 1, or an empty string (a graph that decodes an image refuses it), need not
            # suit the graph: the first requests pay the warm-up instead.
            log.warning(  # the requests of a warm-up file (warmup.py), run next, warm it where there is one
                "warm-up skipped (an input has a free dimension, taken as 1): %s; a warmup.jsonl of requests in the "
                "model's folder warms it (docs/warmup.md)",
                err.reason,
            )
            return "unknown"
        options = tf.RunOptions(trace_level=tf.RunOptions.SOFTWARE_TRACE)  # records where each op ran
        metadata = tf.RunMetadata()
        feeds, fetches = self._graph.feeds, self._graph.fetches
        first = fetches[0]
        feed = dict(zip(feeds, self.zeros(1), strict=True))
        self._graph.session.run(first, feed, options=options, run_metadata=metadata)
        ran_on = next(
            (d.device for d in metadata.step_stats.dev_stats for n in d.node_stats if n.node_name == first.op.name),
            "unknown",
        )
        log.info(
            "model ready on %s: %s -> %s, max %d rows per session call, output op ran on %s, warm-up %.0f ms",
            self.device,
            ", ".join(f"{t.name} {t.shape}" for t in feeds),
            ", ".join(t.name for t in fetches),
            self.max_batch_rows,
            ran_on,
            (time.perf_counter() - started) * 1e3,
        )
        return ran_on

    def close(self) -> None:
        self._graph.session.close()
        self.session_call = _closed  # as TensorFlow's public calls on a closed session: not a device failure


def _closed(*arrays: np.ndarray) -> Batch:
    raise RuntimeError("Attempted to use a closed Session.")


def _out_of_memory(err: tf.errors.OpError) -> bool:
    """Whether a session call failed for want of device memory.  Besides ResourceExhaustedError, TensorFlow
    raises InternalError "Dst tensor is not initialized" when it cannot allocate the copy of a feed on the GPU."""
    return isinstance(err, tf.errors.ResourceExhaustedError) or (
        isinstance(err, tf.errors.InternalError) and "Dst tensor is not initialized" in str(err)
    )

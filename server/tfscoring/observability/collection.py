"""Model data collection: a sample of requests' inputs and outputs to Azure ML's data collector.

On when DATA_COLLECTION=1; what the deployment's `data_collector` enables (collections `model_inputs`
and `model_outputs`) is read by Azure ML's own package, azureml-ai-monitoring, from what the platform
sets (AZUREML_MDC_CONFIG_PATH, or the AZUREML_MDC_* variables), and that package sends to the
collector beside the container.

Off the request path, and bounded: a request only offers its arrays to a buffer of at most
DATA_COLLECTION_MAX_BYTES per worker and goes on.  One thread of this worker's turns a sample into the
package's DataFrames (a column per value of a row, as drift monitoring reads them) and hands it over only
once the package's own queue is empty: that queue holds up to 1500 payloads of Python objects, and its
sender waits on a collector without a timeout, so a slow or hung collector would otherwise grow the
worker without bound.  Then samples wait in the buffer, and what does not fit is dropped.  Every drop is
counted in tfscoring_collection_dropped_total by reason: buffer_full, too_large (one request larger than
an eighth of the buffer), collector (the package refused it), send_failed (the collector did not take it),
error; the package's own error lines are counted, not written (one line says the first).
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from tfscoring import log
from tfscoring.interface import Batch, Interface, TensorSpec
from tfscoring.observability.metrics import Metrics

_STRING_OBJECT = 2 * 49  # a bytes and a str object besides their characters (CPython, 64-bit)
_FRAME_COST = 8  # bytes of DataFrame and JSON per byte of float32 array, measured: a sample is held as that much
_MAX_COLUMNS = 1024  # a row of more values is one column of lists, not a column per value
# How often the thread looks whether the package's queue has emptied: collection takes at most some 100 requests a
# second per worker, whatever the share sampled.
_POLL_S = 0.01


@dataclass
class _Sample:
    request_id: str
    inputs: Batch
    outputs: Batch
    size: int


class DataCollection:
    def __init__(self, interface: Interface, sample: float, max_bytes: int, metrics: Metrics):
        self._interface = interface
        self._metrics = metrics
        self._sample = sample
        self._max_bytes = max_bytes
        self._waiting: deque[_Sample] = deque()
        self._bytes = 0
        self._ready = threading.Condition()
        self._off = False  # the package is not configured: nothing is kept any more
        self._collectors = None  # (inputs, outputs) of azureml-ai-monitoring, made by the thread
        self._problems: list[Exception] | None = None  # what the package reports while they are made
        self._refused = False  # the package refused a payload of the sample being handed over

    def start(self) -> None:
        threading.Thread(target=self._run, name="data-collection", daemon=True).start()

    def offer(self, request_id: str, inputs: Batch, outputs: Batch) -> None:
        """Keep the request's data for the collector, if sampled and if it fits; never waits."""
        if self._off or (self._sample < 1 and random.random() >= self._sample):
            return
        size = _FRAME_COST * (sum(map(_held_bytes, inputs)) + sum(map(_held_bytes, outputs)))
        if size > self._max_bytes // 8:
            self._metrics.collection_dropped.labels("too_large").inc()
            return
        with self._ready:
            if self._off:  # turned off since the look above
                return
            if self._bytes + size > self._max_bytes:
                self._metrics.collection_dropped.labels("buffer_full").inc()
                return
            self._waiting.append(_Sample(request_id, inputs, outputs, size))
            self._bytes += size
            self._ready.notify()

    def _run(self) -> None:
        if not self._make_collectors():
            return
        from azureml.ai.monitoring.queue import get_queue  # the package's payload queue, to wait for it to empty

        while True:
            with self._ready:
                while not self._waiting:
                    self._ready.wait()
                sample = self._waiting[0]  # counted in the buffer until handed over
            try:
                while get_queue().length() > 0:
                    time.sleep(_POLL_S)
                self._send(sample)
            except Exception as err:  # a value pandas cannot take, say: this sample only
                self._metrics.collection_dropped.labels("error").inc()
                log.warning("data collection dropped request %s: %s", sample.request_id, err)
            with self._ready:
                self._waiting.popleft()
                self._bytes -= sample.size

    def _make_collectors(self) -> bool:
        problems = self._problems = []  # the package checks its configuration as a collector is made
        try:
            from azureml.ai.monitoring import Collector  # imports pandas: here, not in a request

            self._collectors = tuple(
                Collector(name=name, on_error=self._on_error) for name in ("model_inputs", "model_outputs")
            )
        except Exception as err:
            problems.append(err)
        self._problems = None
        if problems:
            log.warning(
                "data collection off: %s (Azure ML sets the collector up for a deployment whose data_collector "
                "enables model_inputs and model_outputs)",
                problems[0],
            )
            with self._ready:  # nothing will be sent: let go of what waits, keep nothing more
                self._off = True
                self._waiting.clear()
                self._bytes = 0
            return False
        _count_the_packages_errors(self._metrics)
        log.info("data collection on: a share of %g of requests to model_inputs and model_outputs", self._sample)
        return True

    def _send(self, sample: _Sample) -> None:
        from azureml.ai.monitoring.context import BasicCorrelationContext

        context = BasicCorrelationContext(id=sample.request_id)
        inputs, outputs = self._collectors
        self._refused = False
        inputs.collect(_frame(self._interface.inputs, sample.inputs), context)
        outputs.collect(_frame(self._interface.outputs, sample.outputs), context)
        if self._refused:
            self._metrics.collection_dropped.labels("collector").inc()
        else:
            self._metrics.collected.inc()

    def _on_error(self, err: Exception) -> None:
        """The package's on_error: its configuration is wrong (while the collectors are made), or it refused a
        payload (its queue full)."""
        if self._problems is not None:
            self._problems.append(err)
        else:
            self._refused = True


def _frame(specs: tuple[TensorSpec, ...], arrays: Batch):
    """The rows as a DataFrame: a column per value of a row (`image_0` ...), so that drift monitoring sees
    numbers; a row of more than _MAX_COLUMNS values as one column of lists."""
    import pandas as pd

    columns = {}
    for spec, array in zip(specs, arrays, strict=True):
        if array.dtype == object:  # byte strings: as text (the collector sends JSON), base64 where not UTF-8
            array = np.vectorize(_as_text, otypes=[object])(array) if array.size else array
        flat = array.reshape(len(array), -1)
        if array.ndim == 1:
            columns[spec.name] = array
        elif flat.shape[1] <= _MAX_COLUMNS:
            columns.update({f"{spec.name}_{i}": flat[:, i] for i in range(flat.shape[1])})
        else:
            columns[spec.name] = list(flat.tolist())
    return pd.DataFrame(columns)


class _PackageErrors(logging.Handler):
    """Takes the package's log lines: a payload its sender could not deliver is a counted drop, said once."""

    def __init__(self, metrics: Metrics):
        super().__init__(logging.WARNING)
        self._metrics = metrics
        self._warned = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # Two payloads a request, each failing on its own: its outputs' failure counts the request once.
        if record.name == "mdc.worker" and "failed" in message and "model_outputs" in message:
            self._metrics.collection_dropped.labels("send_failed").inc()
        if not self._warned:
            self._warned = True
            log.warning("data collector: %s (further errors of the collector are counted, not logged)",
                        record.getMessage())  # fmt: skip


def _count_the_packages_errors(metrics: Metrics) -> None:
    """The package logs 2 error lines per payload it cannot deliver, with no limit, beside the request log."""
    handler = _PackageErrors(metrics)
    for name in ("mdc", "mdc.root", "mdc.collector", "mdc.worker", "mdc.sender"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False


def _as_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")


def _held_bytes(array: np.ndarray) -> int:
    """The memory keeping `array` alive holds: a view (a request's slice of a batch's outputs, rows read from
    the body's bytes) keeps all of what it views; an array of byte strings, its strings too (as text, up to 4/3
    of them in base64, with a Python object each)."""
    if array.dtype == object:
        return array.nbytes + sum(len(value) * 4 // 3 + _STRING_OBJECT for value in array.flat)
    while isinstance(array.base, np.ndarray):
        array = array.base
    if array.base is None:
        return array.nbytes
    try:
        return max(array.nbytes, memoryview(array.base).nbytes)
    except TypeError:  # a base that is no buffer
        return array.nbytes

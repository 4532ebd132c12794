"""Model data collection: a sample of requests' inputs and outputs to Azure ML's data collector.

On when DATA_COLLECTION=1; what the deployment's `data_collector` enables (collections `model_inputs`
and `model_outputs`) is read by Azure ML's own package, azureml-ai-monitoring, from the variables the
platform sets (AZUREML_MDC_*), and that package sends to the collector beside the container.

Off the request path: a request only offers its arrays to a bounded buffer (DATA_COLLECTION_MAX_BYTES
per worker) and goes on; one thread of this worker's turns them into the package's DataFrames and
hands them over, inputs and outputs correlated by the request's id.  What does not fit, and what the
package refuses, is dropped and counted (tfscoring_collection_dropped_total, by reason); a request is
never delayed or failed by the collection.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from tfscoring import log, metrics
from tfscoring.interface import Interface

Batch = tuple[np.ndarray, ...]


@dataclass
class _Sample:
    request_id: str
    inputs: Batch
    outputs: Batch
    size: int


class DataCollection:
    def __init__(self, interface: Interface, sample: float, max_bytes: int):
        self._interface = interface
        self._sample = sample
        self._max_bytes = max_bytes
        self._waiting: deque[_Sample] = deque()
        self._bytes = 0
        self._ready = threading.Condition()
        self._collectors = None  # (inputs, outputs) of azureml-ai-monitoring, made by the thread
        self._problems: list[Exception] | None = None  # what the package reports while they are made

    def start(self) -> None:
        threading.Thread(target=self._run, name="data-collection", daemon=True).start()

    def offer(self, request_id: str, inputs: Batch, outputs: Batch) -> None:
        """Keep the request's data for the collector, if sampled and if it fits; never blocks for long."""
        if self._sample < 1 and random.random() >= self._sample:
            return
        size = sum(map(_held_bytes, inputs)) + sum(map(_held_bytes, outputs))
        with self._ready:
            if self._bytes + size > self._max_bytes:
                metrics.COLLECTION_DROPPED.labels("buffer_full").inc()
                return
            self._waiting.append(_Sample(request_id, inputs, outputs, size))
            self._bytes += size
            self._ready.notify()

    def _run(self) -> None:
        problems = self._problems = []  # the package checks its configuration as a collector is made
        try:
            from azureml.ai.monitoring import Collector  # imports pandas: here, not in a request

            self._collectors = tuple(
                Collector(name=name, on_error=self._refused) for name in ("model_inputs", "model_outputs")
            )
        except Exception as err:
            problems.append(err)
        self._problems = None  # from now on, a refusal is a counted drop
        if problems:
            log.warning(
                "data collection off: %s (Azure ML sets the collector up for a deployment whose data_collector "
                "enables model_inputs and model_outputs)",
                problems[0],
            )
            with self._ready:  # nothing will be sent: let go of what waits and of what comes
                self._max_bytes = 0
                self._waiting.clear()
                self._bytes = 0
            return
        log.info("data collection on: a share of %g of requests to model_inputs and model_outputs", self._sample)
        while True:
            with self._ready:
                while not self._waiting:
                    self._ready.wait()
                sample = self._waiting.popleft()
                self._bytes -= sample.size
            try:
                self._send(sample)
            except Exception as err:  # a value pandas cannot take, say: this sample only
                metrics.COLLECTION_DROPPED.labels("error").inc()
                log.warning("data collection dropped request %s: %s", sample.request_id, err)

    def _send(self, sample: _Sample) -> None:
        import pandas as pd
        from azureml.ai.monitoring.context import BasicCorrelationContext

        def frame(specs, arrays) -> pd.DataFrame:
            return pd.DataFrame({spec.name: list(array.tolist()) for spec, array in zip(specs, arrays, strict=True)})

        context = BasicCorrelationContext(id=sample.request_id)
        inputs, outputs = self._collectors
        inputs.collect(frame(self._interface.inputs, sample.inputs), context)
        outputs.collect(frame(self._interface.outputs, sample.outputs), context)
        metrics.COLLECTED.inc()

    def _refused(self, err: Exception) -> None:
        """The package's on_error: its configuration is wrong (while the collectors are made), or it dropped a
        payload (its queue full)."""
        if self._problems is not None:
            self._problems.append(err)
            return
        metrics.COLLECTION_DROPPED.labels("collector").inc()
        log.debug("data collector refused a payload: %s", err)


def _held_bytes(array: np.ndarray) -> int:
    """The memory keeping `array` alive holds: a view (a request's slice of a batch's outputs, rows read from
    the body's bytes) keeps all of what it views."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    if array.base is None:
        return array.nbytes
    try:
        return max(array.nbytes, memoryview(array.base).nbytes)
    except TypeError:  # a base that is no buffer
        return array.nbytes

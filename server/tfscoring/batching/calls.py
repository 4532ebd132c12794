"""The one place a batch is cut into session calls, and where the size of a call adapts to the device's memory.

A session call takes at most `rows` rows: MAX_BATCH_ROWS (`max_batch_rows`), fewer after the device ran out of
memory.  The batcher fills each batch up to `rows`, so a batch is one session call; warm-up hands over the largest
batch whole, and a batch whose call runs out of memory is cut here.

A session call that runs out of device memory (OutOfMemory: TensorFlow's ResourceExhaustedError, e.g. a GPU
shared with other processes) is split in halves and retried, down to one row; the size it was split to becomes
`rows`, so later batches do not fail first.  After RETRY_LARGER_AFTER calls that fit, `rows` is doubled again (up
to `max_batch_rows`), so a passing shortage does not cost throughput for good.  One row that does not fit is a 503:
the device is full, not the request wrong.

One caller at a time (the worker's warm-up, then its batcher's leader), so the size it learns needs no lock.
"""

from __future__ import annotations

import numpy as np

from tfscoring import log
from tfscoring.batching.observer import BatchObserver, NullObserver
from tfscoring.config import RETRY_LARGER_AFTER
from tfscoring.errors import OutOfMemory, ServiceUnavailable
from tfscoring.interface import Batch, Predict


class SessionCalls:
    def __init__(
        self,
        predict: Predict,
        max_batch_rows: int,
        observer: BatchObserver | None = None,
        retry_larger_after: int = RETRY_LARGER_AFTER,
    ):
        self._predict = predict
        self.max_batch_rows = max_batch_rows
        self.rows = max_batch_rows  # rows of one session call now: lowered when a call runs out of device memory
        self._observer = NullObserver() if observer is None else observer
        self._retry_larger_after = retry_larger_after
        self._fitted = 0  # calls that fitted since the last split

    def predict(self, arrays: Batch) -> Batch:
        """Every output's values, one row per input row, for a batch holding each input's rows, in session calls of
        at most `rows` rows: a batch of up to that many is one call."""
        n_rows = len(arrays[0])
        if n_rows <= self.rows:  # the usual case: one session call
            return self._call_or_split(arrays)
        parts = []
        start = 0
        while start < n_rows:  # `rows` may drop while this runs: re-read it for every call
            count = min(self.rows, n_rows - start)
            parts.append(self._call_or_split(tuple(a[start : start + count] for a in arrays)))
            start += count
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

    def _call_or_split(self, arrays: Batch) -> Batch:
        try:
            outputs = self._predict(arrays)
        except OutOfMemory as err:
            return self._split(arrays, err)
        self._fitted += 1
        # Raised right after the call that makes the count, so that the batcher fills its next batch to the new size.
        if self.rows < self.max_batch_rows and self._fitted >= self._retry_larger_after:
            self.rows = min(2 * self.rows, self.max_batch_rows)
            self._fitted = 0
        return outputs

    def _split(self, arrays: Batch, err: OutOfMemory) -> Batch:
        n_rows = len(arrays[0])
        if n_rows == 1:
            raise ServiceUnavailable(
                "the device ran out of memory scoring a single row; retry later", {"Retry-After": "1"}
            ) from None
        half = (n_rows + 1) // 2
        self._fitted = 0
        if half < self.rows:
            self.rows = half
            log.warning(
                "out of device memory scoring %d rows (%s): split; at most %d rows per session call from now on",
                n_rows,
                err.reason,
                half,
            )
            self._observer.split()
        first, second = self.predict(tuple(a[:half] for a in arrays)), self.predict(tuple(a[half:] for a in arrays))
        return tuple(np.concatenate(pair) for pair in zip(first, second, strict=True))

"""Bound the memory a worker spends on requests it is reading and decoding.

Each request reserves its weight (declared body bytes times the decoding's
cost per byte, see sizing.JSON_WEIGHT) before its body is read, and gives it
back when it is answered.  A request that would take the worker past its
budget gets 503 + Retry-After at once, before a byte of it is read, so that 32
concurrent maximum-size bodies are answered 200 or 503 instead of pushing the
container into an out-of-memory kill.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tfscoring.errors import ServiceUnavailable


class InflightBudget:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def reserve(self, weight: int) -> Iterator[None]:
        with self._lock:
            if self._used and self._used + weight > self.capacity:  # alone, any request may go (it passed 413)
                raise ServiceUnavailable(
                    f"server is busy: {self._used} of its {self.capacity} bytes for requests in flight are taken "
                    f"and this request needs {weight} (MAX_INFLIGHT_BYTES); retry shortly",
                    {"Retry-After": "1"},
                )
            self._used += weight
        try:
            yield
        finally:
            with self._lock:
                self._used -= weight

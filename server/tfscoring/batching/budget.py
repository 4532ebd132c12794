"""Bound the memory a worker spends on requests it is reading, decoding and scoring.

Each request reserves a first weight before its body is read (declared body
bytes times a cost per byte, see protocols/jsonbounds.py's JSON_WEIGHT); once the
body is read, and before each expensive step, its reservation is resized to
the request's own bound: an image's decoded size from its header, a JSON
body's objects counted in its bytes, then its arrays, their batch copies and
its outputs (cost.py).  It is given back when the request is answered.  A
request that would take the worker past its budget, at any of these steps,
gets 503 + Retry-After before the step, so that concurrent maximum-size bodies
are answered 200 or 503 instead of pushing the container into an
out-of-memory kill.  Alone, a request may take more than the budget: it passed
the limits (413) already.
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
    def reserve(self, weight: int) -> Iterator[Reservation]:
        reservation = Reservation(self)
        reservation.resize(weight)
        try:
            yield reservation
        finally:
            with self._lock:
                self._used -= reservation.weight

    def _take(self, held: int, weight: int, refuse: bool = True) -> None:
        """Move a reservation from `held` to `weight` bytes, or refuse it (503) and leave it as it was."""
        with self._lock:
            others = self._used - held
            if refuse and weight > held and others and others + weight > self.capacity:  # alone, any request goes
                raise ServiceUnavailable(
                    f"server is busy: {others} of its {self.capacity} bytes for requests in flight are taken "
                    f"and this request needs {weight} (MAX_INFLIGHT_BYTES); retry shortly",
                    {"Retry-After": "1"},
                )
            self._used += weight - held


class Reservation:
    """One request's share of the budget, resized as its cost becomes known."""

    def __init__(self, budget: InflightBudget):
        self._budget = budget
        self.weight = 0

    def resize(self, weight: int, refuse: bool = True) -> None:
        """Hold `weight` bytes from now on: less is always granted, more is refused (503) when others hold the
        rest, unless `refuse` is false (memory already taken, by work done: counted, so that others wait)."""
        self._budget._take(self.weight, weight, refuse)
        self.weight = weight

"""What the batcher and the session calls report as they go: the queue, the waits, the batches, the splits.

They are handed an observer instead of importing the metrics, so that batching/ and tf/ know nothing of
observability: the application passes the worker's metrics, a test the NullObserver or one of its own.
"""

from __future__ import annotations

from typing import Protocol


class BatchObserver(Protocol):
    def queued(self, rows: int) -> None: ...  # rows waiting in the queue now (gauge tfscoring queued rows)
    def waited(self, seconds: float) -> None: ...  # a request's wait from joining the queue to its first batch
    def batched(self, rows: int) -> None: ...  # rows of one session call's batch
    def session_call(self, seconds: float) -> None: ...  # time of one session call
    def split(self) -> None: ...  # an out-of-memory retry with fewer rows


class NullObserver:
    """Sees nothing: the default, for a batcher a test makes."""

    def queued(self, rows: int) -> None:
        pass

    def waited(self, seconds: float) -> None:
        pass

    def batched(self, rows: int) -> None:
        pass

    def session_call(self, seconds: float) -> None:
        pass

    def split(self) -> None:
        pass

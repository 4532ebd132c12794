"""Dynamic batching: the rows of concurrent requests in one worker go through one session call.

Gunicorn threads call run() concurrently.  Each call decodes its body, then
hands its rows to the worker's one `Batcher` and waits for their class ids.
A single scoring thread takes rows from the queue in arrival order, at most
MAX_BATCH_ROWS per session call, splitting a large request over several calls
and filling a call with the rows of several small ones.

When to run: at once if no other request is on its way; while other requests
are still being read or decoded (`incoming()`), the thread waits for them up to
MAX_BATCH_DELAY_MS, or until the batch is full.  A lone request therefore never
waits, and under load the session calls grow without a blind timer.

Bounds, so that no caller waits without limit (gunicorn's scoring timeout is a
SIGALRM that reaches only the main thread): the queue holds at most
MAX_QUEUE_ROWS rows, and a request that does not fit gets 503 with Retry-After
at once; a request not started within MAX_QUEUE_WAIT_MS is taken out of the
queue and gets 503.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from tfscoring import log
from tfscoring.errors import ServiceUnavailable

Infer = Callable[[np.ndarray], np.ndarray]  # float32 (n, width) -> int64 (n,) class ids


class _Job:
    """One request's rows, its answers as they come, and the event its caller waits on."""

    __slots__ = ("done", "error", "next_row", "rows", "scored", "started", "unscored")

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self.scored = np.empty(len(rows), np.int64)
        self.next_row = 0  # first row not yet taken into a batch
        self.unscored = len(rows)  # rows taken or not whose answers are not in yet
        self.started = False
        self.error: BaseException | None = None
        self.done = threading.Event()


class Batcher:
    def __init__(
        self,
        infer: Infer,
        width: int,
        max_batch_rows: int,
        max_delay_s: float,
        max_queue_rows: int,
        max_wait_s: float,
    ):
        self._infer = infer
        self._max_batch_rows = max_batch_rows
        self._max_delay_s = max_delay_s
        self._max_queue_rows = max_queue_rows
        self._max_wait_s = max_wait_s
        self._batch = np.empty((max_batch_rows, width), np.float32)  # reused: filled, scored, filled again
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Job] = deque()
        self._queued_rows = 0  # rows in the queue not yet taken into a batch
        self._incoming = 0  # requests inside incoming(): read or being decoded, not yet queued
        self._thread = threading.Thread(target=self._score_forever, name="tfscoring-batcher", daemon=True)
        self._thread.start()

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request on its way to the queue, so a batch being formed may wait for it."""
        with self._lock:
            self._incoming += 1
        try:
            yield
        finally:
            with self._lock:
                self._incoming -= 1
                self._changed.notify()

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Class ids for `rows`, scored together with other callers' rows; 503 on overload."""
        job = _Job(rows)
        self._enqueue(job)
        try:
            # Not started within MAX_QUEUE_WAIT_MS: withdrawn with a 503.  Started: its session calls end
            # soon, but the wait stays bounded all the same.
            if not job.done.wait(self._max_wait_s) and not self._withdraw(job) and not job.done.wait(self._max_wait_s):
                raise ServiceUnavailable(
                    f"request was not scored within {2 * self._max_wait_s * 1e3:.0f} ms; retry later",
                    {"Retry-After": "1"},
                )
        except BaseException:
            self._withdraw(job)  # also when the server's timeout (SIGALRM) interrupts the wait
            raise
        if job.error is not None:
            raise job.error
        return job.scored

    def _enqueue(self, job: _Job) -> None:
        with self._lock:
            if self._queued_rows and self._queued_rows + len(job.rows) > self._max_queue_rows:
                # An empty queue takes any request, so a request at MAX_REQUEST_ROWS always gets in eventually.
                wait_s = max(1, math.ceil(self._queued_rows / self._max_queue_rows * self._max_wait_s))
                raise ServiceUnavailable(
                    f"server is busy: {self._queued_rows} rows are waiting to be scored and this request's "
                    f"{len(job.rows)} would pass the queue limit of {self._max_queue_rows} rows (MAX_QUEUE_ROWS); "
                    "retry later",
                    {"Retry-After": str(wait_s)},
                )
            self._queue.append(job)
            self._queued_rows += len(job.rows)
            self._changed.notify()

    def _withdraw(self, job: _Job) -> bool:
        """Take a job that no batch has started out of the queue; False if it has started."""
        with self._lock:
            if job.started or job.done.is_set():
                return False
            self._queue.remove(job)
            self._queued_rows -= len(job.rows)
            job.error = ServiceUnavailable(
                f"request waited {self._max_wait_s * 1e3:.0f} ms in the queue without being scored "
                "(MAX_QUEUE_WAIT_MS); the server is overloaded, retry later",
                {"Retry-After": "1"},
            )
            job.done.set()
            return True

    def _score_forever(self) -> None:
        while True:
            parts = self._next_batch()
            rows = sum(count for _, _, count in parts)
            try:
                class_ids = self._infer(self._batch[:rows])
            except Exception as err:  # each caller turns it into a 500 with its request id
                log.error("scoring a batch of %d rows from %d requests failed: %s", rows, len(parts), err)
                self._finish(parts, None, err)
            else:
                self._finish(parts, class_ids, None)

    def _next_batch(self) -> list[tuple[_Job, int, int]]:
        """Wait for rows, let a short-lived crowd gather, and copy up to MAX_BATCH_ROWS into the batch."""
        with self._lock:
            while not self._queue:
                self._changed.wait()
            if self._incoming and self._queued_rows < self._max_batch_rows:
                gather_until = time.monotonic() + self._max_delay_s
                while self._incoming and self._queued_rows < self._max_batch_rows:
                    left = gather_until - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
            parts: list[tuple[_Job, int, int]] = []  # (job, first row, count)
            filled = 0
            while self._queue and filled < self._max_batch_rows:
                job = self._queue[0]
                count = min(self._max_batch_rows - filled, len(job.rows) - job.next_row)
                parts.append((job, job.next_row, count))
                self._batch[filled : filled + count] = job.rows[job.next_row : job.next_row + count]
                job.started = True
                job.next_row += count
                filled += count
                self._queued_rows -= count
                if job.next_row == len(job.rows):
                    self._queue.popleft()
            return parts

    def _finish(self, parts: list[tuple[_Job, int, int]], class_ids: np.ndarray | None, err: Exception | None) -> None:
        offset = 0
        with self._lock:
            for job, first, count in parts:
                job.unscored -= count
                if err is None:
                    job.scored[first : first + count] = class_ids[offset : offset + count]
                    offset += count
                else:
                    job.error = err
                    if job.next_row < len(job.rows):  # the rest of a failed request is not scored either
                        self._queue.remove(job)
                        self._queued_rows -= len(job.rows) - job.next_row
                        job.next_row = len(job.rows)
                if job.unscored == 0 or err is not None:
                    job.done.set()

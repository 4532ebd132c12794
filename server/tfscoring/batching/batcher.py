"""Dynamic batching: the rows of concurrent requests in one worker go through one session call.

Gunicorn threads call run() concurrently.  Each call decodes its body, then
hands its rows to the worker's one `Batcher` and waits for their answers.
Batches take rows in arrival order, as many as one session call takes
(SessionCalls.rows: MAX_BATCH_ROWS, fewer while the device is short of memory),
splitting a large request over several calls and filling a call with the rows
of several small ones.

Who scores: one caller at a time, the leader, runs the session calls in its
own thread (there is no scoring thread to hand work to).  A request that finds
the model idle leads at once, so a lone request goes straight through with no
thread switch.  A leader scores until its own rows are done, then hands the
lead to the request at the head of the queue, waking that one thread only.

When to run: at once if no other request is on its way; while other requests
are still being read or decoded (`expecting()`), the leader waits for them up
to MAX_BATCH_DELAY_MS, or until the batch is full.

Bounds, so that no caller waits without limit (gunicorn's scoring timeout is a
SIGALRM that reaches only the main thread): the queue holds at most
MAX_QUEUE_ROWS rows, and a request that does not fit gets 503 with Retry-After
at once; a request not started within MAX_QUEUE_WAIT_MS is taken out of the
queue and gets 503.

What it reports goes to an injected BatchObserver (the worker's metrics); what one
request's scoring was like comes back with its outputs (BatchStats).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from tfscoring import log
from tfscoring.batching.calls import SessionCalls
from tfscoring.batching.observer import BatchObserver, NullObserver
from tfscoring.errors import RowsRefused, ServiceUnavailable
from tfscoring.interface import Batch

_RETRY = {"Retry-After": "1"}


@dataclass(frozen=True)
class BatchStats:
    """How one request's rows were scored, for its record (the log line, the span)."""

    batch_rows: int | None  # rows of the largest batch its rows were in; None: in none that was scored
    queue_ms: float | None  # from joining the queue to its first batch; None: it never got one
    session_ms: float  # time of the session calls that scored its rows


@dataclass(frozen=True)
class Prediction:
    """What the batcher did with one request's rows: its outputs or the error that scoring them raised, and how."""

    outputs: Batch | None  # each output's rows, one per input row; None where scoring failed
    error: BaseException | None
    stats: BatchStats

    def result(self) -> Batch:
        """The outputs, or the error that scoring them raised."""
        if self.error is not None:
            raise self.error
        return self.outputs


class _Job:
    """One request's arrays (one per input), its answers as they come, and the event that wakes its caller."""

    __slots__ = (
        "arrays", "batch_rows", "caller", "error", "finished", "lead", "n_rows", "next_row", "queued_at", "scored",
        "session_s", "shapes", "unscored", "waited_s", "wake",
    )  # fmt: skip

    def __init__(self, arrays: Batch):
        self.arrays = arrays
        self.n_rows = len(arrays[0])
        self.shapes = [a.shape[1:] for a in arrays]  # rows of different shapes (free dimensions) are not stacked
        self.scored: list[np.ndarray] | None = None  # the answers, allocated when the first ones come in
        self.next_row = 0  # first row not yet taken into a batch
        self.unscored = self.n_rows  # rows whose answers are not in yet
        self.error: BaseException | None = None
        self.finished = False
        self.lead = False  # this job's caller is to score the next batches
        self.wake = threading.Event()  # set when finished or given the lead
        self.caller = threading.get_ident()
        self.queued_at = time.monotonic()
        self.waited_s: float | None = None  # from joining the queue to its first batch
        self.batch_rows = 0  # rows of the largest batch it was in
        self.session_s = 0.0  # time of the session calls that scored its rows

    @property
    def started(self) -> bool:
        return self.next_row > 0


class Batcher:
    def __init__(
        self,
        calls: SessionCalls,
        max_delay_s: float,
        max_queue_rows: int,
        max_wait_s: float,
        observer: BatchObserver | None = None,
    ):
        self._calls = calls  # the model's predict, and the rows one session call takes now
        self._observer = NullObserver() if observer is None else observer
        self._max_delay_s = max_delay_s
        self._max_queue_rows = max_queue_rows
        self._max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a gathering leader waits on it
        self._queue: deque[_Job] = deque()
        self._queued_rows = 0  # rows in the queue not yet taken into a batch
        # One item per request inside expecting() (being read or decoded, not yet queued).  A deque's append
        # and pop are thread-safe without the lock, which 16 threads entering and leaving contended for.
        self._expected: deque[None] = deque()
        self._gathering = False  # a leader waits on _arrived for requests still expected
        self._led = False  # some caller is the leader
        self._leader: int | None = None  # the leading caller's thread

    @property
    def queued_rows(self) -> int:
        """Rows waiting in the queue (the health probes read it; a stale value by a moment is fine)."""
        return self._queued_rows

    @property
    def gathering(self) -> bool:
        """A leader is waiting for requests still being read or decoded (expecting()) before it runs its batch."""
        return self._gathering

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark a request on its way to the queue, so a batch being formed may wait for it."""
        self._expected.append(None)
        try:
            yield
        finally:
            self._expected.pop()
            # The leader sets _gathering before it counts the expected requests, and this pops before it
            # reads _gathering: either the leader sees one fewer, or this sees it gathering and wakes it.
            if self._gathering:
                with self._lock:
                    self._arrived.notify()

    def predict(self, arrays: Batch) -> Prediction:
        """The outputs for `arrays` (one per input; each output's, one answer row per row), scored together with
        other callers' rows, or the error that scoring them raised, and how they were batched.  503 at once on
        overload (a full queue, a wait past MAX_QUEUE_WAIT_MS)."""
        job = _Job(arrays)
        try:  # _enqueue inside: an alarm right after it may have made this job the leader
            self._enqueue(job)
            self._wait_for(job)
        except BaseException:
            with self._lock:  # gone before its answers: no batch waits for it, the lead is passed on
                self._drop(job)
            raise
        stats = BatchStats(
            batch_rows=job.batch_rows or None,
            queue_ms=None if job.waited_s is None else round(job.waited_s * 1e3, 3),
            session_ms=round(job.session_s * 1e3, 3),
        )
        return Prediction(None if job.error is not None else tuple(job.scored), job.error, stats)

    def _wait_for(self, job: _Job) -> None:
        waited_long = False
        while not job.finished:
            if job.lead:
                self._lead(job)
                return
            if job.wake.wait(self._max_wait_s):
                continue  # finished, or given the lead
            with self._lock:
                if job.lead or job.finished:
                    continue
                if not job.started:
                    raise ServiceUnavailable(
                        f"request waited {self._max_wait_s * 1e3:.0f} ms in the queue without being scored "
                        "(MAX_QUEUE_WAIT_MS); the server is overloaded, retry later",
                        {"Retry-After": "1"},
                    )
            if waited_long:  # started, but its session calls outlast a second wait: never wait unbounded
                raise ServiceUnavailable(
                    f"request was not scored within {2 * self._max_wait_s * 1e3:.0f} ms; retry later",
                    {"Retry-After": "1"},
                )
            waited_long = True

    def _enqueue(self, job: _Job) -> None:
        with self._lock:
            if not self._queue:
                self._queued_rows = 0  # an empty queue holds no rows, whatever an interrupted count left
            if self._queued_rows and self._queued_rows + job.n_rows > self._max_queue_rows:
                # An empty queue takes any request, so a request at MAX_REQUEST_ROWS always gets in eventually.
                raise ServiceUnavailable(
                    f"server is busy: {self._queued_rows} rows are waiting to be scored and this request's "
                    f"{job.n_rows} would pass the queue limit of {self._max_queue_rows} rows (MAX_QUEUE_ROWS); "
                    "retry later",
                    {"Retry-After": str(max(1, math.ceil(self._max_wait_s)))},
                )
            self._queue.append(job)
            self._queued_rows += job.n_rows
            self._observer.queued(self._queued_rows)
            # A thread that calls again cannot still be leading: its last call was cut short (SIGALRM in a
            # sync worker can land even in a finally), so the lead it held is stale and it takes it back.
            if not self._led or self._leader == job.caller:
                self._led = job.lead = True
                self._leader = job.caller
            else:
                self._arrived.notify()

    def _drop(self, job: _Job) -> None:
        """Finish a job now: its rows not yet taken leave the queue, and a lead it holds goes on (lock held)."""
        if job in self._queue:
            self._queue.remove(job)
            self._queued_rows -= job.n_rows - job.next_row
            job.next_row = job.n_rows
            self._observer.queued(self._queued_rows)
        job.finished = True
        job.wake.set()
        if job.lead:
            job.lead = False
            self._pass_lead()

    def _pass_lead(self) -> None:
        """Wake the caller at the head of the queue to score next, or mark the model idle (lock held)."""
        if self._queue:
            successor = self._queue[0]
            successor.lead = True
            self._leader = successor.caller
            successor.wake.set()
        else:
            self._led = False
            self._leader = None
            self._queued_rows = 0  # an empty queue holds no rows, whatever an interrupted count left
            self._observer.queued(0)

    def _lead(self, job: _Job) -> None:
        """Score batches until this job is finished, then hand the lead on."""
        try:
            with self._lock:
                job.lead = False  # the lead is this thread's now; the finally below passes it on
            while not job.finished:
                parts, batch, waits = self._next_batch()
                for wait in waits:
                    self._observer.waited(wait)
                if not parts:  # never spin: a job whose rows are all taken is finished by their batch
                    with self._lock:
                        job.error = job.error or ServiceUnavailable("scoring was interrupted; retry", _RETRY)
                        self._drop(job)
                    break
                self._score(parts, batch)
        finally:  # also when the server's timeout (SIGALRM) interrupts a sync worker mid-call
            with self._lock:
                job.lead = False
                self._pass_lead()

    def _score(self, parts: list[tuple[_Job, int, int]], batch: Batch) -> None:
        """One session call for the batch; its answers, or its error, to the requests it holds."""
        rows = len(batch[0])
        self._observer.batched(rows)
        started = time.perf_counter()
        try:
            answers = self._calls.predict(batch)
        except RowsRefused as err:  # some request's values: only that one is refused, the others are scored
            if len(parts) == 1:
                self._finish(parts, None, err)
            else:
                for part in parts:
                    self._score([part], self._stack([part]))
        except Exception as err:  # each caller turns it into a 500 with its request id
            log.error("scoring a batch of %d rows from %d requests failed: %s", rows, len(parts), err)
            self._finish(parts, None, err)
        except BaseException:  # e.g. the worker shutting down: fail the batch's requests, then go
            self._finish(parts, None, ServiceUnavailable("scoring was interrupted; retry", _RETRY))
            raise
        else:
            took = time.perf_counter() - started
            self._observer.session_call(took)
            for job, _, _ in parts:
                job.session_s += took
                job.batch_rows = max(job.batch_rows, rows)
            self._finish(parts, answers, None)

    @staticmethod
    def _stack(parts: list[tuple[_Job, int, int]]) -> Batch:
        """Each input's rows of the parts, stacked; a whole request's own arrays where it is the only part."""
        if len(parts) == 1:
            job, first, count = parts[0]
            return job.arrays if count == job.n_rows else tuple(a[first : first + count] for a in job.arrays)
        slices = [[a[first : first + count] for a in job.arrays] for job, first, count in parts]
        return tuple(np.concatenate(column) for column in zip(*slices, strict=True))

    def _next_batch(self) -> tuple[list[tuple[_Job, int, int]], Batch, list[float]]:
        """Let a short-lived crowd gather, then take the queued rows one session call takes, in arrival order.

        Returns the parts taken, (job, first row, count), the batch (each input's rows of those parts, stacked;
        one request's own arrays where it alone fills the batch), and how long each request starting now waited.
        A batch stops before a request whose rows have another shape (an input with a free dimension).
        """
        with self._lock:
            full = self._calls.rows  # MAX_BATCH_ROWS, fewer while the device is short of memory
            try:
                self._gathering = True
                if self._expected and self._queued_rows < full and self._max_delay_s:
                    gather_until = time.monotonic() + self._max_delay_s
                    while self._expected and self._queued_rows < full:
                        left = gather_until - time.monotonic()
                        if left <= 0:
                            break
                        self._arrived.wait(left)
            finally:
                self._gathering = False
            parts: list[tuple[_Job, int, int]] = []  # (job, first row, count)
            waits: list[float] = []
            filled = 0
            now = time.monotonic()
            while self._queue and filled < full:
                job = self._queue[0]
                if parts and job.shapes != parts[0][0].shapes:
                    break
                if not job.started:
                    job.waited_s = now - job.queued_at
                    waits.append(job.waited_s)
                count = min(full - filled, job.n_rows - job.next_row)
                parts.append((job, job.next_row, count))
                job.next_row += count
                filled += count
                self._queued_rows -= count
                if job.next_row == job.n_rows:
                    self._queue.popleft()
            self._observer.queued(self._queued_rows)
        # Stacking needs no lock: the rows taken are this leader's alone now.
        return parts, self._stack(parts) if parts else (), waits

    def _finish(self, parts: list[tuple[_Job, int, int]], answers: Batch | None, err: Exception | None) -> None:
        offset = 0
        with self._lock:
            for job, first, count in parts:
                job.unscored -= count
                if err is None:
                    if count == job.n_rows:  # the whole request in this batch: its answers are slices, not copies
                        whole = count == len(answers[0])
                        job.scored = answers if whole else [output[offset : offset + count] for output in answers]
                    else:
                        if job.scored is None:
                            job.scored = [np.empty((job.n_rows, *a.shape[1:]), a.dtype) for a in answers]
                        for scored, output in zip(job.scored, answers, strict=True):
                            scored[first : first + count] = output[offset : offset + count]
                    offset += count
                else:
                    job.error = err  # the rest of a failed request is not scored either
                if job.unscored == 0 or err is not None:
                    self._drop(job)

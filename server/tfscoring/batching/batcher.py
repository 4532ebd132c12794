"""Dynamic batching: the rows of concurrent requests in one worker go through one session call.

Gunicorn threads call run() concurrently.  Each call decodes its body, then
hands its rows to the worker's one `Batcher` and waits for their answers.
Batches take rows in arrival order, at most MAX_BATCH_ROWS per session call,
splitting a large request over several calls and filling a call with the rows
of several small ones.

Who scores: one caller at a time, the leader, runs the session calls in its
own thread (there is no scoring thread to hand work to).  A request that finds
the model idle leads at once, so a lone request goes straight through with no
thread switch.  A leader scores until its own rows are done, then hands the
lead to the request at the head of the queue, waking that one thread only.

When to run: at once if no other request is on its way; while other requests
are still being read or decoded (`incoming()`), the leader waits for them up
to MAX_BATCH_DELAY_MS, or until the batch is full.

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
from tfscoring.errors import RowsRefused, ServiceUnavailable
from tfscoring.interface import Batch
from tfscoring.observability import metrics

# The model's run: one array of rows per input in, one per output out, one output row per input row.
Infer = Callable[[Batch], Batch]
_RETRY = {"Retry-After": "1"}


class _Job:
    """One request's rows (of every input), its answers as they come, and the event that wakes its caller."""

    __slots__ = (
        "batch_rows", "caller", "error", "finished", "lead", "n", "next_row", "queued_at", "rows", "scored",
        "session_s", "shapes", "unscored", "waited_s", "wake",
    )  # fmt: skip

    def __init__(self, rows: Batch):
        self.rows = rows
        self.n = len(rows[0])
        self.shapes = [a.shape[1:] for a in rows]  # rows of different shapes (free dimensions) are not stacked
        self.scored: list[np.ndarray] | None = None  # the answers, allocated when the first ones come in
        self.next_row = 0  # first row not yet taken into a batch
        self.unscored = self.n  # rows whose answers are not in yet
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
        infer: Infer,
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
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a gathering leader waits on it
        self._queue: deque[_Job] = deque()
        self._queued_rows = 0  # rows in the queue not yet taken into a batch
        # One item per request inside incoming() (being read or decoded, not yet queued).  A deque's append
        # and pop are thread-safe without the lock, which 16 threads entering and leaving contended for.
        self._incoming: deque[None] = deque()
        self._gathering = False  # a leader waits on _arrived for requests still incoming
        self._led = False  # some caller is the leader
        self._leader: int | None = None  # the leading caller's thread

    @property
    def queued_rows(self) -> int:
        """Rows waiting in the queue (the health probes read it; a stale value by a moment is fine)."""
        return self._queued_rows

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request on its way to the queue, so a batch being formed may wait for it."""
        self._incoming.append(None)
        try:
            yield
        finally:
            self._incoming.pop()
            # The leader sets _gathering before it counts the incoming requests, and this pops before it
            # reads _gathering: either the leader sees one fewer, or this sees it gathering and wakes it.
            if self._gathering:
                with self._lock:
                    self._arrived.notify()

    def predict(self, rows: Batch, stats: object = None) -> Batch:
        """The outputs for `rows` (each input's, one answer row per row), scored together with other callers'
        rows; 503 on overload.  `stats` (the request's record), where given, gets the batch_rows, queue_ms and
        session_ms of its scoring."""
        job = _Job(rows)
        try:  # _enqueue inside: an alarm right after it may have made this job the leader
            self._enqueue(job)
            self._wait_for(job)
        except BaseException:
            with self._lock:  # gone before its answers: no batch waits for it, the lead is passed on
                self._drop(job)
            raise
        if stats is not None:
            stats.batch_rows = job.batch_rows or None
            stats.queue_ms = None if job.waited_s is None else round(job.waited_s * 1e3, 3)
            stats.session_ms = round(job.session_s * 1e3, 3)
        if job.error is not None:
            raise job.error
        return tuple(job.scored)

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
            if self._queued_rows and self._queued_rows + job.n > self._max_queue_rows:
                # An empty queue takes any request, so a request at MAX_REQUEST_ROWS always gets in eventually.
                raise ServiceUnavailable(
                    f"server is busy: {self._queued_rows} rows are waiting to be scored and this request's "
                    f"{job.n} would pass the queue limit of {self._max_queue_rows} rows (MAX_QUEUE_ROWS); "
                    "retry later",
                    {"Retry-After": str(max(1, math.ceil(self._max_wait_s)))},
                )
            self._queue.append(job)
            self._queued_rows += job.n
            metrics.QUEUED_ROWS.set(self._queued_rows)
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
            self._queued_rows -= job.n - job.next_row
            job.next_row = job.n
            metrics.QUEUED_ROWS.set(self._queued_rows)
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
            metrics.QUEUED_ROWS.set(0)

    def _lead(self, job: _Job) -> None:
        """Score batches until this job is finished, then hand the lead on."""
        try:
            with self._lock:
                job.lead = False  # the lead is this thread's now; the finally below passes it on
            while not job.finished:
                parts, batch, waits = self._next_batch()
                for wait in waits:
                    metrics.QUEUE_WAIT_SECONDS.observe(wait)
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
        metrics.BATCH_ROWS.observe(rows)
        started = time.perf_counter()
        try:
            answers = self._infer(batch)
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
            metrics.SESSION_SECONDS.observe(took)
            for job, _, _ in parts:
                job.session_s += took
                job.batch_rows = max(job.batch_rows, rows)
            self._finish(parts, answers, None)

    @staticmethod
    def _stack(parts: list[tuple[_Job, int, int]]) -> Batch:
        """Each input's rows of the parts, stacked; a whole request's own arrays where it is the only part."""
        if len(parts) == 1:
            job, first, count = parts[0]
            return job.rows if count == job.n else tuple(rows[first : first + count] for rows in job.rows)
        slices = [[rows[first : first + count] for rows in job.rows] for job, first, count in parts]
        return tuple(np.concatenate(column) for column in zip(*slices, strict=True))

    def _next_batch(self) -> tuple[list[tuple[_Job, int, int]], Batch, list[float]]:
        """Let a short-lived crowd gather, then take up to MAX_BATCH_ROWS queued rows, in arrival order.

        Returns the parts taken, (job, first row, count), the batch (each input's rows of those parts, stacked;
        one request's own arrays where it alone fills the batch), and how long each request starting now waited.
        A batch stops before a request whose rows have another shape (an input with a free dimension).
        """
        with self._lock:
            try:
                self._gathering = True
                if self._incoming and self._queued_rows < self._max_batch_rows and self._max_delay_s:
                    gather_until = time.monotonic() + self._max_delay_s
                    while self._incoming and self._queued_rows < self._max_batch_rows:
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
            while self._queue and filled < self._max_batch_rows:
                job = self._queue[0]
                if parts and job.shapes != parts[0][0].shapes:
                    break
                if not job.started:
                    job.waited_s = now - job.queued_at
                    waits.append(job.waited_s)
                count = min(self._max_batch_rows - filled, job.n - job.next_row)
                parts.append((job, job.next_row, count))
                job.next_row += count
                filled += count
                self._queued_rows -= count
                if job.next_row == job.n:
                    self._queue.popleft()
            metrics.QUEUED_ROWS.set(self._queued_rows)
        # Stacking needs no lock: the rows taken are this leader's alone now.
        return parts, self._stack(parts) if parts else (), waits

    def _finish(self, parts: list[tuple[_Job, int, int]], answers: Batch | None, err: Exception | None) -> None:
        offset = 0
        with self._lock:
            for job, first, count in parts:
                job.unscored -= count
                if err is None:
                    if count == job.n:  # the whole request in this batch: its answers are slices, not copies
                        whole = count == len(answers[0])
                        job.scored = answers if whole else [output[offset : offset + count] for output in answers]
                    else:
                        if job.scored is None:
                            job.scored = [np.empty((job.n, *a.shape[1:]), a.dtype) for a in answers]
                        for scored, output in zip(job.scored, answers, strict=True):
                            scored[first : first + count] = output[offset : offset + count]
                    offset += count
                else:
                    job.error = err  # the rest of a failed request is not scored either
                if job.unscored == 0 or err is not None:
                    self._drop(job)

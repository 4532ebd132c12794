"""The batcher, in-process on a model in plain numpy: rows of concurrent callers share session calls, each
caller gets its own answers in order and how its rows were batched, large requests are split, batches shrink to
what the device takes after it ran out of memory, and overload is a 503, never a hang."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.support import SETTLE_S, wait_for
from tfscoring.batching.batcher import Batcher
from tfscoring.batching.calls import SessionCalls
from tfscoring.errors import OutOfMemory, RowsRefused, ServiceUnavailable


class RowBatcher(Batcher):
    """The batcher of a one-input, one-output model, fed and answering one array each."""

    def __init__(self, predict, max_batch_rows: int, observer=None, **options):
        calls = SessionCalls(lambda batch: (predict(batch[0]),), max_batch_rows, observer)
        super().__init__(calls, observer=observer, **options)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return super().predict((images,)).result()[0]


class MatrixModel:
    """The how-to's model's shape in plain numpy: 784 numbers a row in, a class id out (the argmax of the row times a
    fixed random matrix), so that each row's answer is its own and the batcher needs no TensorFlow."""

    def __init__(self, seed: int = 0):
        self.weights = np.random.default_rng(seed).standard_normal((784, 10)).astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.argmax(np.asarray(images, np.float32) @ self.weights, axis=1).astype(np.int64)


class RecordedModel:
    """The model's predict, recording each session call's size and thread, optionally held at a gate."""

    def __init__(self, model: MatrixModel):
        self.model = model
        self.calls: list[tuple[int, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append((len(images), threading.current_thread().name))
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        return self.model.predict(images)


@pytest.fixture(scope="module")
def model() -> MatrixModel:
    return MatrixModel()


@pytest.fixture
def recorded(model) -> RecordedModel:
    return RecordedModel(model)


def batcher(recorded: RecordedModel, **overrides) -> Batcher:
    options = {"max_batch_rows": 32, "max_delay_s": 0.002, "max_queue_rows": 10_000, "max_wait_s": 30.0}
    return RowBatcher(recorded.predict, **{**options, **overrides})


def test_concurrent_callers_share_session_calls_and_get_their_own_rows_in_order(recorded, model, t10k):
    images, _ = t10k
    expected = model.predict(images[:3000])
    scoring = batcher(recorded)
    rng = np.random.default_rng(3)
    jobs = [rng.choice(3000, size=int(rng.integers(1, 20)), replace=False) for _ in range(400)]

    def call(picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with scoring.expecting():
            arrays = images[picked]
        return picked, scoring.predict(arrays)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, jobs))

    for picked, answer in results:
        assert answer.tolist() == expected[picked].tolist()
    sizes = [size for size, _ in recorded.calls]
    assert sum(sizes) == sum(len(j) for j in jobs)
    assert max(sizes) <= 32
    assert len(sizes) < len(jobs), "no session call held rows of more than one request"


def test_a_lone_request_is_scored_at_once_in_its_own_thread(recorded, model, t10k):
    images, _ = t10k
    scoring = batcher(recorded, max_delay_s=60.0)  # a request that waited for company would hang here
    assert scoring.predict(images[:5]).tolist() == model.predict(images[:5]).tolist()
    assert recorded.calls == [(5, threading.current_thread().name)]


def test_a_large_request_is_split_into_session_calls_of_at_most_max_batch_rows(recorded, model, t10k):
    images, _ = t10k
    answer = batcher(recorded).predict(images[:100])
    assert answer.tolist() == model.predict(images[:100]).tolist()
    assert [size for size, _ in recorded.calls] == [32, 32, 32, 4]


def start_blocked_leader(scoring: Batcher, recorded: RecordedModel, images: np.ndarray) -> ThreadPoolExecutor:
    """One request in a session call held at the gate: the model is busy, the queue fills behind it."""
    recorded.gate.clear()
    pool = ThreadPoolExecutor(8)
    pool.leader = pool.submit(scoring.predict, images)
    assert recorded.entered.wait(30)
    return pool


def test_a_full_queue_refuses_at_once_with_503_and_retry_after(recorded, model, t10k):
    images, _ = t10k
    scoring = batcher(recorded, max_queue_rows=20)
    pool = start_blocked_leader(scoring, recorded, images[:1])
    queued = [pool.submit(scoring.predict, images[i : i + 10]) for i in (10, 20)]  # 20 rows: the queue is full
    wait_for(lambda: scoring.queued_rows >= 20, SETTLE_S, "20 rows queued behind the leader")

    with pytest.raises(ServiceUnavailable) as refused:
        scoring.predict(images[30:31])
    assert refused.value.status_code == 503
    assert "queue limit of 20 rows (MAX_QUEUE_ROWS)" in refused.value.message
    assert int(refused.value.headers["Retry-After"]) >= 1

    recorded.gate.set()  # nothing accepted is lost: the queued requests are answered
    assert pool.leader.result(30).tolist() == model.predict(images[:1]).tolist()
    assert queued[0].result(30).tolist() == model.predict(images[10:20]).tolist()
    assert queued[1].result(30).tolist() == model.predict(images[20:30]).tolist()
    pool.shutdown()


def test_a_request_not_started_within_max_queue_wait_gets_503_and_the_batcher_goes_on(recorded, model, t10k):
    images, _ = t10k
    scoring = batcher(recorded, max_wait_s=0.3)
    pool = start_blocked_leader(scoring, recorded, images[:1])

    with pytest.raises(ServiceUnavailable, match=r"waited 300 ms in the queue without being scored"):
        scoring.predict(images[1:3])

    recorded.gate.set()
    assert pool.leader.result(30).tolist() == model.predict(images[:1]).tolist()
    assert scoring.predict(images[3:6]).tolist() == model.predict(images[3:6]).tolist()
    assert sum(size for size, _ in recorded.calls) == 4, "the withdrawn rows were scored all the same"
    pool.shutdown()


def test_a_failing_session_call_fails_its_requests_only(model, t10k):
    images, _ = t10k
    failures = iter([RuntimeError("device lost")])

    def flaky_predict(images: np.ndarray) -> np.ndarray:
        error = next(failures, None)
        if error:
            raise error
        return model.predict(images)

    scoring = RowBatcher(flaky_predict, max_batch_rows=32, max_delay_s=0, max_queue_rows=100, max_wait_s=30)
    with pytest.raises(RuntimeError, match="device lost"):
        scoring.predict(images[:2])
    assert scoring.predict(images[:2]).tolist() == model.predict(images[:2]).tolist()


def test_an_interrupted_session_call_fails_its_requests_and_leaves_the_batcher_working(model, t10k):
    """A BaseException (e.g. the worker shutting down) in a batch holding part of a queued request."""
    images, _ = t10k
    calls = []
    second_waiting = threading.Event()

    def interrupted_predict(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        if len(calls) == 1:
            assert second_waiting.wait(30)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return model.predict(images)

    scoring = RowBatcher(interrupted_predict, max_batch_rows=15, max_delay_s=0, max_queue_rows=100, max_wait_s=30)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(scoring.predict, images[:20])  # batches: [0:15], then [15:20] + 10 rows of the second
        wait_for(lambda: scoring.queued_rows >= 5, SETTLE_S, "the first request's last 5 rows queued")
        second = pool.submit(scoring.predict, images[20:40])
        wait_for(lambda: scoring.queued_rows >= 25, SETTLE_S, "the second request's 20 rows queued too")
        second_waiting.set()
        with pytest.raises(KeyboardInterrupt):
            first.result(30)
        with pytest.raises(ServiceUnavailable, match="scoring was interrupted"):
            second.result(30)
    assert scoring.queued_rows == 0
    assert scoring.predict(images[:3]).tolist() == model.predict(images[:3]).tolist()
    assert calls[-1] == 3, "rows of the failed requests were left in the queue"


def test_a_sync_worker_whose_alarm_cut_the_lead_hand_off_short_takes_the_lead_back(model, t10k):
    """SIGALRM (the server's timeout in a sync worker) can land anywhere, even while the lead is handed on."""
    images, _ = t10k
    scoring = RowBatcher(model.predict, max_batch_rows=8, max_delay_s=0, max_queue_rows=100, max_wait_s=0.5)
    fired = []

    def alarm_in_hand_off(frame, event, arg):
        if event == "line" and not fired:
            fired.append(frame.f_lineno)
            raise TimeoutError("scoring timeout")  # what azmlinfsrv's SIGALRM handler raises
        return alarm_in_hand_off

    sys.settrace(lambda frame, event, arg: alarm_in_hand_off if frame.f_code.co_name == "_pass_lead" else None)
    try:
        with pytest.raises(TimeoutError):
            scoring.predict(images[:3])
    finally:
        sys.settrace(None)
    assert fired, "the alarm never landed in the hand-off"
    assert scoring.predict(images[3:6]).tolist() == model.predict(images[3:6]).tolist()  # not a 503


def test_a_gathering_leader_is_woken_when_the_last_expected_request_leaves(recorded, t10k):
    # The request that leaves expecting() without being queued (its body failed to decode, say) wakes the
    # leader waiting for it; without that, the leader waits out MAX_BATCH_DELAY_MS (here a minute).
    images, _ = t10k
    scoring = batcher(recorded, max_delay_s=60.0)
    expected, leave = threading.Event(), threading.Event()

    def expected_then_refused():
        with scoring.expecting():
            expected.set()
            assert leave.wait(30)

    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(expected_then_refused)
        assert expected.wait(10), "a request expected"
        leader = pool.submit(scoring.predict, images[:2])
        wait_for(lambda: scoring.gathering, 10, "the leader gathering")
        leave.set()
        assert leader.result(20).tolist() == recorded.model.predict(images[:2]).tolist()
        other.result(5)


class GatedInputs:
    """A model of two inputs and two outputs in plain numpy (sums of each row), recording each call's inputs and
    held at a gate; a row whose id is negative makes the call fail as TensorFlow's InvalidArgumentError does."""

    def __init__(self):
        self.calls: list[tuple[np.ndarray, ...]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        self.calls.append(batch)
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        values, ids = batch
        if (ids < 0).any():
            raise RowsRefused("indices[0] = -1 is not in [0, 3)")
        return values.reshape(len(values), -1).sum(axis=1), ids * 10


def gated_batcher(model: GatedInputs) -> Batcher:
    return Batcher(SessionCalls(model, 64), max_delay_s=0, max_queue_rows=1000, max_wait_s=30)


def queue_behind_a_held_call(scoring: Batcher, model: GatedInputs, first: tuple, then: list[tuple]) -> list:
    """`first` in a session call held at the gate, `then` queued behind it (all taken by the next batch); the
    futures of their outputs."""
    model.gate.clear()
    pool = ThreadPoolExecutor(len(then) + 1)
    futures = [pool.submit(lambda arrays: scoring.predict(arrays).result(), first)]
    assert model.entered.wait(30)
    futures += [pool.submit(lambda arrays: scoring.predict(arrays).result(), arrays) for arrays in then]
    n_rows = sum(len(arrays[0]) for arrays in then)
    wait_for(lambda: scoring.queued_rows >= n_rows, SETTLE_S, "the requests queued")
    model.gate.set()
    pool.shutdown(wait=False)
    return futures


def test_requests_of_several_inputs_are_stacked_input_by_input_and_each_gets_its_own_outputs():
    model = GatedInputs()
    scoring = gated_batcher(model)
    requests_ = [(np.full((n, 2, 3), n, np.float32), np.arange(n, dtype=np.int64) + n) for n in (1, 2, 3, 4)]
    futures = queue_behind_a_held_call(scoring, model, requests_[0], requests_[1:])
    for (_, ids), future in zip(requests_, futures, strict=True):
        sums, tens = future.result(30)
        assert sums.tolist() == [6.0 * len(ids)] * len(ids) and tens.tolist() == (ids * 10).tolist()
    assert [len(call[0]) for call in model.calls] == [1, 9]  # the three queued requests in one session call
    assert model.calls[1][0].shape == (9, 2, 3) and model.calls[1][1].shape == (9,)


def test_a_batch_stops_at_a_request_whose_rows_have_another_shape():
    """An input with a free dimension: rows of different widths cannot be stacked into one array."""
    model = GatedInputs()
    scoring = gated_batcher(model)
    wide, narrow = np.ones((2, 5), np.float32), np.ones((2, 3), np.float32)
    ids = np.zeros(2, np.int64)
    futures = queue_behind_a_held_call(scoring, model, (wide, ids), [(wide, ids), (narrow, ids), (narrow, ids)])
    assert [f.result(30)[0].tolist() for f in futures] == [[5.0, 5.0], [5.0, 5.0], [3.0, 3.0], [3.0, 3.0]]
    assert [call[0].shape for call in model.calls] == [(2, 5), (2, 5), (4, 3)]


def test_a_request_the_model_refuses_fails_alone_and_the_requests_batched_with_it_are_answered():
    model = GatedInputs()
    scoring = gated_batcher(model)
    good, bad = (np.ones((2, 2), np.float32), np.array([1, 2])), (np.ones((1, 2), np.float32), np.array([-1]))
    futures = queue_behind_a_held_call(scoring, model, good, [good, bad, good])
    with pytest.raises(RowsRefused, match="the model refused this request's values: indices"):
        futures[2].result(30)
    for future in (futures[0], futures[1], futures[3]):
        assert future.result(30)[1].tolist() == [10, 20]
    assert [len(call[0]) for call in model.calls] == [2, 5, 2, 1, 2]  # the shared batch, then each on its own


class RecordingObserver:
    """A BatchObserver that keeps what it is told."""

    def __init__(self):
        self.queued_rows: list[int] = []
        self.waits: list[float] = []
        self.batches: list[int] = []
        self.session_calls: list[float] = []
        self.splits = 0

    def queued(self, rows: int) -> None:
        self.queued_rows.append(rows)

    def waited(self, seconds: float) -> None:
        self.waits.append(seconds)

    def batched(self, rows: int) -> None:
        self.batches.append(rows)

    def session_call(self, seconds: float) -> None:
        self.session_calls.append(seconds)

    def split(self) -> None:
        self.splits += 1


def test_each_request_gets_how_its_rows_were_batched_with_its_outputs(model, t10k):
    images, _ = t10k
    calls = SessionCalls(lambda batch: (model.predict(batch[0]),), 32)
    prediction = Batcher(calls, max_delay_s=0, max_queue_rows=100, max_wait_s=30).predict((images[:40],))
    assert prediction.result()[0].tolist() == model.predict(images[:40]).tolist()
    assert prediction.stats.batch_rows == 32  # the larger of its two batches, 32 and 8 rows
    assert prediction.stats.queue_ms >= 0 and prediction.stats.session_ms > 0


def test_a_request_whose_scoring_failed_gets_its_error_and_how_it_waited(t10k):
    def refusing(batch: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        raise RowsRefused("indices[0] = -1 is not in [0, 3)")

    prediction = Batcher(SessionCalls(refusing, 32), max_delay_s=0, max_queue_rows=100, max_wait_s=30).predict(
        (t10k[0][:3],)
    )
    with pytest.raises(RowsRefused, match="the model refused this request's values"):
        prediction.result()
    assert prediction.stats.batch_rows is None  # in no batch that was scored
    assert prediction.stats.queue_ms >= 0 and prediction.stats.session_ms == 0


def test_the_observer_sees_the_queue_each_wait_each_batch_and_each_session_call(model, t10k):
    images, _ = t10k
    observer = RecordingObserver()
    scoring = RowBatcher(
        model.predict, max_batch_rows=32, observer=observer, max_delay_s=0, max_queue_rows=100, max_wait_s=30
    )
    scoring.predict(images[:40])
    assert observer.batches == [32, 8]
    assert len(observer.session_calls) == 2
    assert len(observer.waits) == 1  # a request waits once: for its first batch
    assert observer.queued_rows[0] == 40 and observer.queued_rows[-1] == 0


def test_after_a_session_call_ran_out_of_memory_batches_are_filled_to_the_size_that_fitted(model, t10k):
    images, _ = t10k
    sizes = []

    def small_device(batch: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:  # room for 20 rows
        sizes.append(len(batch[0]))
        if len(batch[0]) > 20:
            raise OutOfMemory(f"OOM when allocating tensor with shape[{len(batch[0])},300]")
        return (model.predict(batch[0]),)

    observer = RecordingObserver()
    calls = SessionCalls(small_device, 64, observer)
    scoring = Batcher(calls, max_delay_s=0, max_queue_rows=1000, max_wait_s=30, observer=observer)
    assert scoring.predict((images[:64],)).result()[0].tolist() == model.predict(images[:64]).tolist()
    assert sizes[:3] == [64, 32, 16] and observer.splits == 2  # halved until the halves fit

    sizes.clear()
    observer.batches.clear()
    assert scoring.predict((images[:100],)).result()[0].tolist() == model.predict(images[:100]).tolist()
    assert max(sizes) == 16  # no call fails first any more
    assert observer.batches == sizes  # and each batch is one session call

"""Warm-up with real requests (tfscoring/warmup.py): warmup.jsonl in the served version folder, one request body a
line in any JSON form /score takes, decoded and scored as /score would at start-up; bounded; a line that fails stops
start-up naming the file, the line and why.  Served: tests/http/test_model_labels.py."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.support import rows_interface
from tfscoring import warmup
from tfscoring.errors import RowsRefused, StartupError
from tfscoring.protocols.limits import Limits

WIDTH = 4
INTERFACE = rows_interface(WIDTH)  # one float32 input "x" of 4 values a row, one output "y" of 10
WEIGHTS = np.arange(WIDTH * 10, dtype=np.float32).reshape(WIDTH, 10)


class Scored:
    """The worker's session calls, as warm-up sees them: arrays in, outputs out; what it was given, kept."""

    def __init__(self, fail: Exception | None = None):
        self.calls: list[np.ndarray] = []
        self.fail = fail

    def __call__(self, arrays):
        self.calls.append(arrays[0])
        if self.fail is not None:
            raise self.fail
        return (arrays[0] @ WEIGHTS,)


def write(folder, *lines: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (folder / warmup.FILE_NAME).write_text(text)


def run(folder, predict, max_requests=100, max_bytes=1 << 20, limits=None):
    return warmup.run(folder, INTERFACE, limits or Limits(), predict, max_requests, max_bytes)


def test_each_line_is_a_request_in_any_json_form_scored_in_order(tmp_path):
    write(
        tmp_path,
        {"data": [[1, 2, 3, 4]]},  # the how-to's rows
        "",  # blank lines are skipped, and counted in the line numbers
        {"instances": [[0, 0, 0, 1], [1, 0, 0, 0]]},  # TF Serving's rows
        {"inputs": {"x": [[2, 2, 2, 2]]}},  # TF Serving's columns
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 1, 0, 1]}]},  # Open Inference
    )
    scored = Scored()
    said = run(tmp_path, scored)
    assert re.fullmatch(rf"4 requests \(5 rows\) from {re.escape(str(tmp_path / 'warmup.jsonl'))} in \d+ ms", said)
    assert [call.tolist() for call in scored.calls] == [
        [[1, 2, 3, 4]],
        [[0, 0, 0, 1], [1, 0, 0, 0]],
        [[2, 2, 2, 2]],
        [[0, 1, 0, 1]],
    ]
    assert all(call.dtype == np.float32 for call in scored.calls)  # decoded as a request is: the input's dtype


def test_without_a_file_nothing_is_scored_and_the_log_says_so(tmp_path):
    scored = Scored()
    assert run(tmp_path, scored) == f"none (no warmup.jsonl in {tmp_path})"
    assert scored.calls == []


def test_tf_servings_own_warm_up_file_is_named_as_not_read(tmp_path):
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"\x00" * 16)
    assert run(tmp_path, Scored()) == (
        "none (assets.extra/tf_serving_warmup_requests, TF Serving's format, is not read: write warmup.jsonl instead)"
    )


def test_warmup_max_requests_0_leaves_the_file_unread(tmp_path):
    write(tmp_path, "not json at all")
    scored = Scored()
    assert (
        run(tmp_path, scored, max_requests=0) == f"off (WARMUP_MAX_REQUESTS=0: {tmp_path / 'warmup.jsonl'} is not read)"
    )
    assert scored.calls == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"data": [[1, 2]]}', r"refused \(400\): .*4"),  # the wrong width
        ("{not json", r"refused \(400\): "),
        ('{"neither": 1}', r"refused \(400\): "),
        (json.dumps({"data": [[0] * WIDTH] * 3}), r"refused \(413\): .*MAX_REQUEST_ROWS"),  # limits as a request's
    ],
)
def test_a_line_the_codec_refuses_stops_start_up_naming_the_file_and_line(tmp_path, line, reason):
    write(tmp_path, {"data": [[1, 2, 3, 4]]}, line)
    with pytest.raises(StartupError, match=rf"^warm-up file {re.escape(str(tmp_path))}/warmup.jsonl, line 2: {reason}"):
        run(tmp_path, Scored(), limits=Limits(max_rows=2))


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (RowsRefused("indices[0] = 12 is not in [0, 10)"), r"scoring failed \(400\): the model refused .*indices"),
        (RuntimeError("output 'y' has shape (3,) for 1 input rows\nmore"), r"scoring failed: RuntimeError: output 'y'"),
    ],
)
def test_a_session_call_that_fails_stops_start_up_in_one_line(tmp_path, failure, reason):
    write(tmp_path, {"data": [[1, 2, 3, 4]]})
    with pytest.raises(StartupError, match=rf"warm-up file .*warmup.jsonl, line 1: {reason}") as raised:
        run(tmp_path, Scored(fail=failure))
    assert "\n" not in str(raised.value)


def test_a_line_longer_than_a_request_may_be_stops_start_up_unread(tmp_path):
    body = json.dumps({"data": [[1, 2, 3, 4]]}).ljust(30)  # exactly the limit, its newline aside
    write(tmp_path, body, body + " ")
    scored = Scored()
    with pytest.raises(StartupError, match=r"line 2: longer than MAX_REQUEST_BYTES \(30 bytes\)"):
        run(tmp_path, scored, max_bytes=30)
    assert len(scored.calls) == 1  # the first line, at the limit, was a request


def test_more_requests_than_warmup_max_requests_stops_start_up(tmp_path):
    write(tmp_path, *[{"data": [[1, 2, 3, 4]]}] * 4)
    with pytest.raises(StartupError, match=r"more than WARMUP_MAX_REQUESTS \(3\) requests; from line 4 on"):
        run(tmp_path, Scored(), max_requests=3)


def test_a_warm_up_path_that_is_not_a_file_stops_start_up(tmp_path):
    (tmp_path / "warmup.jsonl").mkdir()
    with pytest.raises(StartupError, match=r"warm-up file .*warmup.jsonl: not a file"):
        run(tmp_path, Scored())


def test_a_last_line_without_a_newline_is_a_request_too(tmp_path):
    (tmp_path / "warmup.jsonl").write_text('{"data": [[1, 2, 3, 4]]}\n{"data": [[4, 3, 2, 1]]}')
    assert [number for number, _ in warmup.lines(tmp_path / "warmup.jsonl", 10, 100)] == [1, 2]

"""The request log's line, written straight to stdout: whole, bounded, never failing a request."""

from __future__ import annotations

import fcntl
import json
import os
import threading

import pytest

from tfscoring.observability import requestlog
from tfscoring.observability.metrics import Metrics
from tfscoring.observability.record import RequestRecord
from tfscoring.observability.requestlog import RequestLog


@pytest.fixture
def stdout_pipe():
    """A pipe for the log's stdout: yields (read end, write end)."""
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


def read_lines(fd: int, count: int) -> list[dict]:
    data = b""
    while data.count(b"\n") < count:
        data += os.read(fd, 1 << 16)
    return [json.loads(line) for line in data.splitlines()]


def test_a_clients_long_content_type_is_cut_so_that_the_line_stays_under_pipe_buf(stdout_pipe):
    # A line over PIPE_BUF (4 KiB) may be split and interleaved with other workers' lines in a pipe.
    read_end, write_end = stdout_pipe
    content_type = "application/" + "x" * 7000
    record = RequestRecord(
        path="/score", request_id="r" * 5000, content_type=content_type, status=400, error="e" * 5000, seconds=0.001
    )
    RequestLog("all", Metrics().log_lines_dropped, stdout=write_end).write(record)
    (line,) = read_lines(read_end, 1)
    assert len(json.dumps(line)) < 4096
    assert line["content_type"] == content_type[: requestlog.FIELD_CHARS]
    assert line["request_id"] == "r" * requestlog.FIELD_CHARS and line["status"] == 400


def test_lines_written_from_many_threads_arrive_whole(stdout_pipe):
    read_end, write_end = stdout_pipe
    log = RequestLog("all", Metrics().log_lines_dropped, stdout=write_end)
    lines = [json.dumps({"thread": t, "n": n, "pad": "p" * 3000}).encode() + b"\n" for t in range(8) for n in range(50)]
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(read_lines(read_end, len(lines))))
    reader.start()
    writers = [
        threading.Thread(target=lambda t=t: [log.write_line(x) for x in lines[t * 50 : (t + 1) * 50]]) for t in range(8)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    reader.join(30)
    assert sorted((x["thread"], x["n"]) for x in got) == [(t, n) for t in range(8) for n in range(50)]


def test_a_stdout_that_takes_nothing_more_drops_the_line_and_counts_it(stdout_pipe):
    _, write_end = stdout_pipe
    fcntl.fcntl(write_end, fcntl.F_SETFL, fcntl.fcntl(write_end, fcntl.F_GETFL) | os.O_NONBLOCK)
    while True:  # fill the pipe: nobody reads it
        try:
            os.write(write_end, b"x" * 4096)
        except BlockingIOError:
            break
    dropped = Metrics().log_lines_dropped
    log = RequestLog("all", dropped, stdout=write_end, stuck_s=0.01)
    log.write_line(b'{"event": "request"}\n')  # returns: the request is not held up by its log line
    assert dropped._value.get() == 1


def test_the_line_names_the_model_and_version_that_answered_cut_like_every_text_field(stdout_pipe):
    read_end, write_end = stdout_pipe
    log = RequestLog("all", Metrics().log_lines_dropped, stdout=write_end)
    log.write(RequestRecord(path="/score", model="tf-dnn-mnist", model_version="2", status=200, rows=1))
    log.write(RequestRecord(path="/score", model="n" * 5000, model_version="7", status=200))  # a folder's name
    served, long_name = read_lines(read_end, 2)
    assert (served["model"], served["model_version"]) == ("tf-dnn-mnist", "2")
    assert long_name["model"] == "n" * requestlog.FIELD_CHARS and long_name["model_version"] == "7"

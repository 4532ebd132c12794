"""The request log's line, written straight to stdout: whole, bounded, never failing a request."""

from __future__ import annotations

import fcntl
import json
import os
import threading

import flask
import pytest

from tfscoring.observability import metrics, requestlog


@pytest.fixture
def stdout_pipe(monkeypatch):
    """The log's stdout is the write end of a pipe; yields its read end."""
    read_end, write_end = os.pipe()
    monkeypatch.setattr(requestlog, "_STDOUT", write_end)
    yield read_end
    os.close(read_end)
    os.close(write_end)


def read_lines(fd: int, count: int) -> list[dict]:
    data = b""
    while data.count(b"\n") < count:
        data += os.read(fd, 1 << 16)
    return [json.loads(line) for line in data.splitlines()]


def test_a_clients_long_content_type_is_cut_so_that_the_line_stays_under_pipe_buf(stdout_pipe):
    # A line over PIPE_BUF (4 KiB) may be split and interleaved with other workers' lines in a pipe.
    content_type = "application/" + "x" * 7000
    with flask.Flask(__name__).test_request_context("/score", method="POST", content_type=content_type, data=b"1"):
        flask.g.request_id = "r" * 5000
        requestlog._log_line(flask.request, requestlog.RequestRecord(status=400, error="e" * 5000), 0.001)
    (line,) = read_lines(stdout_pipe, 1)
    assert len(json.dumps(line)) < 4096
    assert line["content_type"] == content_type[: requestlog.FIELD_CHARS]
    assert line["request_id"] == "r" * requestlog.FIELD_CHARS and line["status"] == 400


def test_lines_written_from_many_threads_arrive_whole(stdout_pipe):
    lines = [json.dumps({"thread": t, "n": n, "pad": "p" * 3000}).encode() + b"\n" for t in range(8) for n in range(50)]
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(read_lines(stdout_pipe, len(lines))))
    reader.start()
    writers = [
        threading.Thread(target=lambda t=t: [requestlog._write(x) for x in lines[t * 50 : (t + 1) * 50]])
        for t in range(8)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    reader.join(30)
    assert sorted((x["thread"], x["n"]) for x in got) == [(t, n) for t in range(8) for n in range(50)]


def test_a_stdout_that_takes_nothing_more_drops_the_line_and_counts_it(stdout_pipe, monkeypatch):
    write_end = requestlog._STDOUT
    fcntl.fcntl(write_end, fcntl.F_SETFL, fcntl.fcntl(write_end, fcntl.F_GETFL) | os.O_NONBLOCK)
    while True:  # fill the pipe: nobody reads it
        try:
            os.write(write_end, b"x" * 4096)
        except BlockingIOError:
            break
    monkeypatch.setattr(requestlog, "_STUCK_S", 0.01)
    before = metrics.LOG_LINES_DROPPED._value.get()
    requestlog._write(b'{"event": "request"}\n')  # returns: the request is not held up by its log line
    assert metrics.LOG_LINES_DROPPED._value.get() == before + 1

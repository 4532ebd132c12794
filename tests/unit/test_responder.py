"""The small HTTP responder of the metrics port and the probes (responder.py), on a loopback port of its own:
one request per connection, bounded connections, a deadline for each, a bounded head (the metrics port as a server
serves it: tests/http/test_metrics_port.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from tfscoring.responder import Answer, Request, Responder

HELLO = Answer(200, (("Content-Type", "text/plain"),), b"hello\n")


def answer(request: Request) -> Answer:
    return HELLO if request.path == "/hello" else Answer(404, body=b"no\n")


@contextlib.contextmanager
def serving(**options):
    """A Responder on 127.0.0.1, answering from a thread of its own; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    responder = Responder(answer, **{"max_connections": 4, "deadline_s": 5.0, "max_head": 1024, **options})
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        server = await responder.start(listener)
        await stop.wait()
        server.close()
        connections = asyncio.all_tasks() - {asyncio.current_task()}  # those the test left open: closed here
        for connection in connections:
            connection.cancel()
        await asyncio.gather(*connections, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def exchange(port: int, request: bytes) -> bytes:
    """What the responder sends back for `request`, up to its closing the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def test_a_request_is_answered_with_its_length_and_the_connection_closed():
    with serving() as port:
        received = exchange(port, b"GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert received == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n"
    )


def test_head_has_the_headers_of_get_and_no_body():
    with serving() as port:
        received = exchange(port, b"HEAD /hello HTTP/1.1\r\n\r\n")
    assert received.endswith(b"Content-Length: 6\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize(
    ("request_line", "status"),
    [(b"GET /hello", b"400 Bad Request"), (b"GET  /hello HTTP/1.1", b"400 Bad Request"), (b"GET / HTTP/1.1", b"404")],
)
def test_a_request_line_that_is_not_method_target_version_is_refused(request_line, status):
    with serving() as port:
        received = exchange(port, request_line + b"\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 " + status)


def test_a_head_over_the_limit_is_refused_in_plain_text():
    with serving(max_head=1024) as port:
        received = exchange(port, b"GET /hello HTTP/1.1\r\nX-Padding: " + b"x" * 2000 + b"\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert received.endswith(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\n"
                             b"Connection: close\r\n\r\nRequest Header Fields Too Large\n")  # fmt: skip


def test_the_refusals_words_are_the_callers():
    with serving(max_head=64, refusal=lambda status: Answer(status, body=b"{}\n")) as port:
        received = exchange(port, b"GET /hello HTTP/1.1\r\nX-Padding: " + b"x" * 100 + b"\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 431 ") and received.endswith(b"\r\n\r\n{}\n")


def test_a_silent_connection_is_closed_after_the_deadline():
    with serving(deadline_s=0.2) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(1) == b""  # closed by the responder; a socket.timeout here means it never was
        assert time.monotonic() - started < 5


def test_beyond_the_bound_the_connection_that_waited_longest_is_closed_and_a_request_still_answered():
    with serving(max_connections=4, deadline_s=30) as port, contextlib.ExitStack() as held:
        silent = [held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10)) for _ in range(4)]
        time.sleep(0.2)  # the responder has seen all four
        assert exchange(port, b"GET /hello HTTP/1.1\r\n\r\n").endswith(b"hello\n")
        assert silent[0].recv(1) == b""  # the oldest, closed to make room

"""A small HTTP/1.1 responder for the answers served beside the scoring path: the metrics port and the probes.

One request per connection, answered and closed (`Connection: close`), all on one asyncio loop, so that idle
or slow clients cannot pile up threads or file descriptors in the process that serves:

- at most `max_connections` are open at once: one beyond that closes the connection that has waited longest
  for its request (so a flood of idle connections cannot lock a scraper out), or is closed itself when every
  open one is being answered; None leaves the bound to whoever connects (nginx, for the probes);
- each connection is closed after `deadline_s`, whatever state it is in: reading its request, or a client that
  does not read the answer;
- a request head (request line and headers) longer than `max_head` is answered 431, a request line that is not
  `<method> <target> <version>` 400, each in the words `refusal` gives them;
- HEAD is answered with the headers GET would have, and no body.

It reads the head only: none of these answers takes a request body.  Imports nothing but the standard library:
the supervisor, which must not import Flask or TensorFlow, uses it too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # the target without its query


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def plain_refusal(status: int, *headers: tuple[str, str]) -> Answer:
    """An error in plain text, its reason phrase: `headers` first, then its Content-Type."""
    headers = (*headers, ("Content-Type", "text/plain; charset=utf-8"))
    return Answer(status, headers, f"{REASONS[status]}\n".encode())


class Responder:
    """Answers each request with `answer(request)`; the refusals of its own (400, 431) with `refusal(status)`."""

    def __init__(
        self,
        answer: Callable[[Request], Answer],
        *,
        max_connections: int | None,
        deadline_s: float,
        max_head: int,
        refusal: Callable[[int], Answer] = plain_refusal,
    ):
        self._answer = answer
        self._refusal = refusal
        self._max_connections = max_connections
        self._deadline_s = deadline_s
        self._max_head = max_head
        self._open: set[asyncio.StreamWriter] = set()
        self._reading: dict[asyncio.StreamWriter, None] = {}  # still reading their request, oldest first

    async def start(self, listener: socket.socket) -> asyncio.Server:
        """Answer on `listener` (TCP or Unix), bound and listening, from the running loop."""
        return await asyncio.start_server(self._connection, sock=listener, limit=self._max_head)

    async def serve_forever(self, listener: socket.socket) -> None:
        server = await self.start(listener)
        await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._max_connections is not None and len(self._open) >= self._max_connections:
            if not self._reading:
                writer.transport.abort()
                return
            oldest = next(iter(self._reading))
            self._forget(oldest)
            oldest.transport.abort()
        self._open.add(writer)
        self._reading[writer] = None
        try:
            await asyncio.wait_for(self._exchange(reader, writer), self._deadline_s)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
            pass  # a silent or slow client, or one that went away
        finally:
            self._forget(writer)
            writer.transport.abort()  # no-op once closed; drops what a client that stopped reading left unsent

    def _forget(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        self._reading.pop(writer, None)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # The whole head: closing with bytes unread would reset the connection under the client's feet.
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            head = None
        self._reading.pop(writer, None)
        writer.write(self._respond(head))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    def _respond(self, head: bytes | None) -> bytes:
        if head is None:
            return _encode(self._refusal(431))
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(request_line) != 3:
            return _encode(self._refusal(400))
        method, target, _ = request_line
        return _encode(self._answer(Request(method, target.split("?", 1)[0])), head_only=method == "HEAD")


def _encode(answer: Answer, head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {answer.status} {REASONS[answer.status]}", *(f"{k}: {v}" for k, v in answer.headers)]
    lines += [f"Content-Length: {len(answer.body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head_only else answer.body)

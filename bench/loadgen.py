"""A pure-Python HTTP/1.1 load generator: keep-alive connections posting one body for a fixed time.

    result = loadgen.run("http://127.0.0.1:5001/score", body, "application/json", concurrency=16, seconds=3)

For machines without wrk (a GPU host's own Python, say).  Each connection sends a
request, reads the whole answer (Content-Length, or until close) and sends the
next; latencies are taken per request.  One asyncio loop is about one core's
worth of requests, so large concurrencies are spread over a few processes
(started with spawn, so the caller's threads and CUDA state stay out).  Only the standard library.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

CONNECTIONS_PER_PROCESS = 8
MAX_PROCESSES = 4


@dataclass(frozen=True)
class Result:
    requests: int  # answered with 2xx
    errors: int  # answers other than 2xx and 503, and broken connections or timeouts
    shed: int  # 503 answers: the server refused the request for want of room (its overload policy)
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(url: str, body: bytes, content_type: str, concurrency: int, seconds: float, timeout_s: float = 30.0) -> Result:
    """Post `body` to `url` on `concurrency` connections for `seconds`; counts and latency percentiles."""
    processes = max(1, min(MAX_PROCESSES, math.ceil(concurrency / CONNECTIONS_PER_PROCESS), os.cpu_count() or 1))
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    job = (url, body, content_type, seconds, timeout_s)
    if processes == 1:
        parts = [_one_process(*job, shares[0])]
    else:
        # spawn, not fork: the caller may run threads (an NVML sampler, TensorFlow's pools under pytest).
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            parts = pool.starmap(_one_process, [(*job, share) for share in shares])
    latencies = sorted(latency for part in parts for latency in part[0])
    return Result(
        requests=len(latencies),
        errors=sum(part[1] for part in parts),
        shed=sum(part[3] for part in parts),
        seconds=max(part[2] for part in parts),
        p50_ms=percentile(latencies, 0.50) * 1e3,
        p99_ms=percentile(latencies, 0.99) * 1e3,
    )


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value at or above a share q of the values."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _one_process(
    url: str, body: bytes, content_type: str, seconds: float, timeout_s: float, connections: int
) -> tuple[list[float], int, float, int]:
    return asyncio.run(_drive(url, body, content_type, seconds, timeout_s, connections))


async def _drive(
    url: str, body: bytes, content_type: str, seconds: float, timeout_s: float, connections: int
) -> tuple[list[float], int, float, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = [0]
    shed = [0]
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        reader = writer = None
        while time.perf_counter() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
                sent = time.perf_counter()
                writer.write(request)
                status, keep_alive = await asyncio.wait_for(_read_response(reader), timeout_s)
                latencies.append(time.perf_counter() - sent)
                if not 200 <= status < 300:
                    latencies.pop()
                    if status == 503:
                        shed[0] += 1
                    else:
                        errors[0] += 1
                if not keep_alive:
                    writer.close()
                    writer = None
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                errors[0] += 1
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, errors[0], time.perf_counter() - started, shed[0]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status_text = lines[0].split(" ", 2)[:2]
    status = int(status_text)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes it unless told to keep it.
    keep_alive = (
        headers.get("connection") == "keep-alive" if version == "HTTP/1.0" else headers.get("connection") != "close"
    )
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        keep_alive = False
    return status, keep_alive

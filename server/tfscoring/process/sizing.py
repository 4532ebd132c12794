"""Worker, thread and TensorFlow thread counts that fit the machine, each overridable.

The reasoning, measured on a 2-core machine and kept for GPUs:

- One worker process per usable core, at most MAX_CPU_WORKERS, with or without
  a GPU.  A worker's Python (the HTTP server, decoding) is bound by the GIL and
  serves about 600-1,000 1-row requests a second: on 2 cores, 2 workers served
  twice the 1-row requests of one.  With this model the GPU is far from busy,
  so one worker per GPU would leave every other core idle.  Workers share the
  GPUs round-robin (devices.py), each with its own session and memory growth
  on, so a GPU holds one CUDA context per worker (about 600 MiB each, measured on an H100).  The
  cap, and the memory cap below, keep memory in check on large hosts (each
  worker holds its own TensorFlow runtime).
- THREADS gunicorn threads per worker feed its batcher: while one batch is
  scored (TensorFlow releases the GIL), the others read and decode the next
  requests.  16 keeps a GPU or a few cores fed with 1-row requests.
- TensorFlow's own thread pool (intra-op threads) gets the worker's share of
  the cores, so that WORKER_COUNT sessions do not each spread over every core.

Containers: the cores counted are those the process may use (affinity and the
cgroup CPU quota of a Kubernetes limit), not the node's.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

THREADS_PER_WORKER = 16
MAX_CPU_WORKERS = 8
# Memory of one worker before any request: Python, TensorFlow's runtime and the model (about 600 MiB measured).
WORKER_BASE_BYTES = 768 * 1024 * 1024
# Share of the container's memory that the workers may fill; the rest is headroom for the allocator and nginx.
MEMORY_SHARE = 0.75


@dataclass(frozen=True)
class ServerSize:
    workers: int
    threads: int

    def describe(self) -> str:
        return f"{self.workers} worker(s) x {self.threads} threads"


def default_size(cpus: int, memory: int | None = None, max_request_bytes: int = 64 << 20) -> ServerSize:
    """A worker per core (GPUs or not), no more than `memory` holds: each needs its base and room for one
    maximum-size request (its smallest in-flight budget), so that the budget keeps the sum inside."""
    workers = min(cpus, MAX_CPU_WORKERS)
    if memory is not None:
        fits = int(MEMORY_SHARE * memory // (WORKER_BASE_BYTES + LARGEST_REQUEST_WEIGHT * max_request_bytes))
        workers = max(1, min(workers, fits))
    return ServerSize(workers, THREADS_PER_WORKER)


def intra_op_threads(cpus: int, workers: int) -> int:
    return max(1, cpus // max(1, workers))


def inflight_bytes_per_worker(memory: int, workers: int, max_request_bytes: int) -> int:
    """Each worker's in-flight budget: its share of MEMORY_SHARE of `memory` once every worker's base is paid,
    never less than one largest request weighs (LARGEST_REQUEST_WEIGHT x max_request_bytes), so that one always
    fits."""
    spare = MEMORY_SHARE * memory - workers * WORKER_BASE_BYTES
    return max(int(spare / max(1, workers)), LARGEST_REQUEST_WEIGHT * max_request_bytes)


# The most one request reserves at its peak, per byte of MAX_REQUEST_BYTES, with the default limits
# (bench/results/request-memory.md): a body of empty objects just under the count of values, 680 MiB (parsed, then
# refused); a 59 MiB JSON body of long floats 484 MiB; a 4096 x 4096 WebP 385 MiB.  Each worker's memory is sized
# for one such request.  (What a request reserves before its body is read is its codec's first weight, e.g.
# protocols/jsonbounds.py's JSON_WEIGHT.)
LARGEST_REQUEST_WEIGHT = 11


def memory_limit() -> int:
    """Bytes this process may use: the cgroup's memory limit (a Kubernetes limit), else the machine's memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # v2 writes "max" for no limit, v1 a number above the machine's memory
            return min(int(text), physical)
    return physical


def usable_cpus() -> int:
    """Cores this process may run on, lowered to a cgroup CPU quota when one is set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def visible_gpus(masked: str | None) -> int:
    """NVIDIA GPUs this process can use, found without starting CUDA (the workers fork after this); `masked`:
    CUDA_VISIBLE_DEVICES (None: unset)."""
    devices = [p for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    if masked is not None:
        wanted = [d for d in masked.split(",") if d.strip() and d.strip() != "-1"]
        return min(len(wanted), len(devices)) if devices else 0
    return len(devices)


def _cgroup_cpu_quota() -> float | None:
    v2 = Path("/sys/fs/cgroup/cpu.max")  # "max 100000" or "150000 100000"
    if v2.is_file():
        quota, _, period = v2.read_text().partition(" ")
        return int(quota) / int(period) if quota != "max" else None
    v1_quota, v1_period = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if v1_quota.is_file() and v1_period.is_file():
        quota_us = int(v1_quota.read_text())
        return quota_us / int(v1_period.read_text()) if quota_us > 0 else None
    return None

"""make soak: minutes of steady load on the real server, counting every error and watching worker memory.

    python -m bench.soak --duration 300 --concurrency 64 --model-dir models/tf-dnn-mnist/1 [--url URL]

Unless --url is given, the server is started as `make serve` starts it: server/serve.py, which sizes
WORKER_COUNT and the gunicorn threads to this machine, then execs azmlinfsrv (on a free loopback port,
with the caller's environment).  wrk (bench/soak.lua) keeps `--concurrency` connections busy for
`--duration` seconds with JSON bodies of real Fashion-MNIST t10k rows (one body in 17 has 64 rows, the
others one row) and tallies every answer by status and every socket error.  Every worker's resident
memory (VmRSS, from /proc; the workers are the children of the gunicorn master) is sampled `--warmup`
seconds into the run (default: 30 s, or a fifth of a shorter run), every 5 s after, and at the end, with
the CPU time each worker used meanwhile (how the load was shared).  After the run the liveness probe and
one request must still be answered.

Errors are: any answer but 200, a 200 that is not a JSON list, socket errors (connect, read, write,
timeout), a worker that died or was replaced, and a failed check after the run.  The summary is printed
and written as JSON (--out, bench/results/soak.json by default); the exit status is 1 if there was any
error or a worker's memory grew by more than --max-growth percent from the warm-up sample to the end.

With --url the server is one already running, e.g. `make serve`; its workers' memory is sampled when it
listens on this machine (found by its listening socket), and left out otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests

from bench.servers import REPO, FrontDoorProcess, worker_pids
from model import idx

SERVE_PY = REPO / "server" / "serve.py"
WRK_SCRIPT = REPO / "bench" / "soak.lua"
ROUNDS_OF_BODIES = 16  # of sixteen 1-row bodies and one 64-row body: 272 bodies, 1280 rows
SAMPLE_EVERY_S = 5.0
WRK_TIMEOUT_S = 10  # a request not answered within this counts as a timeout error


@dataclass
class Worker:
    pid: int
    start_mib: float  # VmRSS after the warm-up
    end_mib: float
    peak_mib: float
    growth_pct: float
    cpu_s: float  # CPU time it used from the warm-up sample to the end: shows how the load was shared


@dataclass
class Summary:
    url: str
    server: str  # how the server was started, or "given" for --url
    duration_s: float
    concurrency: int
    warmup_s: float
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count; only kinds that happened
    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    workers: list[Worker] = field(default_factory=list)  # empty when memory could not be sampled
    memory_samples: list[dict[str, float]] = field(default_factory=list)  # {"t": s into the run, "<pid>": MiB}
    max_growth_pct: float | None = None
    growth_limit_pct: float = 10.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def passed(self) -> bool:
        return self.error_count == 0 and (self.max_growth_pct is None or self.max_growth_pct <= self.growth_limit_pct)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "error_count": self.error_count, "passed": self.passed}, indent=1) + "\n"

    def report(self) -> str:
        lines = [
            f"soak: {self.requests} requests in {self.duration_s:.0f} s at concurrency {self.concurrency} "
            f"against {self.url} ({self.server})",
            f"  {self.rps:.0f} req/s; latency p50 {self.p50_ms:.1f} ms, p90 {self.p90_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms",
            f"  answers by status: {self.statuses}",
            f"  errors: {self.error_count}" + (f" {self.errors}" if self.errors else ""),
        ]
        if self.workers:
            lines.append(f"  worker memory (VmRSS) from {self.warmup_s:.0f} s into the run to its end:")
            lines += [
                f"    pid {w.pid}: {w.start_mib:.1f} -> {w.end_mib:.1f} MiB ({w.growth_pct:+.1f} %), "
                f"peak {w.peak_mib:.1f} MiB; {w.cpu_s:.0f} s of CPU"
                for w in self.workers
            ]
        else:
            lines.append("  worker memory: not sampled (the server's processes are not visible here)")
        lines.append(
            f"  {'PASS' if self.passed else 'FAIL'}: zero errors and memory growth at most "
            f"{self.growth_limit_pct:g} % per worker"
        )
        return "\n".join(lines)


# --- the server's processes, from /proc -------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else None


def master_listening_on(port: int) -> int | None:
    """The gunicorn master of a server listening on `port` here: of the processes holding the listening
    socket (the master and its workers), the one whose parent is not among them."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                holders.add(int(entry.name))
        except OSError:
            continue
    masters = [pid for pid in holders if (fields := _stat(pid)) and int(fields[1]) not in holders]
    return masters[0] if len(masters) == 1 else None


class MemorySampler(threading.Thread):
    """Samples the VmRSS (and CPU time) of every worker of `master` every SAMPLE_EVERY_S, from `start_after` s on."""

    def __init__(self, master: int, start_after: float):
        super().__init__(daemon=True)
        self.master = master
        self.start_after = start_after
        self.began = time.monotonic()
        self.samples: list[dict[str, float]] = []
        self.initial_workers = sorted(worker_pids(master))  # before the load
        self.final_workers: list[int] = []
        self.cpu_first: dict[int, float] = {}  # CPU seconds of each worker at its first and its last sample
        self.cpu_last: dict[int, float] = {}
        self._stopping = threading.Event()

    def sample(self) -> None:
        sample = {"t": round(time.monotonic() - self.began, 1)}
        for pid in sorted(worker_pids(self.master)):
            if (mib := rss_mib(pid)) is not None:
                sample[str(pid)] = round(mib, 1)
            if (cpu := cpu_seconds(pid)) is not None:
                self.cpu_first.setdefault(pid, cpu)
                self.cpu_last[pid] = cpu
        self.samples.append(sample)

    def run(self) -> None:
        if self._stopping.wait(self.start_after):
            return
        while True:
            self.sample()
            if self._stopping.wait(SAMPLE_EVERY_S):
                break

    def finish(self) -> None:
        self._stopping.set()
        self.join()
        self.sample()  # the end
        self.final_workers = sorted(worker_pids(self.master))


# --- the load ---------------------------------------------------------------------------------------------


def write_bodies(images: np.ndarray, path: Path) -> Path:
    """One JSON body per line, of consecutive t10k rows: every 17th has 64 rows, the others one row."""
    lines, start = [], 0
    for i in range(17 * ROUNDS_OF_BODIES):
        rows = 64 if i % 17 == 16 else 1
        lines.append(json.dumps({"data": images[start : start + rows].tolist()}))
        start = (start + rows) % (len(images) - 64)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(url: str, bodies: Path, duration: float, concurrency: int) -> dict:
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk (make soak does it)")
    command = [
        "wrk",
        f"-t{min(2, concurrency)}",
        f"-c{concurrency}",
        f"-d{round(duration)}s",
        "--timeout",
        f"{WRK_TIMEOUT_S}s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    env = {**os.environ, "BODIES_FILE": str(bodies), "CONTENT_TYPE": "application/json"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    match = re.search(r"^SOAK (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(match.group(1))


def check_after(url: str, body: str) -> dict[str, int]:
    """The liveness probe and one request, right after the load; the errors they show."""
    errors = {}
    root = url.rsplit("/score", 1)[0] + "/"
    try:
        if requests.get(root, timeout=10).status_code != 200:
            errors["liveness probe after the run"] = 1
        response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        if response.status_code != 200 or not isinstance(response.json(), list):
            errors["request after the run"] = 1
    except (requests.RequestException, ValueError):
        errors["request after the run"] = 1
    return errors


def soak(
    url: str,
    bodies: Path,
    duration: float,
    concurrency: int,
    warmup: float,
    master: int | None,
    server: str,
    growth_limit_pct: float = 10.0,
) -> Summary:
    """Drive `url` with wrk for `duration` s, sampling the memory of `master`'s workers; the summary."""
    summary = Summary(url, server, duration, concurrency, warmup, growth_limit_pct=growth_limit_pct)
    sampler = MemorySampler(master, warmup) if master else None
    if sampler:
        sampler.start()
    try:
        result = run_wrk(url, bodies, duration, concurrency)
    finally:
        if sampler:
            sampler.finish()

    summary.requests = result["requests"]
    for part in result["statuses"]:
        for status, count in part.items():
            summary.statuses[status] = summary.statuses.get(status, 0) + count
    errors = {f"status {s}": n for s, n in sorted(summary.statuses.items()) if s != "200"}
    errors["200 that is not a JSON list"] = result["bad_bodies"]
    errors.update({f"socket {kind}": n for kind, n in result["socket_errors"].items()})
    summary.rps = result["requests"] / (result["duration_us"] / 1e6)
    latency = result["latency_us"]
    summary.p50_ms, summary.p90_ms, summary.p99_ms, summary.max_ms = (
        latency[k] / 1e3 for k in ("p50", "p90", "p99", "max")
    )

    if sampler:
        errors["workers that died"] = len(set(sampler.initial_workers) - set(sampler.final_workers))
    if sampler and len(sampler.samples) > 1:
        summary.memory_samples = sampler.samples
        start, end = sampler.samples[0], sampler.samples[-1]
        for pid in sampler.initial_workers:
            if str(pid) in start and str(pid) in end:
                peak = max(s.get(str(pid), 0.0) for s in sampler.samples)
                growth = 100 * (end[str(pid)] - start[str(pid)]) / start[str(pid)]
                cpu = sampler.cpu_last.get(pid, 0.0) - sampler.cpu_first.get(pid, 0.0)
                summary.workers.append(
                    Worker(pid, start[str(pid)], end[str(pid)], peak, round(growth, 2), round(cpu, 1))
                )
        if summary.workers:
            summary.max_growth_pct = max(w.growth_pct for w in summary.workers)

    errors.update(check_after(url, bodies.read_text().splitlines()[0]))
    summary.errors = {kind: n for kind, n in errors.items() if n}
    return summary


# --- the server, as make serve starts it ------------------------------------------------------------------


class Server(FrontDoorProcess):
    """server/serve.py on a free loopback port, with the caller's settings (nginx in front of azmlinfsrv)."""

    def __init__(self, model_dir: Path, log_dir: Path, env: dict[str, str] | None = None):
        argv = [sys.executable, str(SERVE_PY), "--model_dir", str(model_dir)]
        self._start(argv, {**os.environ, **(env or {})}, log_dir, "serve")

    def describe(self) -> str:
        first = next((line for line in self.log().splitlines() if line.startswith("serve.py:")), "serve.py")
        return first.split(": ", 1)[-1]


def soak_new_server(
    model_dir: Path,
    data_dir: Path,
    duration: float,
    concurrency: int,
    warmup: float,
    work_dir: Path,
    env: dict[str, str] | None = None,
    growth_limit_pct: float = 10.0,
) -> Summary:
    """Start the server as make serve does, soak it, stop it."""
    images, _ = idx.load_split(data_dir, "t10k")
    bodies = write_bodies(images, work_dir / "bodies.jsonl")
    server = Server(model_dir, work_dir, env).wait_healthy()
    try:
        summary = soak(
            server.score_url,
            bodies,
            duration,
            concurrency,
            warmup,
            server.gunicorn_pid(),
            server.describe(),
            growth_limit_pct,
        )
    finally:
        server.stop()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    parser.add_argument("--concurrency", type=int, default=64, help="open connections (default 64)")
    parser.add_argument("--warmup", type=float, help="seconds into the run of the first memory sample")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "tf-dnn-mnist" / "1")
    parser.add_argument("--data-dir", type=Path, default=Path(idx.DEFAULT_DATA_DIR))
    parser.add_argument("--url", help="soak this running server's /score URL instead of starting one")
    parser.add_argument("--max-growth", type=float, default=10.0, help="percent of worker memory growth allowed")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(30.0, args.duration / 5)

    work = Path(tempfile.mkdtemp(prefix="tfscoring-soak-"))  # the bodies and the server's log
    if args.url:
        images, _ = idx.load_split(args.data_dir, "t10k")
        bodies = write_bodies(images, work / "bodies.jsonl")
        parts = urlsplit(args.url)
        local = parts.hostname in ("127.0.0.1", "localhost", "0.0.0.0", "::1")
        master = master_listening_on(parts.port or 80) if local else None
        summary = soak(args.url, bodies, args.duration, args.concurrency, warmup, master, "given", args.max_growth)
    else:
        summary = soak_new_server(
            args.model_dir, args.data_dir, args.duration, args.concurrency, warmup, work, None, args.max_growth
        )
    print(summary.report())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(summary.to_json())
    print(f"summary written to {args.out}")
    if summary.passed:
        shutil.rmtree(work, ignore_errors=True)
        return 0
    print(f"the server's log is kept in {work}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

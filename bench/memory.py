"""How much memory the server's processes take under rounds of the largest JSON requests, and give back after.

    python -m bench.memory [--label glibc] [--env MALLOC_ARENA_MAX=2] [--rounds 3] [--concurrency 32]
                           [--entry-script bench/trim_score.py] [--out bench/results/memory-allocators.json]
    python -m bench.memory --table bench/results/memory-allocators.json   # the Markdown table of a results file

The server is started as `make serve` starts it: server/serve.py (WORKER_COUNT and the gunicorn threads
sized to this machine unless --workers / --threads or the environment set them), on a free loopback port,
with the caller's environment plus every --env NAME=VALUE (MALLOC_ARENA_MAX, LD_PRELOAD, MALLOC_CONF, ...).
Once it is healthy, its total resident memory is recorded: the VmRSS of the gunicorn master and of every
worker (its children), from /proc.  Then `--rounds` rounds, each of `--concurrency` POST /score requests sent
at once, every one the same body: 4096 real Fashion-MNIST t10k rows scaled to [0, 1] as the how-to's client
sends them, as JSON ({"data": [[784 numbers], ...]}).  By default the 4096 rows with the most non-zero
pixels, which gives the largest body real images make (about 45 MiB; MAX_REQUEST_BYTES is 64 MiB); --pick
first takes rows 0..4095 (about 38 MiB).  The body is built once.

During the rounds the memory is sampled every 100 ms (the peak); after each round, once every request has
been answered, the server is left idle for --settle seconds and sampled (after round N); after the last
round it is left idle --final-wait seconds more and sampled again (final).  Answers are tallied by status
(200, 413, 503, ...; a request that got no answer counts under its exception's name).  The summary is
printed and merged into --out under its --label (a results file holds one run per label; a run of the same
label replaces the older one).  Everything is bounded in time: each request has --timeout seconds, and the
server is stopped (SIGTERM to its process group, SIGKILL after 30 s) whatever happens.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import requests

from bench.servers import REPO, data_body, worker_pids
from bench.soak import SERVE_PY, Server
from model import idx

SAMPLE_EVERY_S = 0.1
ROWS = 4096  # MAX_REQUEST_ROWS


def _vm_rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def memory(master: int) -> dict:
    """{"total_mib": master + workers, "master_mib": ..., "workers_mib": {pid: MiB}} right now."""
    workers = {}
    for pid in sorted(worker_pids(master)):
        if (kib := _vm_rss_kib(pid)) is not None:
            workers[str(pid)] = round(kib / 1024, 1)
    master_mib = round((_vm_rss_kib(master) or 0) / 1024, 1)
    return {"total_mib": round(master_mib + sum(workers.values()), 1), "master_mib": master_mib, "workers_mib": workers}


class PeakSampler(threading.Thread):
    """Samples memory(master) every SAMPLE_EVERY_S until stopped; keeps the sample of the highest total, and
    each process's own highest VmRSS."""

    def __init__(self, master: int):
        super().__init__(daemon=True)
        self.master = master
        self.peak: dict = memory(master)
        self.per_pid_peak: dict[str, float] = {}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_EVERY_S):
            sample = memory(self.master)
            self.samples += 1
            if sample["total_mib"] > self.peak["total_mib"]:
                self.peak = sample
            for pid, mib in [("master", sample["master_mib"]), *sample["workers_mib"].items()]:
                self.per_pid_peak[pid] = max(mib, self.per_pid_peak.get(pid, 0.0))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Round:
    statuses: dict[str, int]
    seconds: float  # from the first request sent to the last answer
    latency_max_s: float
    after: dict  # memory(master) after --settle seconds of idle


@dataclass
class Run:
    label: str
    env: dict[str, str]
    entry_script: str
    server: str  # serve.py's sizing line
    body_bytes: int
    rows: int
    concurrency: int
    idle: dict = field(default_factory=dict)
    peak: dict = field(default_factory=dict)
    peak_per_process_mib: dict[str, float] = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    workers_replaced: bool = False
    answers_sha256: list[str] = field(default_factory=list)  # of the 200 answers: one value when all agree
    settle_s: float = 5.0
    final_wait_s: float = 15.0
    machine: str = ""
    date: str = ""


def build_body(data_dir: Path, pick: str) -> bytes:
    images, _ = idx.load_split(data_dir, "t10k")
    if pick == "densest":
        rows = images[np.sort(np.argsort(-(images > 0).sum(axis=1), kind="stable")[:ROWS])]
    else:
        rows = images[:ROWS]
    return data_body(rows)


def one_round(url: str, body: bytes, concurrency: int, timeout: float) -> tuple[Counter, float, float, set[str]]:
    """`concurrency` POSTs of `body` at once: answers by status, seconds to the last answer, the slowest
    request's seconds, and the SHA-256 of every distinct 200 answer (one, when the scores are right)."""
    start_gate = threading.Barrier(concurrency)

    def send(_: int) -> tuple[str, float, str | None]:
        start_gate.wait()
        t0 = time.monotonic()
        digest = None
        try:
            response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout)
            outcome = str(response.status_code)
            if response.status_code == 200:
                digest = hashlib.sha256(response.content).hexdigest()
        except requests.RequestException as err:
            outcome = type(err).__name__
        return outcome, time.monotonic() - t0, digest

    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(send, range(concurrency)))
    digests = {d for _, _, d in results if d}
    return Counter(o for o, _, _ in results), time.monotonic() - t0, max(s for _, s, _ in results), digests


def measure(args: argparse.Namespace, env: dict[str, str], work: Path) -> Run:
    body = build_body(args.data_dir, args.pick)
    server_env = dict(env)
    if args.workers:
        server_env["WORKER_COUNT"] = str(args.workers)
    if args.threads:
        server_env["GUNICORN_CMD_ARGS"] = f"--threads {args.threads}"
    server = ServeServer(args.model_dir, work, server_env, args.entry_script).wait_healthy()
    master = server.gunicorn_pid()  # serve.py's child; nginx's few MiB are not counted
    run = Run(
        label=args.label,
        env=env,
        entry_script=str(args.entry_script or "server/score.py"),
        server=server.describe(),
        body_bytes=len(body),
        rows=ROWS,
        concurrency=args.concurrency,
        settle_s=args.settle,
        final_wait_s=args.final_wait,
        machine=f"{platform.node()}: {os.cpu_count()} CPUs",
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    try:
        time.sleep(args.settle)  # the workers' start-up is over
        first_workers = set(worker_pids(master))
        run.idle = memory(master)
        print(f"[{args.label}] idle: {run.idle['total_mib']:.0f} MiB {run.idle['workers_mib']}", flush=True)
        sampler = PeakSampler(master)
        sampler.start()
        statuses: Counter = Counter()
        answers: set[str] = set()
        try:
            for n in range(1, args.rounds + 1):
                counts, seconds, slowest, digests = one_round(server.score_url, body, args.concurrency, args.timeout)
                statuses.update(counts)
                answers |= digests
                time.sleep(args.settle)
                after = memory(master)
                run.rounds.append(Round(dict(sorted(counts.items())), round(seconds, 2), round(slowest, 2), after))
                print(
                    f"[{args.label}] round {n}: {dict(counts)} in {seconds:.1f} s; "
                    f"peak so far {sampler.peak['total_mib']:.0f} MiB; after {args.settle:g} s idle "
                    f"{after['total_mib']:.0f} MiB {after['workers_mib']}",
                    flush=True,
                )
        finally:
            sampler.stop()
        run.peak, run.peak_per_process_mib = sampler.peak, sampler.per_pid_peak
        time.sleep(max(0.0, args.final_wait - args.settle))  # --final-wait seconds after the last round in all
        run.final = memory(master)
        run.statuses = dict(sorted(statuses.items()))
        run.answers_sha256 = sorted(answers)
        run.workers_replaced = set(worker_pids(master)) != first_workers
        print(f"[{args.label}] final: {run.final['total_mib']:.0f} MiB {run.final['workers_mib']}", flush=True)
    finally:
        server.stop()
    return run


class ServeServer(Server):
    """server/serve.py as make serve starts it (bench.soak.Server), optionally on another entry script:
    azmlinfsrv takes the last --entry_script, so one given after serve.py's replaces server/score.py."""

    def __init__(self, model_dir: Path, log_dir: Path, env: dict[str, str], entry_script: Path | None = None):
        argv = [sys.executable, str(SERVE_PY), "--model_dir", str(model_dir)]
        if entry_script:
            argv += ["--entry_script", str(entry_script.resolve())]
        self._start(argv, {**os.environ, **env}, log_dir, "serve")


# --- the results file -------------------------------------------------------------------------------------


def merge(out: Path, run: Run) -> None:
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    runs = [r for r in runs if r["label"] != run.label] + [asdict(run)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")


def table(runs: list[dict]) -> str:
    lines = [
        "| config | idle | peak | after round 1 | after round 2 | after round 3 | final | answers | s per round |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        after = [f"{x['after']['total_mib']:.0f}" for x in r["rounds"]] + ["-"] * (3 - len(r["rounds"]))
        answers = ", ".join(f"{n}x{s}" for s, n in r["statuses"].items())
        seconds = " / ".join(f"{x['seconds']:.1f}" for x in r["rounds"])
        lines.append(
            f"| {r['label']} | {r['idle']['total_mib']:.0f} | {r['peak']['total_mib']:.0f} | {' | '.join(after[:3])} "
            f"| {r['final']['total_mib']:.0f} | {answers} | {seconds} |"
        )
    return "\n".join(lines) + "\n\nTotal VmRSS of the gunicorn master and its workers, MiB.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="default", help="name of this configuration in the results file")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="server environment")
    parser.add_argument("--entry-script", type=Path, help="another entry script, e.g. bench/trim_score.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32, help="requests sent at once in each round")
    parser.add_argument("--pick", choices=["densest", "first"], default="densest", help="which 4096 t10k rows")
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds after a round before sampling")
    parser.add_argument("--final-wait", type=float, default=15.0, help="idle seconds after the last round")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each request may take")
    parser.add_argument("--workers", type=int, help="WORKER_COUNT (default: serve.py's sizing)")
    parser.add_argument("--threads", type=int, help="gunicorn --threads (default: serve.py's sizing)")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "tf-dnn-mnist" / "1")
    parser.add_argument("--data-dir", type=Path, default=Path(idx.DEFAULT_DATA_DIR))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "memory-allocators.json")
    parser.add_argument("--table", type=Path, metavar="RESULTS", help="print the Markdown table of a results file")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())["runs"]), end="")
        return 0
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env takes NAME=VALUE, got {item!r}")
        env[name] = value
    work = Path(tempfile.mkdtemp(prefix="tfscoring-memory-"))  # the server's log
    run = measure(args, env, work)
    merge(args.out, run)
    print(json.dumps(asdict(run), indent=1))
    print(f"written to {args.out} (label {args.label!r}); the server's log is in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The server as make serve runs it, this checkout against another (an older commit's worktree), over HTTP.

    git worktree add /tmp/before <commit>
    python -m bench.server_ab --before /tmp/before [--rounds 3] [--seconds 5] [--out bench/results/server-ab.md]

Each checkout's server/serve.py runs with its own tfscoring (PYTHONPATH, the venv being this one's), nginx in front,
workers and threads sized to the machine as make serve sizes them; one server at a time, so the two never share the
cores.  Rounds alternate the order of the checkouts; each cell (a body kind, rows, concurrency) is a wrk run (or
bench/loadgen.py) of --seconds, and the median over the rounds is reported with the ratio after/before.  Before
the load, both must answer the 64-row bodies alike.  A measurement: it asserts nothing but equal answers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.run import BODIES, Cell, Target, describe_machine, run_load, write_bodies
from bench.servers import FrontDoorProcess, wait_for_health
from model import idx
from tfscoring.process.sizing import default_size, memory_limit, usable_cpus, visible_gpus

REPO = Path(__file__).resolve().parents[1]
# (body kind, rows, concurrency): the how-to's JSON at one row (latency) and under load, the batch sizes that the
# decoders dominate, raw float32, and the Open Inference Protocol's JSON.
CELLS = (("json", 1, 1), ("json", 1, 16), ("json", 64, 16), ("binary", 64, 16), ("v2", 64, 16))


class CheckoutServer(FrontDoorProcess):
    """serve.py of `checkout`, importing that checkout's tfscoring before the one installed in the venv."""

    def __init__(self, checkout: Path, model_dir: Path, log_dir: Path, env: dict[str, str]):
        base = {k: v for k, v in os.environ.items() if k not in {"WORKER_COUNT", "GUNICORN_CMD_ARGS"}}
        base.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "METRICS_PORT": "0", **env})
        base["PYTHONPATH"] = str(checkout / "server")  # ahead of the editable install's finder
        argv = [sys.executable, str(checkout / "server" / "serve.py"), "--model_dir", str(model_dir)]
        self._start(argv, base, log_dir, f"serve-{checkout.name}")

    def wait_healthy(self, timeout: float = 180) -> CheckoutServer:
        wait_for_health(self.url + "/health/ready", self.process, self.log, timeout)
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (git worktree add ...)")
    parser.add_argument("--after", type=Path, default=REPO)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "tf-dnn-mnist" / "1")
    parser.add_argument("--data-dir", type=Path, default=Path(idx.DEFAULT_DATA_DIR))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "server-ab.md")
    args = parser.parse_args()

    size = default_size(usable_cpus(), memory_limit())
    env = {"WORKER_COUNT": str(size.workers), "GUNICORN_CMD_ARGS": f"--threads {size.threads}"}
    images, _ = idx.load_split(args.data_dir, "t10k")
    work = Path(tempfile.mkdtemp(prefix="tfscoring-server-ab-"))
    bodies = write_bodies(images, work)
    for rows in {rows for _, rows, _ in CELLS} | {64}:  # the Open Inference Protocol's JSON, named as this model's
        tensor = {"name": "network/X", "shape": [rows, 784], "datatype": "FP32", "data": images[:rows].ravel().tolist()}
        bodies["v2", rows].write_text(json.dumps({"inputs": [tensor]}))
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[tuple, list[Cell]] = {}
    answers = {}
    for round_no in range(args.rounds):
        order = list(checkouts) if round_no % 2 == 0 else list(checkouts)[::-1]
        for name in order:
            with CheckoutServer(checkouts[name], args.model_dir, work, env) as server:
                server.wait_healthy()
                for kind in sorted({kind for kind, _, _ in CELLS}):
                    body = bodies[kind, 64].read_bytes()
                    response = requests.post(server.score_url, data=body, headers={"Content-Type": BODIES[kind]})
                    response.raise_for_status()
                    answers.setdefault(kind, {})[name] = response.json()
                for kind, rows, concurrency in CELLS:
                    target = Target(name, server.score_url, kind)
                    cell = run_load(target, bodies[kind, rows], rows, concurrency, args.seconds)
                    runs.setdefault((name, kind, rows, concurrency), []).append(cell)
                    shown = f"{name:6} {kind:6} rows={rows:<2} c={concurrency:<2} {cell.rps:8.1f} req/s"
                    print(f"round {round_no + 1} {shown} p50 {cell.p50_ms:6.2f} ms errors {cell.errors}", flush=True)
    for kind, by_checkout in answers.items():
        if by_checkout["before"] != by_checkout["after"]:
            sys.exit(f"the checkouts answer the 64-row {kind} body differently")
    median = {key: statistics.median(c.rps for c in cells) for key, cells in runs.items()}
    p50 = {key: statistics.median(c.p50_ms for c in cells) for key, cells in runs.items()}
    errors = {key: sum(c.errors for c in cells) for key, cells in runs.items()}
    machine = describe_machine(usable_cpus(), visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES")), size.describe())
    lines = [
        f"Machine: {machine}. {args.rounds} rounds, alternating which checkout goes first, of {args.seconds} s per "
        f"cell through each checkout's nginx front door, {time.strftime('%Y-%m-%d')}; median over rounds. "
        f"before: `{_commit(checkouts['before'])}`, after: `{_commit(checkouts['after'])}`.",
        "",
        "| body | rows | conc. | before req/s | after req/s | after/before | before p50 ms | after p50 ms | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for kind, rows, concurrency in CELLS:
        b, a = ("before", kind, rows, concurrency), ("after", kind, rows, concurrency)
        lines.append(
            f"| {kind} | {rows} | {concurrency} | {median[b]:.0f} | {median[a]:.0f} | {median[a] / median[b]:.2f}x "
            f"| {p50[b]:.1f} | {p50[a]:.1f} | {errors[b] + errors[a]} |"
        )
    table = "\n".join(lines) + "\n"
    args.out.write_text(table)
    (args.out.with_suffix(".json")).write_text(
        json.dumps({"machine": machine, "cells": {"/".join(map(str, k)): v for k, v in median.items()}}, indent=1)
    )
    print(table)


def _commit(checkout: Path) -> str:
    done = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return done.stdout.strip() or str(checkout)


if __name__ == "__main__":
    main()

"""make bench: throughput and latency of the servers below on loopback, measured in one run.

    python -m bench.run --mlserver .venv-mlserver/bin/mlserver [--rounds 2] [--seconds 5]

Servers, all with the same model and venv:
  baseline        the how-to's score.py on azmlinfsrv with its defaults (1 sync worker), as Azure ML runs it
  ours            server/serve.py as make serve runs it: nginx in front, workers and threads sized to the machine
  ours-direct     the same score.py and worker settings on azmlinfsrv's own port, started directly (no serve.py)
  ceiling         bench/empty_score.py (reads the body, answers at once) behind the same front door and settings
  ceiling-direct  the same on azmlinfsrv's own port: what ours-direct is compared with
  mlserver        Seldon MLServer with adaptive batching, the same graph through bench/mlserver/tf1_runtime.py

Cells: concurrency 1, 16, 64 x bodies of 1 and 64 Fashion-MNIST t10k rows, as JSON for
every server (V2 protocol for MLServer) and as raw float32 for ours and the ceilings.  wrk drives each
cell (bench/loadgen.py, pure Python, where wrk is missing); rounds alternate the servers so that drift
on the machine hits them all alike, and the median over rounds is reported.  Output: results.md,
results.json and results.png in --out.  On a GPU machine, make bench runs bench/gpu_check.py's benchmark
instead (docs/gpu.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import requests

from bench import loadgen, peer
from bench.servers import HOWTO_SCORE_PY, REPO, SCORE_PY, FrontDoorProcess, ServerProcess
from model import idx
from tfscoring.process.sizing import default_size, memory_limit, usable_cpus, visible_gpus

EMPTY_SCORE_PY = REPO / "bench" / "empty_score.py"
WRK_SCRIPT = REPO / "bench" / "post.lua"
CONCURRENCY = (1, 16, 64)
ROWS = (1, 64)
BODIES = {"json": "application/json", "binary": "application/octet-stream", "v2": "application/json"}


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    body: str  # a key of BODIES


@dataclass
class Cell:
    target: str
    body: str
    rows: int
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlserver", type=Path, help="the mlserver command of its own venv (make bench installs it)")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "tf-dnn-mnist" / "1")
    parser.add_argument("--data-dir", type=Path, default=Path(idx.DEFAULT_DATA_DIR))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    cpus, gpus = usable_cpus(), visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"))  # as serve.py will see them
    size = default_size(cpus, memory_limit())
    server_env = {"WORKER_COUNT": str(size.workers), "GUNICORN_CMD_ARGS": f"--threads {size.threads}"}
    images, _ = idx.load_split(args.data_dir, "t10k")
    work = Path(tempfile.mkdtemp(prefix="tfscoring-bench-"))
    bodies = write_bodies(images, work)

    servers = {
        "baseline": ServerProcess(HOWTO_SCORE_PY, args.model_dir, work),
        "ours": FrontDoorProcess(args.model_dir, work, server_env),
        "ours-direct": ServerProcess(SCORE_PY, args.model_dir, work, server_env),
        "ceiling": FrontDoorProcess(args.model_dir, work, server_env, entry_script=EMPTY_SCORE_PY),
        "ceiling-direct": ServerProcess(EMPTY_SCORE_PY, args.model_dir, work, server_env),
    }
    if args.mlserver:
        servers["mlserver"] = peer.MLServerProcess(args.mlserver, args.model_dir, work, workers=size.workers)
    try:
        for process in servers.values():
            process.wait_healthy()
        targets = [Target("baseline", servers["baseline"].score_url, "json")] + [
            Target(name, servers[name].score_url, body)
            for name in ("ours", "ours-direct", "ceiling", "ceiling-direct")
            for body in ("json", "binary")
        ]
        if "mlserver" in servers:
            targets.append(Target("mlserver", servers["mlserver"].score_url, "v2"))
        check_answers(targets, bodies, images)
        cells = measure(targets, bodies, args.rounds, args.seconds)
    finally:
        for process in servers.values():
            process.stop()
    machine = describe_machine(cpus, gpus, size.describe())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"machine": machine, "cells": [asdict(c) for c in cells]}, indent=1) + "\n"
    )
    table = markdown(cells, machine, args)
    (args.out / "results.md").write_text(table)
    plot(cells, machine, args.out / "results.png")
    print(table)


def write_bodies(images: np.ndarray, work: Path) -> dict[tuple[str, int], Path]:
    bodies = {}
    for rows in ROWS:
        batch = images[:rows]
        files = {
            "json": json.dumps({"data": batch.tolist()}).encode(),
            "binary": batch.astype("<f4").tobytes(),
            "v2": json.dumps(
                {
                    "inputs": [
                        {"name": "X", "shape": list(batch.shape), "datatype": "FP32", "data": batch.ravel().tolist()}
                    ]
                }
            ).encode(),
        }
        for kind, content in files.items():
            path = work / f"body-{rows}.{kind}"
            path.write_bytes(content)
            bodies[kind, rows] = path
    return bodies


def check_answers(targets: list[Target], bodies: dict, images: np.ndarray) -> None:
    """Every server must answer the 64-row body with the same class ids as the baseline (the ceiling aside)."""
    expected = None
    for target in targets:
        body = bodies[target.body, 64].read_bytes()
        response = requests.post(target.url, data=body, headers={"Content-Type": BODIES[target.body]}, timeout=60)
        response.raise_for_status()
        answer = response.json()
        if target.body == "v2":
            answer = answer["outputs"][0]["data"]
        if target.name.startswith("ceiling"):
            continue
        expected = answer if expected is None else expected
        if answer != expected:
            sys.exit(f"{target.name} ({target.body}) answers differently from the baseline: {answer} != {expected}")


def measure(targets: list[Target], bodies: dict, rounds: int, seconds: int) -> list[Cell]:
    runs: dict[tuple, list[Cell]] = {}
    for round_no in range(rounds):
        order = targets if round_no % 2 == 0 else targets[::-1]
        for rows in ROWS:
            for concurrency in CONCURRENCY:
                for target in order:
                    cell = run_load(target, bodies[target.body, rows], rows, concurrency, seconds)
                    runs.setdefault((target.name, target.body, rows, concurrency), []).append(cell)
                    print(
                        f"round {round_no + 1}/{rounds} {target.name:8} {target.body:6} rows={rows:<2} "
                        f"c={concurrency:<2} {cell.rps:8.1f} req/s  p50 {cell.p50_ms:7.2f} ms  "
                        f"p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}",
                        flush=True,
                    )
    return [median_cell(cells) for cells in runs.values()]


def run_load(target: Target, body: Path, rows: int, concurrency: int, seconds: int) -> Cell:
    if shutil.which("wrk"):
        return run_wrk(target, body, rows, concurrency, seconds)
    result = loadgen.run(target.url, body.read_bytes(), BODIES[target.body], concurrency, seconds)
    return Cell(
        target.name,
        target.body,
        rows,
        concurrency,
        result.rps,
        result.p50_ms,
        result.p99_ms,
        result.errors + result.shed,
    )


def run_wrk(target: Target, body: Path, rows: int, concurrency: int, seconds: int) -> Cell:
    env = {**os.environ, "BODY_FILE": str(body), "CONTENT_TYPE": BODIES[target.body]}
    threads = min(2, concurrency)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    output = subprocess.run(
        [*command, "-s", str(WRK_SCRIPT), target.url], env=env, capture_output=True, text=True, check=True
    ).stdout
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors += sum(int(n) for n in socket.groups()) if socket else 0
    return Cell(
        target.name,
        target.body,
        rows,
        concurrency,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=_latency_ms(output, "50%"),
        p99_ms=_latency_ms(output, "99%"),
        errors=errors,
    )


def _latency_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def median_cell(cells: list[Cell]) -> Cell:
    first = cells[0]
    return Cell(
        first.target,
        first.body,
        first.rows,
        first.concurrency,
        rps=statistics.median(c.rps for c in cells),
        p50_ms=statistics.median(c.p50_ms for c in cells),
        p99_ms=statistics.median(c.p99_ms for c in cells),
        errors=sum(c.errors for c in cells),
    )


def describe_machine(cpus: int, gpus: int, size: str) -> str:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown CPU",
    )
    gpu = "no GPU" if not gpus else f"{gpus} GPU(s)"
    return f"{cpus} usable cores ({cpu_model}), {gpu}; ours and ceiling ran with {size}"


def markdown(cells: list[Cell], machine: str, args: argparse.Namespace) -> str:
    baseline = {(c.rows, c.concurrency): c for c in cells if c.target == "baseline"}
    ceiling = {(c.target, c.body, c.rows, c.concurrency): c for c in cells if c.target.startswith("ceiling")}
    lines = [
        f"Machine: {machine}. Median of {args.rounds} alternating rounds of {args.seconds} s per cell, "
        f"{'wrk' if shutil.which('wrk') else 'bench/loadgen.py'} on 127.0.0.1, {time.strftime('%Y-%m-%d')}. "
        "ours and ceiling: through the nginx front door (make serve); -direct: on azmlinfsrv's port; "
        "each is compared with the ceiling of its own path.",
        "",
        "| server | body | rows | conc. | req/s | rows/s | p50 ms | p99 ms | errors | rows/s vs baseline "
        "| p50 vs baseline | req/s vs ceiling |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    order = {"baseline": 0, "ours": 1, "ours-direct": 2, "ceiling": 3, "ceiling-direct": 4, "mlserver": 5}
    for c in sorted(cells, key=lambda c: (c.rows, c.concurrency, order[c.target], c.body)):
        base = baseline[c.rows, c.concurrency]
        # The how-to runs on azmlinfsrv's port, as Azure ML runs it: its path is the direct one.
        path = "ceiling-direct" if c.target.endswith("-direct") or c.target == "baseline" else "ceiling"
        top = ceiling.get((path, c.body, c.rows, c.concurrency))  # the same body and path, to the empty run()
        lines.append(
            f"| {c.target} | {c.body} | {c.rows} | {c.concurrency} | {c.rps:.0f} | {c.rows_per_s:.0f} | "
            f"{c.p50_ms:.1f} | {c.p99_ms:.1f} | {c.errors} | {c.rows_per_s / base.rows_per_s:.2f}x | "
            f"{c.p50_ms / base.p50_ms:.2f}x | {f'{c.rps / top.rps:.2f}x' if top else '-'} |"
        )
    return "\n".join(lines) + "\n"


def plot(cells: list[Cell], machine: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    series = sorted({(c.target, c.body) for c in cells})
    for column, rows in enumerate(ROWS):
        for target, body in series:
            points = sorted(
                (c for c in cells if (c.target, c.body, c.rows) == (target, body, rows)), key=lambda c: c.concurrency
            )
            xs = [c.concurrency for c in points]
            axes[0][column].plot(xs, [c.rows_per_s for c in points], marker="o", label=f"{target} ({body})")
            axes[1][column].plot(xs, [c.p99_ms for c in points], marker="o", label=f"{target} ({body})")
        axes[0][column].set_title(f"{rows}-row requests: throughput")
        axes[0][column].set_ylabel("rows/s")
        axes[1][column].set_title(f"{rows}-row requests: p99 latency")
        axes[1][column].set_ylabel("p99 ms")
        axes[1][column].set_xlabel("concurrent connections")
        for axis in (axes[0][column], axes[1][column]):
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
            axis.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(machine, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()

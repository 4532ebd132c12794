"""make gpu-check's own parts, in-process: its placement check and its reading of splits on the committed H100 run's
log lines (bench/results/gpu-*.md, issue 14), and its load generator's percentiles.

Its load generator against the real server: tests/http/test_gpu_check.py; the program on a machine without a GPU:
tests/system/test_gpu_check.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

from bench import gpu_check, loadgen
from tests.support import REPO

H100_RUN = REPO / "bench" / "results" / "gpu-nvidia-h100-80gb-hbm3.json"


def h100_server(name: str) -> SimpleNamespace:
    """The log lines one server of the committed H100 run wrote, as check_placement reads a server."""
    excerpts = json.loads(H100_RUN.read_text())["log_excerpts"]
    text = "\n".join(line.split(": ", 1)[1] for line in excerpts if line.split(": ", 1)[0] == name)
    return SimpleNamespace(name=name, log=lambda: text)


def test_the_placement_check_passes_the_h100_runs_four_workers():
    check = gpu_check.Check("placement")
    checker = SimpleNamespace(device_lines=[])
    gpu_check.Checker.check_placement(checker, check, h100_server("workers-4-main"), 4)
    assert check.ok is True, check.summary
    assert "4 worker(s) on GPU(s) [0] of 1" in check.summary


def test_the_placement_check_fails_workers_not_spread_round_robin_over_two_gpus():
    server = h100_server("workers-2")
    two_gpus = server.log().replace("GPU 0 of 1", "GPU 0 of 2")  # both slots on GPU 0 of 2: slot 1 astray
    check = gpu_check.Check("placement")
    gpu_check.Checker.check_placement(
        SimpleNamespace(device_lines=[]), check, SimpleNamespace(name="x", log=lambda: two_gpus), 2
    )
    assert check.ok is False
    assert "not round-robin over 2 GPU(s): (slot, GPU) [(1, 0)]" in check.summary


def test_the_split_lines_of_the_h100_run_are_read_as_splits():
    assert gpu_check.split_lines(h100_server("oom").log()) == [("65536", "32768"), ("32768", "16384")]


def test_load_generator_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 0.50) == 50.0
    assert loadgen.percentile(values, 0.99) == 99.0
    assert loadgen.percentile([7.0], 0.99) == 7.0

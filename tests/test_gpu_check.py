"""make gpu-check on a machine without a GPU: every GPU check fails and says why; the rest of it works.

The GPU run itself is committed as bench/results/gpu-*.md (issue 14); here the
program's own parts are checked: its load generator against the real server, its
accuracy check through HTTP, and its verdicts where no GPU is visible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from bench import gpu_check, loadgen
from tests.support import REPO, data_body
from tfscoring.sizing import visible_gpus

GPU_CHECK = REPO / "bench" / "gpu_check.py"
H100_RUN = REPO / "bench" / "results" / "gpu-nvidia-h100-80gb-hbm3.json"

without_gpu = pytest.mark.skipif(
    visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES")) > 0, reason="a GPU is visible: run make gpu-check itself"
)


def run_gpu_check(tmp_path, model_dir, data_dir, *options: str) -> tuple[int, dict, str]:
    done = subprocess.run(
        [
            sys.executable,
            GPU_CHECK,
            "--model-dir",
            model_dir,
            "--data-dir",
            data_dir,
            "--out",
            tmp_path,
            "--workers",
            "2",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    (report,) = tmp_path.glob("gpu-*.json")
    return done.returncode, json.loads(report.read_text()), done.stdout


@without_gpu
def test_without_a_gpu_each_gpu_check_fails_saying_why(tmp_path, model_dir, data_dir):
    code, report, output = run_gpu_check(tmp_path, model_dir, data_dir, "--only", "placement,oom,hidden-gpu")
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 1
    assert checks["placement"]["ok"] is False
    assert "REQUIRE_GPU is set but TensorFlow sees no GPU" in checks["placement"]["summary"]
    assert checks["oom"]["ok"] is False
    assert "no GPU" in checks["oom"]["summary"] or "CPU" in checks["oom"]["summary"]
    # Hiding the GPU stops start-up with the clear line on any machine.
    assert checks["hidden-gpu"]["ok"] is True, checks["hidden-gpu"]
    assert "FAIL placement" in output and "PASS hidden-gpu" in output
    assert (tmp_path / "gpu-none.md").is_file()


@without_gpu
def test_on_the_cpu_the_accuracy_check_compares_every_t10k_answer_with_the_model(tmp_path, model_dir, data_dir):
    code, report, _ = run_gpu_check(tmp_path, model_dir, data_dir, "--allow-cpu", "--only", "placement,accuracy")
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["accuracy"]["ok"] is True, checks["accuracy"]
    assert "all 10000 t10k images" in checks["accuracy"]["summary"]
    assert checks["placement"]["ok"] is False  # the workers run on the CPU: said so
    assert "on the CPU" in checks["placement"]["summary"]
    assert code == 1


def test_the_load_generator_counts_answers_and_errors_apart(server, t10k):
    good = loadgen.run(server.score_url, data_body(t10k[0][:1]), "application/json", concurrency=4, seconds=0.5)
    assert good.requests > 0 and good.errors == 0 and good.shed == 0
    assert 0 < good.p50_ms <= good.p99_ms

    bad = loadgen.run(server.score_url, b'{"data": "nope"}', "application/json", concurrency=2, seconds=0.3)
    assert bad.requests == 0 and bad.errors > 0  # 400s are errors, not answers

    spread = loadgen.run(server.score_url, data_body(t10k[0][:1]), "application/json", concurrency=20, seconds=0.5)
    assert spread.requests > 0 and spread.errors == 0  # 20 connections over several processes


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
    assert gpu_check._splits(h100_server("oom").log()) == [("65536", "32768"), ("32768", "16384")]


def test_load_generator_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert loadgen._percentile(values, 0.50) == 50.0
    assert loadgen._percentile(values, 0.99) == 99.0
    assert loadgen._percentile([7.0], 0.99) == 7.0

"""make gpu-check on a machine without a GPU: every GPU check fails and says why; the rest of it works.

The GPU run itself is committed as bench/results/gpu-*.md (issue 14); here the
program's own parts are checked: its load generator against the real server, its
accuracy check through HTTP, and its verdicts where no GPU is visible.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import loadgen
from tests.support import REPO, data_body
from tfscoring.sizing import visible_gpus

GPU_CHECK = REPO / "bench" / "gpu_check.py"

pytestmark = pytest.mark.skipif(visible_gpus() > 0, reason="a GPU is visible: run make gpu-check itself")


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
        timeout=600,
    )
    (report,) = tmp_path.glob("gpu-*.json")
    return done.returncode, json.loads(report.read_text()), done.stdout


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


def test_on_the_cpu_the_accuracy_check_compares_every_t10k_answer_with_the_model(tmp_path, model_dir, data_dir):
    code, report, _ = run_gpu_check(tmp_path, model_dir, data_dir, "--allow-cpu", "--only", "placement,accuracy")
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["accuracy"]["ok"] is True, checks["accuracy"]
    assert "all 10000 t10k images" in checks["accuracy"]["summary"]
    assert checks["placement"]["ok"] is False  # the workers run on the CPU: said so
    assert "on the CPU" in checks["placement"]["summary"]
    assert code == 1


def test_the_load_generator_counts_answers_errors_and_sheds_apart(server, t10k):
    good = loadgen.run(server.score_url, data_body(t10k[0][:1]), "application/json", concurrency=4, seconds=0.5)
    assert good.requests > 0 and good.errors == 0 and good.shed == 0
    assert 0 < good.p50_ms <= good.p99_ms

    bad = loadgen.run(server.score_url, b'{"data": "nope"}', "application/json", concurrency=2, seconds=0.3)
    assert bad.requests == 0 and bad.errors > 0  # 400s are errors, not answers

    spread = loadgen.run(server.score_url, data_body(t10k[0][:1]), "application/json", concurrency=20, seconds=0.5)
    assert spread.requests > 0 and spread.errors == 0  # 20 connections over three processes

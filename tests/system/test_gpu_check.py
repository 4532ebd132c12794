"""make gpu-check on a machine without a GPU: every GPU check fails and says why; the rest of it works.

The GPU run itself is committed as bench/results/gpu-*.md (issue 14); here the program runs as make gpu-check
runs it, starting the server itself: its accuracy check through HTTP, and its verdicts where no GPU is visible.
Its parts: tests/unit/test_gpu_check.py, tests/http/test_gpu_check.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO
from tfscoring.process.sizing import visible_gpus

GPU_CHECK = REPO / "bench" / "gpu_check.py"


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

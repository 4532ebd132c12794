"""Triton's perf_analyzer drives the server through the front door unchanged, as it drives Triton: it reads the
model's metadata and configuration from the Open Inference Protocol's paths and sends binary tensors.

perf_analyzer comes from tritonclient 2.41.0's wheel in .venv-perf (make test installs it; see
requirements/perf-analyzer.txt).  It runs a fixed count of requests, never a fixed time.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from model import demo
from tests.support import REPO, FrontDoorProcess

PERF_VENV = REPO / ".venv-perf"
PERF_ANALYZER = PERF_VENV / "bin" / "perf_analyzer"
ENV = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 8", "METRICS_PORT": "0"}

pytestmark = pytest.mark.skipif(not PERF_ANALYZER.exists(), reason="perf_analyzer is not installed (make test does)")


def perf_analyzer(server: FrontDoorProcess, model: str, *options: str) -> subprocess.CompletedProcess:
    cuda_runtime = next(PERF_VENV.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
    argv = [str(PERF_ANALYZER), "-m", model, "-u", server.url.removeprefix("http://"), "-i", "http"]
    # Zeros: perf_analyzer's default random bytes are NaN and infinities for a float input, which are refused.
    argv += ["--input-data", "zero", "--concurrency-range", "2", "--measurement-mode", "count_windows"]
    argv += ["--measurement-request-count", "50", "--max-trials", "3", "--stability-percentage", "100", *options]
    env = {**os.environ, "LD_LIBRARY_PATH": str(cuda_runtime)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)


def test_perf_analyzer_measures_the_howto_model(model_dir, tmp_path):
    with FrontDoorProcess(model_dir, tmp_path, ENV) as server:
        run = perf_analyzer(server, "tf-dnn-mnist", "-b", "8")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Throughput:" in run.stdout and "error" not in run.stdout.lower()


def test_perf_analyzer_measures_a_graph_of_two_inputs_of_different_dtypes_and_ranks(tmp_path):
    model_dir: Path = tmp_path / "demo" / "1"
    demo.build(model_dir, kind="two-inputs")
    with FrontDoorProcess(model_dir, tmp_path, ENV) as server:
        run = perf_analyzer(server, "demo", "-b", "4")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Throughput:" in run.stdout and "error" not in run.stdout.lower()

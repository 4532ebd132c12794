"""The short soak: `make soak`'s code for 25 s at concurrency 64, on the server as `make serve` starts it.

`make soak` runs 5 minutes and allows a worker's memory to grow 10 % from the
warm-up sample (30 s in) to the end; measured on 2 cores, the workers (about
615 MiB each, mostly TensorFlow) grew 1.8-2.6 %, levelling off after the first
two minutes.  Here the first sample is taken 5 s into the run and the same
10 % applies: the workers grew 0.4-1.6 % over these 20 s in three runs, so 10 %
fails only for a leak of more than ~5 KB per request (60 MiB over the 12 000-15 000
requests of the run), e.g. a 64-row body or its decoded rows kept.
"""

from __future__ import annotations

import shutil

import pytest

from bench.soak import soak, soak_new_server, write_bodies
from tests.support import ISOLATED_SETTINGS, SCORE_PY, ServerProcess

DURATION_S = 25
CONCURRENCY = 64
WARMUP_S = 5
GROWTH_LIMIT_PCT = 10.0

pytestmark = pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed (make test installs it)")


def test_a_short_soak_has_zero_errors_and_bounded_worker_memory(model_dir, data_dir, tmp_path, monkeypatch):
    for name in ISOLATED_SETTINGS:  # the server's settings are make serve's defaults, not the caller's shell's
        monkeypatch.delenv(name, raising=False)
    summary = soak_new_server(
        model_dir,
        data_dir,
        DURATION_S,
        CONCURRENCY,
        WARMUP_S,
        tmp_path,
        env={"METRICS_PORT": "0"},  # other servers of the test run may hold the default port
        growth_limit_pct=GROWTH_LIMIT_PCT,
    )
    print("\n" + summary.report())

    assert summary.requests > 0
    assert summary.errors == {}
    assert summary.workers, "no worker's memory was sampled"
    assert len(summary.memory_samples) >= (DURATION_S - WARMUP_S) // 5
    assert summary.max_growth_pct <= GROWTH_LIMIT_PCT
    assert summary.passed


def test_the_soak_counts_503_answers_as_errors(model_dir, t10k, tmp_path):
    """The instrument itself: on an overloaded server (one worker, one row per session call, a 64-row queue)
    the soak reports the 503s by status and fails."""
    env = {
        "WORKER_COUNT": "1",
        "GUNICORN_CMD_ARGS": "--threads 16",
        "MAX_BATCH_ROWS": "1",
        "MAX_QUEUE_ROWS": "64",
        "METRICS_PORT": "0",
        "LOG_REQUESTS": "errors",
    }
    images, _ = t10k
    bodies = write_bodies(images, tmp_path / "bodies.jsonl")
    server = ServerProcess(SCORE_PY, model_dir, tmp_path, env).wait_healthy()
    try:
        summary = soak(server.score_url, bodies, 5, CONCURRENCY, 2, server.process.pid, "crowded")
    finally:
        server.stop()
    print("\n" + summary.report())

    assert summary.errors.get("status 503", 0) > 0
    assert set(summary.errors) == {"status 503"}
    assert summary.statuses["200"] + summary.statuses["503"] == summary.requests
    assert not summary.passed

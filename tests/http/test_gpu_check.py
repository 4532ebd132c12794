"""make gpu-check's load generator against the real server: answers and errors counted apart (the rest of the
program: tests/unit/test_gpu_check.py, tests/system/test_gpu_check.py)."""

from __future__ import annotations

from bench import loadgen
from tests.support import data_body


def test_the_load_generator_counts_answers_and_errors_apart(server, t10k):
    good = loadgen.run(server.score_url, data_body(t10k[0][:1]), "application/json", concurrency=4, seconds=0.5)
    assert good.requests > 0 and good.errors == 0 and good.shed == 0
    assert 0 < good.p50_ms <= good.p99_ms

    bad = loadgen.run(server.score_url, b'{"data": "nope"}', "application/json", concurrency=2, seconds=0.3)
    assert bad.requests == 0 and bad.errors > 0  # 400s are errors, not answers

    spread = loadgen.run(server.score_url, data_body(t10k[0][:1]), "application/json", concurrency=20, seconds=0.5)
    assert spread.requests > 0 and spread.errors == 0  # 20 connections over several processes

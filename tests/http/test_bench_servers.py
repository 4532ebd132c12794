"""make bench's own parts: the ceiling behind the front door (each server compared with its own path:
tests/unit/test_bench_servers.py)."""

from __future__ import annotations

from bench import run
from tests.support import FrontDoorProcess, post


def test_the_empty_ceiling_is_admitted_by_the_front_door_and_answers(model_dir, tmp_path):
    # Behind nginx, a worker is served only once it reports its state; the ceiling does, as score.py does.
    env = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 4"}
    with FrontDoorProcess(model_dir, tmp_path, env, entry_script=run.EMPTY_SCORE_PY) as ceiling:
        assert ceiling.probe("ready") == 200
        answer = post(ceiling.score_url, b'{"data": [[0.5]]}')
        assert answer.status_code == 200 and answer.json() == [0]

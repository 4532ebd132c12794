"""make bench's own parts: the ceiling behind the front door, and each server compared with its own path."""

from __future__ import annotations

import argparse

from bench import run
from tests.support import FrontDoorProcess, post


def test_the_empty_ceiling_is_admitted_by_the_front_door_and_answers(model_dir, tmp_path):
    # Behind nginx, a worker is served only once it reports its state; the ceiling does, as score.py does.
    env = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 4"}
    with FrontDoorProcess(model_dir, tmp_path, env, entry_script=run.EMPTY_SCORE_PY) as ceiling:
        assert ceiling.probe("ready") == 200
        answer = post(ceiling.score_url, b'{"data": [[0.5]]}')
        assert answer.status_code == 200 and answer.json() == [0]


def test_each_server_is_compared_with_the_ceiling_of_its_own_path():
    def cell(target: str, rps: float) -> run.Cell:
        return run.Cell(target, "json", 1, 16, rps, 1.0, 2.0, 0)

    cells = [cell("baseline", 100), cell("ours", 300), cell("ceiling", 600), cell("ours-direct", 400)]
    cells.append(cell("ceiling-direct", 800))
    table = run.markdown(cells, "test machine", argparse.Namespace(rounds=2, seconds=5))
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in table.splitlines()[4:]}
    assert rows["ours"] == "0.50x"  # 300 / 600, the ceiling through the front door
    assert rows["ours-direct"] == "0.50x"  # 400 / 800, the direct ceiling
    assert rows["baseline"] == "0.12x"  # 100 / 800: the how-to runs on azmlinfsrv's port, as Azure ML runs it

"""make bench's own parts, in-process: each server compared with the ceiling of its own path (the ceiling behind the
front door: tests/http/test_bench_servers.py)."""

from __future__ import annotations

import argparse

from bench import run


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

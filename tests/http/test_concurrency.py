"""Many concurrent callers, across gunicorn threads and workers, each get the answers to their own rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.support import data_body, post

CALLERS = 32
REQUESTS_EACH = 6


def test_concurrent_callers_get_their_own_answers_in_order(server, howto_server, t10k):
    images, _ = t10k
    rows = images[:2000]
    expected = np.concatenate(
        [post(howto_server.score_url, data_body(rows[i : i + 500])).json() for i in range(0, len(rows), 500)]
    )
    rng = np.random.default_rng(7)
    jobs = [
        rng.choice(len(rows), size=int(rng.integers(1, 150)), replace=False) for _ in range(CALLERS * REQUESTS_EACH)
    ]

    def call(picked: np.ndarray) -> tuple[np.ndarray, list[int], int]:
        response = post(server.score_url, data_body(rows[picked]))
        return picked, response.json(), response.status_code

    with ThreadPoolExecutor(CALLERS) as pool:
        results = list(pool.map(call, jobs))

    assert [status for _, _, status in results] == [200] * len(jobs)
    for picked, answer, _ in results:
        assert answer == expected[picked].tolist()

"""Nothing a client sends takes a worker down: hostile bodies through the front door, on make serve's defaults.

The server runs as `make serve` runs it: serve.py sizes the workers and threads to this machine (2 workers x 16
threads on 2 cores), nginx in front, 64 MiB bodies.  Attack bodies are sent concurrently while correct requests
go alongside: every correct request is answered 200 with the right class, every attack gets a worded answer
(a 4xx, a 503 with Retry-After, or a 200 for an image the model can take), and every worker is the one that
started: none killed, none replaced.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.support import FrontDoorProcess, data_body, post, worker_pids

ATTACKERS = 24
CORRECT = 40
TALL = 4096 * 4096  # 1 x 16,777,216 pixels: images.MAX_PIXELS in one row


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def served(model_dir, tmp_path_factory):
    with FrontDoorProcess(model_dir, tmp_path_factory.mktemp("hostile")) as server:  # make serve's defaults
        server.workers = worker_pids(server.gunicorn_pid())
        yield server


def _attack_while_correct_requests_go(server, t10k, attack: bytes, content_type: str, attackers: int) -> list:
    images, _ = t10k
    rows = images[:CORRECT]
    expected = post(server.score_url, data_body(rows)).json()
    with ThreadPoolExecutor(attackers + 8) as pool:
        attacks = [pool.submit(post, server.score_url, attack, content_type, timeout=300) for _ in range(attackers)]
        correct = [pool.submit(post, server.score_url, data_body(rows[i : i + 1]), timeout=300) for i in range(CORRECT)]
        answers = [future.result() for future in correct]
        refused = [future.result() for future in attacks]
    for i, answer in enumerate(answers):
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json() == [expected[i]]
    for answer in refused:
        assert answer.headers["Content-Type"].startswith("application/json"), answer.text[:300]
        assert answer.status_code in (200, 400, 413, 503), answer.text[:300]
        if answer.status_code == 503:
            assert answer.headers["Retry-After"]
    assert worker_pids(server.gunicorn_pid()) == server.workers, server.log()[-3000:]
    assert "killed, to be replaced" not in server.log()
    return refused


def test_concurrent_tall_pngs_leave_every_worker_alive_and_correct_requests_answered(served, t10k):
    tall = _png(np.zeros((1, TALL), np.uint8))
    assert len(tall) < 64 * 1024
    _attack_while_correct_requests_go(served, t10k, tall, "image/png", ATTACKERS)


def test_concurrent_16_bit_pngs_leave_every_worker_alive(served, t10k):
    wide = _png(np.zeros((4096, 4096), np.uint16))
    _attack_while_correct_requests_go(served, t10k, wide, "image/png", 16)


@pytest.mark.parametrize("form", ["data", "inputs", "instances"])
def test_concurrent_bodies_of_nested_empty_lists_leave_every_worker_alive(served, t10k, form):
    body = b'{"%s": [' % form.encode() + b"[]," * (12 << 20) + b"[]]}"  # 36 MiB
    refused = _attack_while_correct_requests_go(served, t10k, body, "application/json", 2)
    for answer in refused:
        assert answer.status_code in (400, 413, 503), answer.text[:300]
        assert answer.json()["error"]


def test_deep_nesting_anywhere_gets_a_400_not_a_500(served):
    deep = b"[" * 1000 + b"]" * 1000
    for body in (
        b'{"signature_name": ' + deep + b', "instances": [[0]]}',
        b'{"inputs": [{"name": ' + deep + b', "shape": [1, 784], "datatype": "FP32", "data": [0]}]}',
        b'{"inputs": [{"name": "x", "shape": ' + deep + b', "datatype": "FP32", "data": [0]}]}',
        b'{"data": ' + deep + b"}",
        b'{"inputs": ' + deep + b"}",
    ):
        answer = post(served.score_url, body)
        assert answer.status_code == 400, (body[:80], answer.status_code, answer.text[:300])
        assert answer.json()["error"]

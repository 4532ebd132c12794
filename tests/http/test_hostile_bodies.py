"""Nothing a client sends takes a worker down: hostile bodies through the front door, on make serve's defaults.

The server runs as `make serve` runs it: serve.py sizes the workers and threads to this machine (2 workers x 16
threads on 2 cores), nginx in front, 64 MiB bodies.  Attack bodies are sent concurrently while correct requests
go alongside: every correct request is answered 200 with the right class, every attack gets a worded answer
(a 4xx, a 503 with Retry-After, or a 200 for an image the model can take), and every worker is the one that
started: none killed, none replaced.
"""

from __future__ import annotations

import io
import json
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


def test_concurrent_bodies_just_under_the_value_count_are_parsed_and_leave_every_worker_alive(served, t10k):
    """Bodies the count lets through, whose parse makes the most Python objects: a dict per value."""
    body = b'{"instances": [' + b"{}," * 1_500_000 + b"{}]}"
    refused = _attack_while_correct_requests_go(served, t10k, body, "application/json", 6)
    for answer in refused:
        assert answer.status_code in (400, 503), answer.text[:300]


def _jpeg(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_jpeg_with_its_scan_data_cut_and_its_end_marker_kept_gets_a_400(served, t10k):
    images, _ = t10k
    whole = _jpeg((images[0].reshape(28, 28) * 255).astype(np.uint8))
    scan = whole.index(b"\xff\xda")
    cut = whole[: scan + (len(whole) - scan) // 3] + b"\xff\xd9"
    answer = post(served.score_url, cut, "image/jpeg")
    assert answer.status_code == 400, answer.text
    assert "JPEG" in answer.json()["error"]
    assert post(served.score_url, whole, "image/jpeg").status_code == 200


def test_a_jpeg_padded_with_marker_segments_is_refused_before_it_is_decoded(served, t10k):
    images, _ = t10k
    whole = _jpeg((images[0].reshape(28, 28) * 255).astype(np.uint8))
    padded = whole[:2] + b"\xff\xe1\x00\x02" * 2_000_000 + whole[2:]  # 8 MB of empty APP1 segments
    answer = post(served.score_url, padded, "image/jpeg")
    assert answer.status_code == 400, answer.text[:300]
    assert "segments" in answer.json()["error"]


def test_scores_overflowing_inside_the_graph_get_no_made_up_class_id(served, t10k):
    """float32's largest values overflow in the how-to's graph: its scores come out all equal, no class told."""
    images, _ = t10k
    answer = post(served.score_url, data_body([[3.4e38] * 784, images[0].tolist()]))
    assert answer.status_code == 200, answer.text
    first, second = answer.json()
    assert first is None and isinstance(second, int)


@pytest.mark.parametrize(("value", "datatype"), [(2**53 + 1, "INT64"), (2**24 + 1, "INT32"), (2**63 + 1, "UINT64")])
def test_an_integer_a_float32_input_cannot_hold_is_refused_not_rounded(served, value, datatype):
    tensor = {"name": "network/X", "shape": [1, 784], "datatype": datatype, "data": [value] + [0] * 783}
    answer = post(served.url + "/v2/models/tf-dnn-mnist/infer", json.dumps({"inputs": [tensor]}).encode())
    assert answer.status_code == 400, answer.text[:300]
    assert str(value) in answer.json()["error"] and "exactly" in answer.json()["error"]
    assert "fraction" not in answer.json()["error"]


def test_an_integer_beyond_64_bits_is_refused_not_rounded(served):
    answer = post(served.score_url, b'{"instances": [[18446744073709551617' + b", 0" * 783 + b"]]}")
    assert answer.status_code == 400, answer.text[:300]
    assert "64-bit" in answer.json()["error"]

"""Fuzzing POST /score on the real azmlinfsrv: any body, any Content-Type, a 2xx or a 4xx JSON error, never a 5xx.

The bodies are tests/strategies.py's, as in tests/unit/test_fuzz_decode.py (arbitrary bytes, arbitrary JSON,
bodies a mutation or two away from valid JSON, raw float32 and .npy bodies),
sent with a random Content-Type.  The server must answer each one as the parser
does in-process: 200 with one class id per row, or the parser's own 400/413 and
message as `{"error": "..."}`.  Afterwards every worker still answers, and the
same rows get the same class ids as before the fuzzing: no worker is stuck or
damaged.  Each request has a timeout, so a hung worker fails the test too.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from hypothesis import event, given
from werkzeug.http import parse_options_header

from tests.http.conftest import SERVER_ENV
from tests.strategies import fuzz, requests_to_send
from tests.support import data_body, post
from tfscoring.errors import ScoringError
from tfscoring.interface import Interface, TensorSpec
from tfscoring.protocols import raw, registry
from tfscoring.protocols.limits import Limits

WIDTH = 784
LIMITS = Limits(max_rows=int(SERVER_ENV["MAX_REQUEST_ROWS"]))  # and the server's default IMAGE_SCALE

# The how-to's model as the server names it (tests/http/conftest.py serves models/tf-dnn-mnist/1).
INPUT = TensorSpec("network/X", "network/X:0", np.dtype("float32"), (WIDTH,))
OUTPUT = TensorSpec("network/output/MatMul", "network/output/MatMul:0", np.dtype("float32"), (10,))
INTERFACE = Interface("tf-dnn-mnist", "1", (INPUT,), (OUTPUT,))


def parsed_in_process(body: bytes, content_type: str | None) -> tuple[int, object]:
    """What the server must answer: (200, (form, rows)) or (status, error message), from the parser itself."""
    mimetype = parse_options_header(content_type or "")[0].lower()
    try:
        decoded = registry.find(mimetype, {}).decode(body, INTERFACE, LIMITS)  # the codec score.py picks
    except ScoringError as err:
        return err.status_code, err.message
    return 200, (decoded.codec.name, decoded.rows)


def answered_rows(form: str, answer: object) -> list:
    """The per-row answers in an answer of the given form (a codec's name): class ids, or rows of 10 output values."""
    if form not in ("oip_json", "tfserving_rows", "tfserving_columns"):  # the how-to's, and the binary bodies'
        assert all((type(c) is int and 0 <= c <= 9) or c is None for c in answer)  # null: no class told
        return answer
    if form == "oip_json":
        (output,) = answer["outputs"]
        assert output["datatype"] == "FP32" and output["shape"][1:] == [10]
        return [output["data"][i : i + 10] for i in range(0, len(output["data"]), 10)]
    rows = answer["predictions" if form == "tfserving_rows" else "outputs"]
    assert all(len(row) == 10 for row in rows)
    return rows


@pytest.fixture(scope="module")
def answers_before(server, t10k) -> tuple[np.ndarray, list[int]]:
    """Class ids of 64 t10k rows, asked before any fuzzing."""
    rows = t10k[0][:64]
    response = post(server.score_url, data_body(rows))
    assert response.status_code == 200, response.text
    return rows, response.json()


@fuzz(1000)
@given(request=requests_to_send)
def test_any_body_with_any_content_type_gets_the_parsers_answer_never_a_5xx(server, answers_before, request):
    body, content_type = request
    response = post(server.score_url, body, content_type, timeout=30)  # a stuck worker fails here
    assert response.status_code < 500, response.text
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    status, expected = parsed_in_process(body, content_type)
    event(f"status {response.status_code}")
    assert response.status_code == status, (answer, expected)
    if status == 200:
        form, rows = expected
        assert len(answered_rows(form, answer)) == rows
    else:
        assert answer == {"error": expected}
        assert isinstance(answer["error"], str) and answer["error"]


def test_after_the_fuzzing_every_worker_answers_as_before(server, answers_before):
    """The health probe answers, and 16 concurrent requests (as many as both workers' threads) get the same ids."""
    assert requests.get(server.url + "/", timeout=10).text == "Healthy"
    rows, before = answers_before
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: post(server.score_url, data_body(rows), timeout=30), range(16)))
    assert [a.status_code for a in answers] == [200] * 16
    assert all(a.json() == before for a in answers)
    answer = post(server.score_url, rows.astype("<f4").tobytes(), raw.CONTENT_TYPE, timeout=30)
    assert answer.json() == before

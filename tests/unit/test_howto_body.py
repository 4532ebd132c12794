"""The request body contract: {"data": [[784 numbers], ...]} becomes a float32 batch; anything else is refused.

Read as the server reads a JSON body at /score (tests/support.py's json_rows: forms.decode_fast, the rows in C, then
check_json_body and decode_json), for a model of one float32 input of rows; and the two paths of
tfscoring/protocols/decode.py that reading takes, the fast one (simdjson) and the careful one (orjson + to_batch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support import data_body, json_rows
from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.protocols import decode

WIDTH = 784


def row(value: object = 0.5, at: int | None = None) -> list:
    values: list = [0.25] * WIDTH
    if at is not None:
        values[at] = value
    return values


def test_rows_become_a_float32_batch_in_order():
    rows = [[float(i)] * WIDTH for i in range(3)]
    batch = json_rows(data_body(rows), WIDTH, max_rows=10)
    assert batch.dtype == np.float32
    assert batch.shape == (3, WIDTH)
    assert batch[:, 0].tolist() == [0.0, 1.0, 2.0]


def test_integers_and_floats_mix():
    batch = json_rows(data_body([[0, 1] * (WIDTH // 2)]), WIDTH, max_rows=1)
    assert batch[0, :2].tolist() == [0.0, 1.0]


def test_other_fields_are_ignored():
    assert json_rows(b'{"id": 7, "data": [' + json.dumps(row()).encode() + b"]}", WIDTH, 1).shape == (1, WIDTH)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "body is empty"),
        (b"   \n", "body is empty"),
        (b"hello", "body is not valid JSON"),
        (b'{"data": [[1, 2', "body is not valid JSON: unexpected end of data"),
        (b'{"data": []} trailing', "body is not valid JSON"),
        (b'{"data": "\xff"}', "not valid UTF-8"),
        (b"[[1, 2]]", "body must be a JSON object"),
        (b'"data"', "body must be a JSON object"),
        (b'{"data": "abc"}', '"data" must be a list of rows'),
        (b'{"data": {"a": 1}}', '"data" must be a list of rows'),
        (b'{"data": null}', '"data" must be a list of rows like {"data": [[784 numbers], ...]}, got null'),
        (b'{"data": []}', '"data" has no rows'),
        (b'{"data": [NaN]}', "non-finite number at line 1 column 11"),
        (b'{"data": [[Infinity]]}', "non-finite number"),
        (b'{"data": [[-Infinity]]}', "non-finite number"),
        (b'{"data": [[1e400]]}', "non-finite number"),
    ],
)
def test_malformed_documents_are_refused_with_what_is_wrong(raw, message):
    with pytest.raises(BadRequest) as caught:
        json_rows(raw, WIDTH, max_rows=10)
    assert message in caught.value.message
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (row(), 'row 0 of "data" is a number (0.25), not a list of 784 numbers; wrap a single image as [[...]]'),
        ([row(), "x"], "row 1 of \"data\" is a string ('x')"),
        ([row()[:783]], 'row 0 of "data" has 783 values; expected shape (N, 784)'),
        ([row(), [*row(), 1.0]], 'row 1 of "data" has 785 values; expected shape (N, 784)'),
        ([row("0.5", at=5)], "row 0, column 5 of \"data\" is a string ('0.5'); every value must be a number"),
        ([row(None, at=0)], 'row 0, column 0 of "data" is null'),
        ([row(True, at=783)], 'row 0, column 783 of "data" is a boolean (true)'),
        ([row([1.0], at=2)], 'row 0, column 2 of "data" is a list of 1 items'),
        ([row({"v": 1}, at=3)], 'row 0, column 3 of "data" is an object'),
        ([row(), row(1e39, at=9)], 'row 1, column 9 of "data" is outside the float32 range'),
    ],
)
def test_malformed_rows_are_refused_naming_row_and_column(data, message):
    with pytest.raises(BadRequest) as caught:
        json_rows(data_body(data), WIDTH, max_rows=10)
    assert message in caught.value.message


def test_too_many_rows_is_payload_too_large():
    with pytest.raises(PayloadTooLarge) as caught:
        json_rows(data_body([row()] * 3), WIDTH, max_rows=2)
    assert caught.value.status_code == 413
    assert '"data" has 3 rows; the limit is 2 rows per request' in caught.value.message


def test_a_utf8_byte_order_mark_is_ignored():
    assert json_rows(b"\xef\xbb\xbf" + data_body([row()]), WIDTH, max_rows=1).shape == (1, WIDTH)


def test_non_finite_literal_is_named_after_non_ascii_text():
    raw = '{"note": "\u00e9\u00e9\u00e9", "data": [[1, NaN]]}'.encode()
    with pytest.raises(BadRequest, match="non-finite number at line 1 column 30"):
        json_rows(raw, WIDTH, max_rows=1)


def test_a_body_with_more_values_than_the_row_limit_allows_is_refused_before_parsing():
    raw = b'{"data": [[' + b"0," * (4 * WIDTH + 1) + b"0]]}"
    with pytest.raises(
        PayloadTooLarge, match="body holds more than 3136 values; a request takes at most 2 rows of 784"
    ):
        json_rows(raw, WIDTH, max_rows=2)
    assert json_rows(data_body([row(), row()]), WIDTH, max_rows=2).shape == (2, WIDTH)  # a full request still fits


def test_width_comes_from_the_model():
    assert json_rows(data_body([[1, 2, 3]]), 3, max_rows=1).shape == (1, 3)


def test_plain_bodies_take_the_fast_path_and_match_the_careful_one():
    rows = [[i / 7 + j for j in range(WIDTH)] for i in range(5)]
    body = data_body(rows)
    fast = decode._fast_batch(body, WIDTH, max_rows=10)
    assert fast is not None
    careful = decode.to_batch(json.loads(body)["data"], WIDTH, max_rows=10)
    assert fast.dtype == careful.dtype == np.float32
    assert np.array_equal(fast, careful)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # as many values in all as N full rows, but not N rows of 784: flattening alone would accept them
        ([row()[:783], [*row(), 1.0]], 'row 0 of "data" has 783 values'),
        ([[[0.5, 0.5], *row()[:783]], [[], *row()[:783]]], 'row 0, column 0 of "data" is a list of 2 items'),
        ([0.5, [row()[:783], *row()[:784]]], 'row 0 of "data" is a number'),
    ],
)
def test_rows_that_only_add_up_to_full_rows_are_refused(data, message):
    with pytest.raises(BadRequest) as caught:
        json_rows(data_body(data), WIDTH, max_rows=10)
    assert message in caught.value.message


def test_a_duplicate_data_key_is_read_as_the_careful_path_reads_it():
    body = b'{"data": [' + json.dumps(row()).encode() + b'], "data": "x"}'
    with pytest.raises(BadRequest, match='"data" must be a list of rows'):
        json_rows(body, WIDTH, max_rows=1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"data": [[1, 2, 3]], "d\\u0061ta": 5}', '"data" must be a list of rows'),  # escaped duplicate key
        (b'\xef\xbb\xbf\xef\xbb\xbf{"data": [[1, 2, 3]]}', "not valid UTF-8"),  # a second byte order mark
    ],
)
def test_bodies_the_fast_parser_would_read_differently_get_the_careful_answer(raw, message):
    with pytest.raises(BadRequest, match=message):
        json_rows(raw, 3, max_rows=1)


def test_the_howto_clients_numpy_2_body_is_refused_with_the_cause_and_the_fix():
    # The how-to's client: '{"data": [' + str(list(X_test[i])) + ']}'; numpy 2 prints np.float64(0.0) there.
    rows = np.zeros((1, WIDTH)) + 0.5
    body = ('{"data": [' + str(list(rows[0])) + "]}").encode()
    assert b"np.float64(0.5)" in body
    with pytest.raises(BadRequest) as caught:
        json_rows(body, WIDTH, max_rows=10)
    message = caught.value.message
    assert "numpy's np.float64(...) at line 1 column 12" in message
    assert "str(list(array))" in message and 'json.dumps({"data": X.tolist()})' in message

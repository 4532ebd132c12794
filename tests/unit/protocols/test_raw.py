"""Raw bodies (application/octet-stream), for a model of one input of a fixed row shape: the input's values in its own
dtype, little-endian, row after row (numpy: `rows.astype("<f4").tobytes()`); answered as the how-to's form."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.protocols.tables import (
    DEMO,
    PAIR,
    array,
    assert_outcome,
    bad_request,
    decode,
    encode,
    one_input,
    too_large,
)


def le(values: list, dtype: str) -> bytes:
    return np.array(values, np.dtype(dtype).newbyteorder("<")).tobytes()


BODIES = [
    pytest.param(PAIR, le([1, 2.5, -3, 0], "f4"), array([[1, 2.5], [-3, 0]], "FP32"), id="float32 rows"),
    pytest.param(PAIR, le([0.5] * 8, "f4"), array([[0.5, 0.5]] * 4, "FP32"), id="as many rows as the limit"),
    pytest.param(PAIR, le([0.5] * 10, "f4"),
                 too_large("body has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a row over the limit"),
    pytest.param(PAIR, b"", bad_request("body is empty; expected N x 2 float32 values, little-endian "
                                        "(application/octet-stream)"), id="empty"),
    pytest.param(PAIR, le([1, 2, 3], "f4"),
                 bad_request("body is 12 bytes, not a whole number of rows: one row is 2 float32 values = 8 bytes "
                             "(application/octet-stream)"),
                 id="not whole rows"),
    pytest.param(PAIR, le([1, np.nan], "f4"),
                 bad_request("body row 0, column 1 is not a finite FP32 value (NaN, infinity or out of range)"),
                 id="NaN"),
    pytest.param(PAIR, le([1, 2, -np.inf, 0], "f4"),
                 bad_request("body row 1, column 0 is not a finite FP32 value (NaN, infinity or out of range)"),
                 id="infinity"),
    pytest.param(PAIR, np.array([1, 2], ">f4").tobytes(), np.array([1, 2], ">f4").view("<f4").reshape(1, 2),
                 id="read as little-endian, whatever was meant"),
    pytest.param(one_input("FP32", (2, 2)), le([1, 2, 3, 4], "f4"), array([[[1, 2], [3, 4]]], "FP32"),
                 id="rows of the input's shape"),
    pytest.param(one_input("FP64", ()), le([1, 2.5], "f8"), array([1, 2.5], "FP64"), id="float64, a value a row"),
    pytest.param(one_input("FP16", (2,)), le([1.5, 2], "f2"), array([[1.5, 2]], "FP16"), id="float16"),
    pytest.param(one_input("FP16", (2,)), le([1, 0xFFFF], "u2"),
                 bad_request("body row 0, column 1 is not a finite FP16 value (NaN, infinity or out of range)"),
                 id="float16 NaN"),
    pytest.param(one_input("INT32", (2,)), le([3, -4], "i4"), array([[3, -4]], "INT32"), id="int32"),
    pytest.param(one_input("UINT8", ()), bytes([1, 2, 255]), array([1, 2, 255], "UINT8"), id="uint8"),
    pytest.param(one_input("BOOL", (2,)), bytes([1, 0]), array([[True, False]], "BOOL"), id="booleans, a byte each"),
    pytest.param(one_input("BOOL", (2,)), bytes([1, 0, 0, 2]), bad_request("body has BOOL bytes other than 0 and 1"),
                 id="a boolean byte of 2, as the binary tensors' refuse it"),
    pytest.param(one_input("FP32", (-1,)), le([1, 2], "f4"),
                 bad_request("the input 'x' has a free dimension (N, any); send it as .npy (application/x-npy)"),
                 id="an input of a free dimension"),
    pytest.param(DEMO, le([1, 2], "f4"),
                 bad_request("an application/octet-stream body is for a model with one input; this model has 2 "
                             "('image' FP32 (N, 2, 2, 1), 'offset' INT64 (N)): name each, e.g. {\"inputs\": "
                             '{"image": [rows of shape (2, 2, 1)], "offset": [one value per row]}}'),
                 id="a model of two inputs"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "body", "expected"), BODIES)
def test_a_raw_body_is_whole_rows_of_the_inputs_dtype(model, body, expected):
    assert_outcome(decode("raw", body, model), expected)


def test_the_rows_limit_is_the_one_given():
    assert_outcome(
        decode("raw", le([0.5] * 4, "f4"), PAIR, max_rows=1),
        too_large("body has 2 rows; the limit is 1 rows per request (MAX_REQUEST_ROWS)"),
    )


def test_the_answer_is_the_howto_forms_class_ids():
    answer = encode("raw", (np.array([[0.1, 0.9, 0.3], [2, 1, 0], [1, 1, 0]], np.float32),), PAIR)
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == b"[1,0,null]"

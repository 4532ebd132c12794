"""NumPy .npy bodies (application/x-npy), for a model of one input: one array (`np.save`) of shape (N, *row shape),
or (N, values per row) for a fixed row, of any real number type or booleans, converted to the input's dtype where
every value fits it; answered as the how-to's form."""

from __future__ import annotations

import io

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


def npy(values: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, values, version=version, allow_pickle=False)
    return buffer.getvalue()


def header(shape: tuple, descr: str = "<f4") -> bytes:
    """A .npy header alone, claiming `shape`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


ROWS = array([[1, 2.5], [-3, 0]], "FP32")

BODIES = [
    pytest.param(PAIR, npy(ROWS), ROWS, id="float32 rows"),
    pytest.param(PAIR, npy(ROWS.astype(">f8")), ROWS, id="big-endian float64"),
    pytest.param(PAIR, npy(np.array([[1, 2]], "u1")), array([[1, 2]], "FP32"), id="uint8"),
    pytest.param(PAIR, npy(np.array([[-1, 2**24]], "<i8")), array([[-1, 2**24]], "FP32"),
                 id="int64 that float32 holds"),
    pytest.param(PAIR, npy(np.array([[16777217, 2]], "<i8")),
                 bad_request("body row 0, column 0 is an integer that FP32 cannot hold exactly: 16777217 (it would be "
                             "16777216); the input 'x' is FP32"),
                 id="int64 that float32 would round"),
    pytest.param(PAIR, npy(np.asfortranarray(np.arange(6, dtype="<f4").reshape(3, 2))),
                 array([[0, 1], [2, 3], [4, 5]], "FP32"), id="in Fortran order"),
    pytest.param(PAIR, npy(ROWS, version=(2, 0)), ROWS, id="format version 2.0"),
    pytest.param(PAIR, npy(np.zeros((4, 2), "<f4")), np.zeros((4, 2), np.float32), id="as many rows as the limit"),
    pytest.param(PAIR, npy(np.zeros((5, 2), "<f4")),
                 too_large(".npy array has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a row over the limit"),
    pytest.param(PAIR, header((9999999999, 2)),
                 too_large(".npy array has 9999999999 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a header claiming too many rows, refused before any data is read"),
    pytest.param(PAIR, npy(np.array([[True, False]])),
                 bad_request("body holds true or false; the input 'x' takes numbers (FP32)"),
                 id="booleans for a number input"),
    pytest.param(PAIR, npy(np.array([[1, np.nan]], "<f4")),
                 bad_request("body row 0, column 1 is not a finite FP32 value (NaN, infinity or out of range)"),
                 id="NaN"),
    pytest.param(PAIR, npy(np.array([[1, 1e300]])),
                 bad_request("body row 0, column 1 is not a finite FP32 value (NaN, infinity or out of range)"),
                 id="a float64 beyond float32"),
    pytest.param(PAIR, npy(np.array([1, 2], "<f4")),
                 bad_request(".npy array has shape (2,); expected (N, 2) with N >= 1"), id="one row, not wrapped"),
    pytest.param(PAIR, npy(np.array([[1, 2, 3]], "<f4")),
                 bad_request(".npy array has shape (1, 3); expected (N, 2) with N >= 1"), id="rows of another width"),
    pytest.param(PAIR, npy(np.zeros((0, 2), "<f4")),
                 bad_request(".npy array has shape (0, 2); expected (N, 2) with N >= 1"), id="no rows"),
    pytest.param(PAIR, header((True, 2)),
                 bad_request(".npy array has shape (True, 2); expected (N, 2) with N >= 1"), id="a shape of a boolean"),
    pytest.param(PAIR, npy(np.array([["a", "b"]])),
                 bad_request(".npy array has dtype <U1; send real numbers, ideally float32"), id="strings"),
    pytest.param(PAIR, npy(np.array([[1 + 2j, 2]])),
                 bad_request(".npy array has dtype complex128; send real numbers, ideally float32"),
                 id="complex numbers"),
    pytest.param(PAIR, npy(np.zeros(1, [("a", "<f4"), ("b", "<f4")])),
                 bad_request(".npy array has dtype [('a', '<f4'), ('b', '<f4')]; send real numbers, ideally float32"),
                 id="a structured dtype"),
    pytest.param(PAIR, b"not numpy",
                 bad_request("body is not a .npy array (application/x-npy): the magic string is not correct; "
                             "expected b'\\x93NUMPY', got b'not nu'"),
                 id="not .npy"),
    pytest.param(PAIR, b"", bad_request("body is not a .npy array (application/x-npy): EOF: reading magic string, "
                                        "expected 8 bytes got 0"), id="empty"),
    pytest.param(PAIR, npy(ROWS, version=(3, 0)),
                 bad_request("body is not a .npy array (application/x-npy): format version 3.0 is not supported; "
                             "np.save writes 1.0"),
                 id="format version 3.0"),
    pytest.param(PAIR, npy(ROWS).replace(b"'<f4'", b"dtype"),
                 bad_request("body is not a .npy array (application/x-npy): malformed node or string on line 1: "
                             "<ast.Name object>"),  # the object's address left out: the same in every process
                 id="a header numpy cannot read"),
    pytest.param(PAIR, npy(ROWS)[:-4], bad_request(".npy array of shape (2, 2) needs 16 bytes of data, got 12"),
                 id="data cut short"),
    pytest.param(PAIR, npy(ROWS) + b"\0", bad_request(".npy array of shape (2, 2) needs 16 bytes of data, got 17"),
                 id="data past the array"),
    pytest.param(one_input("FP32", (-1,)), header((4, 2**62)),
                 bad_request(".npy array of shape (4, 4611686018427387904) needs 73786976294838206464 bytes of data, "
                             "got 0"),
                 id="a shape whose size overflows 64 bits"),
    pytest.param(one_input("FP32", (2, 2)), npy(np.arange(8, dtype="<f4").reshape(2, 2, 2)),
                 array([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], "FP32"), id="rows of the input's shape"),
    pytest.param(one_input("FP32", (2, 2)), npy(np.arange(8, dtype="<f4").reshape(2, 4)),
                 array([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], "FP32"), id="rows flat"),
    pytest.param(one_input("FP32", (-1,)), npy(np.arange(6, dtype="<f4").reshape(2, 3)),
                 array([[0, 1, 2], [3, 4, 5]], "FP32"), id="rows of a free dimension"),
    pytest.param(one_input("FP32", ()), npy(np.arange(5, dtype="<f4")),
                 too_large(".npy array has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="one value a row, over the limit"),
    pytest.param(one_input("INT32", (2,)), npy(np.array([[1.0, -2.0]])), array([[1, -2]], "INT32"),
                 id="integers written as floats for an integer input"),
    pytest.param(one_input("INT64", (2,)), npy(np.array([[1.0, 2.0**53]])),
                 bad_request("body row 0, column 1 is a float beyond 2**53 (9007199254740992.0), which need not be the "
                             "integer meant; send integers: the input 'x' (INT64) takes integers"),
                 id="a float64 beyond 2**53 for an integer input"),
    pytest.param(one_input("INT32", (2,)), npy(np.array([[1.5, 2]])),
                 bad_request("body row 0, column 0 is not an integer; the input 'x' (INT32) takes integers"),
                 id="a fraction for an integer input"),
    pytest.param(one_input("UINT8", (2,)), npy(np.array([[300, 2]], "<i8")),
                 bad_request("body holds 300, outside the input 'x' (UINT8)'s range 0 to 255"), id="beyond uint8"),
    pytest.param(one_input("BOOL", (2,)), npy(np.array([[True, False]])), array([[True, False]], "BOOL"),
                 id="booleans"),
    pytest.param(one_input("BOOL", (2,)), npy(np.array([[1, 2]], "u1").view(bool)),
                 bad_request("body has BOOL bytes other than 0 and 1"), id="a boolean byte of 2"),
    pytest.param(one_input("BOOL", (2,)), npy(np.array([[1, 0]], "u1")),
                 bad_request("body holds integers; the input 'x' takes true or false (BOOL)"),
                 id="integers for a boolean input"),
    pytest.param(DEMO, npy(ROWS),
                 bad_request("an application/x-npy body is for a model with one input; this model has 2 ('image' "
                             "FP32 (N, 2, 2, 1), 'offset' INT64 (N)): name each, e.g. {\"inputs\": {\"image\": [rows "
                             'of shape (2, 2, 1)], "offset": [one value per row]}}'),
                 id="a model of two inputs"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "body", "expected"), BODIES)
def test_a_npy_body_is_one_array_of_the_inputs_rows(model, body, expected):
    assert_outcome(decode("npy", body, model), expected)


def test_the_answer_is_the_howto_forms_class_ids():
    answer = encode("npy", (np.array([[0.1, 0.9, 0.3], [np.nan, 1, 0]], np.float32),), PAIR)
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == b"[1,null]"

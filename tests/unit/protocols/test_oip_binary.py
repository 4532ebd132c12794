"""The Open Inference Protocol's binary tensor data extension (Triton's): the request's JSON, then each binary tensor's
bytes (little-endian, row-major) in the order of the inputs that claim them with `"parameters": {"binary_data_size":
n}`, the JSON's length in the Inference-Header-Content-Length header.  Inputs in JSON and in binary mix freely.
The answer's binary outputs follow its JSON the same way."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.protocols.tables import (
    DEMO,
    HEADER_LENGTH,
    PAIR,
    array,
    assert_outcome,
    bad_request,
    binary_body,
    decode,
    encode,
    interface,
    one_input,
    spec,
    too_large,
)


def binary(name: str, datatype: str, shape: list[int], size: int) -> dict:
    """An input tensor whose values are `size` bytes of the body's binary data."""
    return {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}}


def le(values: list, dtype: str) -> bytes:
    """The values' bytes, little-endian, as a binary tensor holds them."""
    return np.array(values, np.dtype(dtype).newbyteorder("<")).tobytes()


IMAGE_ROW = [[[0.5], [0.25]], [[1], [0]]]
IMAGE_BYTES = le([0.5, 0.25, 1, 0], "f4")
DEMO_ROW = (array([IMAGE_ROW], "FP32"), array([3], "INT64"))

PAIR_TENSORS = [
    pytest.param([binary("x", "FP32", [2, 2], 16)], [le([1, 2, 3, 4.5], "f4")], array([[1, 2], [3, 4.5]], "FP32"),
                 id="float32 rows"),
    pytest.param([binary("x", "FP32", [4, 2], 32)], [le([0.5] * 8, "f4")], array([[0.5, 0.5]] * 4, "FP32"),
                 id="as many rows as the limit"),
    pytest.param([binary("x", "FP32", [5, 2], 40)], [le([0.5] * 10, "f4")],
                 too_large("input 'x' has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a row over the limit"),
    pytest.param([binary("x", "FP64", [4, 2], 65)], [le([0] * 8, "f8") + b"\0"],
                 too_large("the binary tensor data is 65 bytes, more than 4 rows (MAX_REQUEST_ROWS) of 'x' FP32 "
                           "(N, 2) take (64 at most)"),
                 id="more bytes than the limit's rows of the widest dtype, before the JSON is read"),
    pytest.param([binary("x", "FP64", [1, 2], 16)], [le([1, 2.5], "f8")], array([[1, 2.5]], "FP32"),
                 id="float64 for a float32 input"),
    pytest.param([binary("x", "INT64", [1, 2], 16)], [le([-1, 2**24], "i8")], array([[-1, 2**24]], "FP32"),
                 id="int64 that float32 holds"),
    pytest.param([binary("x", "INT64", [1, 2], 16)], [le([1, 2**24 + 1], "i8")],
                 bad_request("input 'x' row 0, column 1 is an integer that FP32 cannot hold exactly: 16777217 (it "
                             "would be 16777216); the input 'x' is FP32"),
                 id="int64 that float32 would round"),
    pytest.param([binary("x", "UINT8", [1, 2], 2)], [bytes([7, 255])], array([[7, 255]], "FP32"),
                 id="uint8 for a float input"),
    pytest.param([binary("x", "FP32", [1, 2], 8)], [le([1, np.nan], "f4")],
                 bad_request("input 'x' row 0, column 1 is not a finite FP32 value (NaN, infinity or out of range)"),
                 id="NaN"),
    pytest.param([binary("x", "FP64", [1, 2], 16)], [le([1, 1e300], "f8")],
                 bad_request("input 'x' row 0, column 1 is not a finite FP32 value (NaN, infinity or out of range)"),
                 id="a float64 beyond float32"),
    pytest.param([binary("x", "BOOL", [1, 2], 2)], [bytes([1, 0])],
                 bad_request("input 'x' has datatype BOOL; the model's input 'x' is FP32"),
                 id="booleans for a number input"),
    pytest.param([binary("x", "BYTES", [1, 2], 2)], [bytes([1, 0])],
                 bad_request("input 'x' has datatype BYTES; the model's input 'x' is FP32"),
                 id="BYTES for a number input"),
    pytest.param([binary("x", "FP32", [1, 2], 12)], [le([1, 2, 3], "f4")],
                 bad_request("input 'x' has 12 bytes of binary data; its shape [1, 2] of FP32 needs 8"),
                 id="more bytes than the shape"),
    pytest.param([binary("x", "FP32", [1, 2], 0)], [],
                 bad_request("input 'x' has 0 bytes of binary data; its shape [1, 2] of FP32 needs 8"),
                 id="no bytes"),
    pytest.param([binary("x", "FP32", [1, 2], 16)], [le([1, 2], "f4")],
                 bad_request("input 'x' has binary_data_size 16, past the end of the body's binary data"),
                 id="more bytes claimed than the body has"),
    pytest.param([binary("x", "FP32", [1, 2], 8)], [le([1, 2], "f4") + b"\0"],
                 bad_request("the body has 1 bytes of binary data that no input claims"), id="bytes left over"),
    pytest.param([{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}], [b"\0\0"],
                 bad_request("the body has 2 bytes of binary data that no input claims"),
                 id="bytes that a JSON input leaves over"),
    pytest.param([{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}], [], array([[1, 2]], "FP32"),
                 id="no binary data at all"),
]  # fmt: skip

DEMO_TENSORS = [
    pytest.param([binary("image", "FP32", [1, 2, 2, 1], 16), binary("offset", "INT64", [1], 8)],
                 [IMAGE_BYTES, le([3], "i8")], DEMO_ROW, id="every input in binary"),
    pytest.param([binary("offset", "INT64", [1], 8), binary("image", "FP32", [1, 2, 2, 1], 16)],
                 [le([3], "i8"), IMAGE_BYTES], DEMO_ROW, id="the bytes in the order of the inputs that claim them"),
    pytest.param([binary("image", "FP32", [1, 2, 2, 1], 16),
                  {"name": "offset", "datatype": "INT64", "shape": [1], "data": [3]}],
                 [IMAGE_BYTES], DEMO_ROW, id="binary and JSON inputs mixed"),
    pytest.param([binary("image", "FP32", [1, 2, 2, 1], 16), binary("offset", "INT64", [1, 1], 8)],
                 [IMAGE_BYTES, le([3], "i8")], DEMO_ROW, id="one value per row in Triton's shape [N, 1]"),
    pytest.param([binary("image", "FP32", [1, 2, 2, 1], 16), binary("offset", "INT32", [1], 4)],
                 [IMAGE_BYTES, le([3], "i4")], DEMO_ROW, id="int32 for an int64 input"),
    pytest.param([binary("image", "FP32", [1, 2, 2, 1], 16), binary("offset", "UINT64", [1], 8)],
                 [IMAGE_BYTES, le([2**63], "u8")],
                 bad_request("input 'offset' holds 9223372036854775808, outside the input 'offset' (INT64)'s range "
                             "-9223372036854775808 to 9223372036854775807"),
                 id="a uint64 beyond the int64 input"),
    pytest.param([binary("image", "FP32", [1, 2, 2, 1], 16), binary("offset", "FP64", [1], 8)],
                 [IMAGE_BYTES, le([3], "f8")],
                 bad_request("input 'offset' has datatype FP64; the model's input 'offset' is INT64"),
                 id="floats for an integer input"),
    pytest.param([binary("image", "FP32", [1, 2, 2, 1], 16), binary("offset", "INT64", [2], 16)],
                 [IMAGE_BYTES, le([3, 4], "i8")],
                 bad_request("the inputs have different numbers of rows ('image' 1, 'offset' 2); each row needs a "
                             "value of every input"),
                 id="inputs of different rows"),
    pytest.param([binary("image", "FP32", [1, 2, 2, 1], 16)], [IMAGE_BYTES],
                 bad_request("request lacks the input 'offset'"), id="an input missing"),
]  # fmt: skip

OTHER_INPUTS = [
    pytest.param(one_input("BOOL", ()), [binary("x", "BOOL", [2], 2)], [bytes([1, 0])], array([True, False], "BOOL"),
                 id="booleans, a byte each"),
    pytest.param(one_input("BOOL", ()), [binary("x", "BOOL", [2], 2)], [bytes([1, 2])],
                 bad_request("input 'x' has BOOL bytes other than 0 and 1"), id="a boolean byte of 2"),
    pytest.param(one_input("BOOL", ()), [binary("x", "UINT8", [2], 2)], [bytes([1, 0])],
                 bad_request("input 'x' has datatype UINT8; the model's input 'x' is BOOL"),
                 id="bytes for a boolean input"),
    pytest.param(one_input("FP16", (2,)), [binary("x", "FP16", [1, 2], 4)], [le([1.5, -3], "f2")],
                 array([[1.5, -3]], "FP16"), id="float16"),
    pytest.param(one_input("FP16", (2,)), [binary("x", "FP32", [1, 2], 8)], [le([1.5, 70000], "f4")],
                 bad_request("input 'x' row 0, column 1 is not a finite FP16 value (NaN, infinity or out of range)"),
                 id="a float32 beyond float16"),
    pytest.param(one_input("INT32", (2,)), [binary("x", "INT32", [1, 2], 8)], [le([-1, 2**31 - 1], "i4")],
                 array([[-1, 2**31 - 1]], "INT32"), id="int32"),
    pytest.param(one_input("INT32", (2,)), [binary("x", "INT64", [1, 2], 16)], [le([1, 2**31], "i8")],
                 bad_request("input 'x' holds 2147483648, outside the input 'x' (INT32)'s range -2147483648 to "
                             "2147483647"),
                 id="an int64 beyond the int32 input"),
    pytest.param(one_input("UINT8", (2,)), [binary("x", "INT64", [1, 2], 16)], [le([1, -1], "i8")],
                 bad_request("input 'x' holds -1, outside the input 'x' (UINT8)'s range 0 to 255"),
                 id="a negative int64 for a uint8 input"),
    pytest.param(one_input("FP32", (-1,)), [binary("x", "FP32", [2, 3], 24)], [le(list(range(6)), "f4")],
                 array([[0, 1, 2], [3, 4, 5]], "FP32"), id="rows of a free dimension, as the shape says"),
]  # fmt: skip


@pytest.mark.parametrize(("tensors", "blobs", "expected"), PAIR_TENSORS)
def test_each_binary_tensor_is_its_bytes_in_its_shape_and_datatype(tensors, blobs, expected):
    body, headers = binary_body({"inputs": tensors}, *blobs)
    assert_outcome(decode("oip_binary", body, PAIR, headers=headers), expected)


@pytest.mark.parametrize(("tensors", "blobs", "expected"), DEMO_TENSORS)
def test_a_request_sends_every_input_once_in_binary_or_in_json(tensors, blobs, expected):
    body, headers = binary_body({"inputs": tensors}, *blobs)
    assert_outcome(decode("oip_binary", body, DEMO, headers=headers), expected)


@pytest.mark.parametrize(("model", "tensors", "blobs", "expected"), OTHER_INPUTS)
def test_binary_values_must_fit_the_input(model, tensors, blobs, expected):
    body, headers = binary_body({"inputs": tensors}, *blobs)
    assert_outcome(decode("oip_binary", body, model, headers=headers), expected)


def test_a_free_dimension_takes_as_many_bytes_as_its_rows_but_no_more_rows_than_the_limit():
    body, headers = binary_body({"inputs": [binary("x", "FP32", [2, 3], 24)]}, le(list(range(6)), "f4"))
    assert_outcome(
        decode("oip_binary", body, one_input("FP32", (-1,)), headers=headers, max_rows=1),
        too_large("input 'x' has 2 rows; the limit is 1 rows per request (MAX_REQUEST_ROWS)"),
    )


BODY, HEADERS = binary_body({"inputs": [binary("x", "FP32", [1, 2], 8)]}, le([1, 2], "f4"))
JSON_LENGTH = int(HEADERS[HEADER_LENGTH])


def header_length_refused(value: str) -> object:
    return bad_request(
        f"Inference-Header-Content-Length is {value!r}; it must be the length in bytes of the JSON at the start of "
        f"the body ({len(BODY)} bytes)"
    )


HEADER_LENGTHS = [
    pytest.param(str(JSON_LENGTH), array([[1, 2]], "FP32"), id="the JSON's length"),
    pytest.param("abc", header_length_refused("abc"), id="not a number"),
    pytest.param("", header_length_refused(""), id="empty"),
    pytest.param("-5", header_length_refused("-5"), id="negative"),
    pytest.param("+5", header_length_refused("+5"), id="signed"),
    pytest.param(" 5", header_length_refused(" 5"), id="with a space"),
    pytest.param("\xb2", header_length_refused("\xb2"), id="a digit beyond ASCII"),
    pytest.param(str(len(BODY) + 1), header_length_refused(str(len(BODY) + 1)), id="beyond the body"),
    pytest.param(str(JSON_LENGTH - 1),
                 bad_request(f"body is not valid JSON: unexpected end of data at line 1 column {JSON_LENGTH}"),
                 id="short of the JSON"),
    pytest.param(str(JSON_LENGTH + 1),
                 bad_request("body is not valid JSON: unexpected content after document at line 1 column "
                             f"{JSON_LENGTH + 1}"),
                 id="past the JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("length", "expected"), HEADER_LENGTHS)
def test_the_header_length_must_be_where_the_json_ends(length, expected):
    assert_outcome(decode("oip_binary", BODY, PAIR, headers={HEADER_LENGTH: length}), expected)


def test_the_request_says_its_id_and_the_outputs_it_asks_for_as_in_json():
    document = {
        "id": "b-1",
        "inputs": [binary("x", "FP32", [1, 2], 8)],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_body(document, le([1, 2], "f4"))
    decoded = decode("oip_binary", body, PAIR, headers=headers)
    assert_outcome(decoded, array([[1, 2]], "FP32"))
    assert (decoded.id, decoded.outputs, decoded.binary) == ("b-1", (0,), frozenset({0}))


NAMES = b'{"model_name":"m","model_version":"1","outputs":['


def test_outputs_asked_as_binary_data_are_their_bytes_after_the_json():
    model = interface(spec("x", "FP32", (2,)), [spec("flag", "BOOL", (1,)), spec("h", "FP16", (2,))])
    outputs = (np.array([[True], [False]]), np.array([[1.5, -3], [0, 2]], np.float16))
    document = {"inputs": [binary("x", "FP32", [2, 2], 16)], "parameters": {"binary_data_output": True}}
    body, headers = binary_body(document, le([1, 2, 3, 4], "f4"))
    answer = encode("oip_binary", outputs, model, decode("oip_binary", body, model, headers=headers))
    length = int(answer.headers[HEADER_LENGTH])
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.body[:length] == NAMES + (
        b'{"name":"flag","shape":[2,1],"datatype":"BOOL","parameters":{"binary_data_size":2}},'
        b'{"name":"h","shape":[2,2],"datatype":"FP16","parameters":{"binary_data_size":8}}]}'
    )
    assert answer.body[length:] == b"\x01\x00" + le([1.5, -3, 0, 2], "f2")


def test_a_binary_request_that_asks_no_binary_output_is_answered_in_json():
    body, headers = binary_body({"inputs": [binary("x", "FP32", [1, 2], 8)]}, le([1, 2], "f4"))
    answer = encode("oip_binary", (np.array([[0.5, 1, 2]], np.float32),), PAIR,
                    decode("oip_binary", body, PAIR, headers=headers))  # fmt: skip
    assert answer.headers["Content-Type"] == "application/json"
    assert HEADER_LENGTH not in answer.headers
    assert answer.body == NAMES + b'{"name":"y","shape":[1,3],"datatype":"FP32","data":[0.5,1.0,2.0]}]}'

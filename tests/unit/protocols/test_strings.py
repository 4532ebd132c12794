"""Byte strings (BYTES, TensorFlow's DT_STRING) in every form that carries them, bodies to arrays or exact refusals,
and outputs to answers: TF Serving's {"b64": ...} or text, the Open Inference Protocol's strings and length-prefixed
binary tensors, an image or application/octet-stream body as one row; the forms of numbers only refuse them."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from tests.pictures import jpeg_declaring, picture
from tests.unit.protocols.tables import (
    OIP_PATH,
    Decoded,
    assert_outcome,
    bad_request,
    binary_body,
    decode,
    encode,
    interface,
    receive,
    spec,
    too_large,
)

STRINGS = interface(
    spec("raw", "BYTES", ()),
    [spec("length", "INT32", ()), spec("echo_bytes", "BYTES", ()), spec("echo", "BYTES", ())],
)
PAIRS = interface(spec("pair", "BYTES", (2,)), spec("y", "FP32", ()))


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def strings(*values: bytes, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.empty(len(values), object)
    array[:] = list(values)
    return array.reshape(shape or (len(values),))


def lengths(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


FORMS = "the form of numbers only"
CARRY = (
    'the input \'raw\' takes byte strings (BYTES), which {} does not carry: send {{"instances": [{{"b64": '
    '"<base64>"}}, ...]}} (TF Serving\'s forms), an Open Inference Protocol tensor of datatype BYTES, or, for a '
    "model of one string input, the bytes of one row as the body (application/octet-stream, or an image type)"
)

JSON_BODIES = [
    pytest.param("tfserving_rows", {"instances": [b64(b"\xff\x00"), "h\u00e9", b64(b""), ""]},
                 strings(b"\xff\x00", "h\u00e9".encode(), b"", b""), id="rows: b64 and text, empty ones too"),
    pytest.param("tfserving_rows", {"instances": [{"raw": b64(b"ab")}, {"raw": "c"}]}, strings(b"ab", b"c"),
                 id="rows: objects naming the input"),
    pytest.param("tfserving_columns", {"inputs": [b64(b"ab"), "c"]}, strings(b"ab", b"c"), id="columns"),
    pytest.param("tfserving_columns", {"inputs": {"raw": [b64(b"ab")]}}, strings(b"ab"), id="columns by name"),
    pytest.param("tfserving_rows", {"instances": ["a"] * 5},
                 too_large('"instances" has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)'),
                 id="a row over the limit"),
    pytest.param("tfserving_rows", {"instances": [{"b64": "QQ="}]},
                 bad_request('"instances" row 0 is not valid base64 (Incorrect padding); "b64" holds standard base64: '
                             "A-Z, a-z, 0-9, + and /, padded with = to a multiple of 4 characters"),
                 id="b64 cut short"),
    pytest.param("tfserving_rows", {"instances": [{"b64": "QQ==\n"}]},
                 bad_request('"instances" row 0 is not valid base64 (Excess data after padding); "b64" holds standard '
                             "base64: A-Z, a-z, 0-9, + and /, padded with = to a multiple of 4 characters"),
                 id="b64 with a newline"),
    pytest.param("tfserving_rows", {"instances": [{"b64": "Q\u00e9=="}]},
                 bad_request('"instances" row 0 is not valid base64 (string argument should contain only ASCII '
                             'characters); "b64" holds standard base64: A-Z, a-z, 0-9, + and /, padded with = to a '
                             "multiple of 4 characters"),
                 id="b64 beyond ASCII"),
    pytest.param("tfserving_rows", {"instances": [{"b64": ["QQ=="]}]},
                 bad_request('"instances" row 0 has "b64" a list of 1 items; it must be a base64 string'),
                 id="b64 not a string"),
    pytest.param("tfserving_rows", {"instances": [{"b64": "QQ==", "x": 1}]},
                 bad_request("\"instances\" row 0 is an object with the keys 'b64', 'x'; a byte string's object is "
                             '{"b64": "<base64>"} alone'),
                 id="b64 with other keys"),
    pytest.param("tfserving_rows", {"instances": [True]},
                 bad_request("\"instances\" row 0 is a boolean (true); the input 'raw' takes byte strings (BYTES): "
                             '{"b64": "<base64>"} or a string (its UTF-8 bytes)'),
                 id="a boolean"),
    pytest.param("tfserving_rows", {"instances": ["\ud800"]},
                 bad_request("body is not valid JSON: no low surrogate in string at line 1 column 17"),
                 id="a lone surrogate, which has no UTF-8 bytes"),
    pytest.param("tfserving_rows", {"instances": [["a"]]},
                 bad_request('"instances" row 0 is a list nested deeper than the input\'s rank allows: its values are '
                             "nested 1 lists deep"),
                 id="nested deeper than the rank"),
    pytest.param("howto", {"data": ["a"]}, bad_request(CARRY.format("the how-to's {\"data\": ...} form")),
                 id="the how-to's form refuses byte strings"),
    pytest.param("oip_json", {"inputs": [{"name": "raw", "shape": [2], "datatype": "BYTES",
                                          "data": ["a", b64(b"\xff")]}]},
                 strings(b"a", b"\xff"), id="OIP: strings, and b64 objects as TF Serving's"),
    pytest.param("oip_json", {"inputs": [{"name": "raw", "shape": [2, 1], "datatype": "BYTES", "data": ["a", "b"]}]},
                 strings(b"a", b"b"), id="OIP: Triton's [N, 1]"),
    pytest.param("oip_json", {"inputs": [{"name": "raw", "shape": [3], "datatype": "BYTES", "data": ["a", "b"]}]},
                 bad_request("input 'raw' has 2 values; its shape [3] needs 3"), id="OIP: fewer values than the shape"),
    pytest.param("oip_json", {"inputs": [{"name": "raw", "shape": [1], "datatype": "BYTES", "data": [1]}]},
                 bad_request("input 'raw' row 0 is a number (1); the input 'raw' takes byte strings (BYTES): "
                             '{"b64": "<base64>"} or a string (its UTF-8 bytes)'),
                 id="OIP: a number"),
    pytest.param("oip_json", {"inputs": [{"name": "raw", "shape": [1], "datatype": "INT8", "data": [1]}]},
                 bad_request("input 'raw' has datatype INT8; the model's input 'raw' is BYTES"),
                 id="OIP: numbers for a string input"),
]  # fmt: skip


@pytest.mark.parametrize(("form", "body", "expected"), JSON_BODIES)
def test_json_forms_read_b64_and_text(form, body, expected):
    assert_outcome(decode(form, body, STRINGS), expected)


PAIR_BODIES = [
    pytest.param({"instances": [["a", b64(b"b")], ["c", "d"]]}, strings(b"a", b"b", b"c", b"d", shape=(2, 2)),
                 id="rows of two"),
    pytest.param({"instances": [["a"]]},
                 bad_request("\"instances\" has rows of shape (1,); the input 'pair' takes rows of shape (2): a batch "
                             "of shape (N, 2)"),
                 id="a row of one"),
    pytest.param({"instances": [["a", "b"], ["c"]]},
                 bad_request('"instances" holds lists of different lengths; its rows must be nested to one shape'),
                 id="ragged"),
    pytest.param({"instances": ["a", "b"]},
                 bad_request('"instances" row 0 is a string (\'a\'); its values are nested 2 lists deep'),
                 id="values where rows should be"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), PAIR_BODIES)
def test_rows_of_several_strings_are_nested_to_the_shape(body, expected):
    assert_outcome(decode("tfserving_rows", body, PAIRS), expected)


def tensor(size: int, shape=(2,)) -> dict:
    return {"name": "raw", "shape": list(shape), "datatype": "BYTES", "parameters": {"binary_data_size": size}}


BINARY = [
    pytest.param(lengths(b"ab", b""), (2,), strings(b"ab", b""), id="length-prefixed values"),
    pytest.param(lengths(b"\0" * 3, b"x"), (2, 1), strings(b"\0" * 3, b"x"), id="Triton's [N, 1]"),
    pytest.param(struct.pack("<I", 9) + b"ab" + lengths(b""), (2,),
                 bad_request("input 'raw' value 0 says it is 9 bytes long; 6 bytes of its binary data are left"),
                 id="a length past the end"),
    pytest.param(lengths(b"ab") + b"\1\0", (2,),
                 bad_request("input 'raw' has 8 bytes of binary data, which end before value 1 of 2: each value is a "
                             "4-byte little-endian length, then its bytes"),
                 id="a length cut short"),
    pytest.param(lengths(b"ab", b"c", b"d"), (2,),
                 bad_request("input 'raw' has 5 bytes of binary data after its 2 values"), id="bytes left over"),
    pytest.param(b"\0\0\0", (2,),
                 bad_request("input 'raw' has 3 bytes of binary data; its shape [2] of BYTES needs 2 values, each a "
                             "4-byte length and its bytes (8 bytes at least)"),
                 id="fewer bytes than the lengths alone"),
    pytest.param(lengths(*[b"a"] * 5), (5,),
                 too_large("input 'raw' has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a row over the limit"),
]  # fmt: skip


@pytest.mark.parametrize(("blob", "shape", "expected"), BINARY)
def test_binary_tensors_are_length_prefixed_each_length_checked(blob, shape, expected):
    body, headers = binary_body({"inputs": [tensor(len(blob), shape)]}, blob)
    assert_outcome(decode("oip_binary", body, STRINGS, headers=headers), expected)


def test_an_image_body_is_one_row_once_its_header_passed():
    photo = picture(20, 10)
    assert_outcome(receive(photo, STRINGS, content_type="image/jpeg"), strings(photo))
    assert receive(jpeg_declaring(5000, 5000), STRINGS, content_type="image/png") == too_large(
        "image is 5000x5000 = 25000000 pixels for input 'raw' (N); the limit is 16777216 pixels (width x height)"
    )
    assert receive(b"GIF89a", STRINGS, content_type="image/webp") == bad_request(
        "body is not a PNG, JPEG or WebP image for input 'raw' (N) (other formats are refused)"
    )
    assert receive(photo, PAIRS, content_type="image/jpeg") == bad_request(
        "the input 'pair' takes byte strings in a batch of shape (N, 2); an image/jpeg body is one byte string: "
        "send rows in JSON or as binary tensors (the Open Inference Protocol's)"
    )


def test_an_octet_stream_body_is_one_row():
    assert_outcome(decode("raw", b"\0\xff any bytes", STRINGS), strings(b"\0\xff any bytes"))
    assert decode("raw", b"", STRINGS) == bad_request(
        "body is empty; for the string input 'raw' the whole body is one row's bytes (application/octet-stream): "
        "send an empty string in JSON"
    )
    assert decode("npy", b"\x93NUMPY", STRINGS) == bad_request(CARRY.format("a .npy body"))


OUTPUTS = (np.array([3, 1], np.int32), strings(b"\xff\0a", b"ok"), strings(b"\xff\0a", b"ok"))


def test_tf_serving_answers_bytes_outputs_in_base64_and_others_as_text_where_utf8():
    assert encode("tfserving_columns", OUTPUTS, STRINGS).json() == {
        "outputs": {
            "length": [3, 1],
            "echo_bytes": [b64(b"\xff\0a"), b64(b"ok")],
            "echo": [b64(b"\xff\0a"), "ok"],
        }
    }
    assert encode("tfserving_rows", OUTPUTS, STRINGS).json() == {
        "predictions": [
            {"length": 3, "echo_bytes": b64(b"\xff\0a"), "echo": b64(b"\xff\0a")},
            {"length": 1, "echo_bytes": b64(b"ok"), "echo": "ok"},
        ]
    }


def test_open_inference_protocol_answers_strings_in_json_and_length_prefixed_in_binary():
    answer = encode("oip_json", OUTPUTS, STRINGS)
    assert answer.json()["outputs"][2] == {
        "name": "echo", "shape": [2], "datatype": "BYTES", "data": [b64(b"\xff\0a"), "ok"]
    }  # fmt: skip
    binary = encode("oip_json", OUTPUTS, STRINGS, Decoded((), "oip_json", binary=frozenset({1})))
    size = int(binary.headers["Inference-Header-Content-Length"])
    assert binary.body[size:] == lengths(b"\xff\0a", b"ok")


def test_the_infer_path_takes_bytes():
    body = {"inputs": [{"name": "raw", "shape": [1], "datatype": "BYTES", "data": [""]}]}
    assert_outcome(receive(body, STRINGS, path=OIP_PATH), strings(b""))

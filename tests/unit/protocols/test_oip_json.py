"""The Open Inference Protocol (KServe v2, Triton, MLServer) in JSON, as POST /v2/models/<name>/infer receives it:
`{"id", "inputs": [{"name", "shape", "datatype", "data"}], "outputs": [{"name", "parameters"}], "parameters"}`,
data flat in row-major order or nested to the shape; answered `{"model_name", "model_version", "id", "outputs":
[{"name", "shape", "datatype", "data"}]}`, or in the binary tensor extension for the outputs asked so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.unit.protocols.tables import (
    DEMO,
    HEADER_LENGTH,
    PAIR,
    Decoded,
    array,
    assert_outcome,
    bad_request,
    decode,
    encode,
    one_input,
    too_large,
)


def tensor(name: object, datatype: object, shape: object, data: object = None, **fields) -> dict:
    """An input tensor of the request; `data` None: none."""
    return {"name": name, "datatype": datatype, "shape": shape, **({} if data is None else {"data": data}), **fields}


def request(*tensors: dict, **fields) -> dict:
    return {"inputs": list(tensors), **fields}


X = tensor("x", "FP32", [1, 2], [1, 2])  # a row of PAIR's input
IMAGE = tensor("image", "FP32", [1, 2, 2, 1], [0.5, 0.25, 1, 0])  # a row of DEMO's image input
IMAGE_ROW = [[[0.5], [0.25]], [[1], [0]]]
OFFSET = tensor("offset", "INT64", [1], [3])
DEMO_ROW = (array([IMAGE_ROW], "FP32"), array([3], "INT64"))
EXAMPLE = '[{"name": "x", "shape": [1, ...], "datatype": "FP32", "data": [...]}]'
DOCUMENT = '{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [...]}]}'

TENSORS = [
    pytest.param(request(X), array([[1, 2]], "FP32"), id="data flat"),
    pytest.param(request(tensor("x", "FP32", [2, 2], [[1, 2], [3, 4.5]])), array([[1, 2], [3, 4.5]], "FP32"),
                 id="data nested to the shape"),
    pytest.param(request(tensor("x", "FP32", [4, 2], [0.5] * 8)), array([[0.5, 0.5]] * 4, "FP32"),
                 id="as many rows as the limit"),
    pytest.param(request(tensor("x", "FP32", [5, 2], [0.5] * 10)),
                 too_large("input 'x' has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a row over the limit"),
    pytest.param(request(tensor("x", "FP32", [2, 2], [[1, 2]])),
                 bad_request("input 'x' has data nested as [1, 2]; its shape is [2, 2]"), id="nested to another shape"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [[1], [2]])),
                 bad_request("input 'x' has data nested as [2, 1]; its shape is [1, 2]"),
                 id="nested to another shape of as many values"),
    pytest.param(request(tensor("x", "FP32", [2, 2], [1, 2])),
                 bad_request("input 'x' has 2 values; its shape [2, 2] needs 4"), id="fewer values than the shape"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [])),
                 bad_request("input 'x' has 0 values; its shape [1, 2] needs 2"), id="no values"),
    pytest.param(request(tensor("x", "FP32", [1, 3], [1, 2, 3])),
                 bad_request("input 'x' has shape [1, 3]; the input 'x' takes [N, 2] with N >= 1"),
                 id="rows of another shape"),
    pytest.param(request(tensor("x", "FP32", [0, 2], [])),
                 bad_request("input 'x' has shape [0, 2]; the input 'x' takes [N, 2] with N >= 1"), id="no rows"),
    pytest.param(request(tensor("x", "FP32", [2], [1, 2])),
                 bad_request("input 'x' has shape [2]; the input 'x' takes [N, 2] with N >= 1"),
                 id="a shape without the rows"),
    pytest.param(request(tensor("x", "FP32", "1, 2", [1, 2])),
                 bad_request("input 'x' has shape '1, 2'; the input 'x' takes [N, 2] with N >= 1"),
                 id="a shape that is no list"),
    pytest.param(request(tensor("x", "FP32", [1, 2.0], [1, 2])),
                 bad_request("input 'x' has shape [1, 2.0]; the input 'x' takes [N, 2] with N >= 1"),
                 id="a shape of a fraction"),
    pytest.param(request(tensor("x", "FP32", [True, 2], [1, 2])),
                 bad_request("input 'x' has shape [true, 2]; the input 'x' takes [N, 2] with N >= 1"),
                 id="a shape of a boolean"),
    pytest.param(request(tensor("x", "FP32", [1, -2], [1, 2])),
                 bad_request("input 'x' has shape [1, -2]; the input 'x' takes [N, 2] with N >= 1"),
                 id="a negative shape"),
    pytest.param(request({"name": "x", "datatype": "FP32", "data": [1, 2]}),
                 bad_request("input 'x' has shape null; the input 'x' takes [N, 2] with N >= 1"), id="no shape"),
    pytest.param(request({"name": "x", "shape": [1, 2], "data": [1, 2]}),
                 bad_request('input \'x\' has no "datatype" string; the input\'s is "FP32"'), id="no datatype"),
    pytest.param(request(tensor("x", ["FP32"], [1, 2], [1, 2])),
                 bad_request('input \'x\' has no "datatype" string; the input\'s is "FP32"'),
                 id="a datatype that is no string"),
    pytest.param(request(tensor("x", "fp32", [1, 2], [1, 2])),
                 bad_request('input \'x\' has datatype \'fp32\'; the model\'s input \'x\' is "FP32"'),
                 id="a datatype in lower case"),
    pytest.param(request(tensor("x", "BYTES", [1, 2], ["a", "b"])),
                 bad_request("input 'x' has datatype BYTES; the model's input 'x' is FP32"),
                 id="BYTES for a number input"),
    pytest.param(request(tensor("x", "BOOL", [1, 2], [True, False])),
                 bad_request("input 'x' has datatype BOOL; the model's input 'x' is FP32"),
                 id="booleans for a number input"),
    pytest.param(request(tensor("x", "FP32", [1, 2])),
                 bad_request('input \'x\' has no "data" list of values (nor binary_data_size)'), id="no data"),
    pytest.param(request(tensor("x", "FP32", [1, 2], "1, 2")),
                 bad_request('input \'x\' has no "data" list of values (nor binary_data_size)'),
                 id="data that is no list"),
    pytest.param(request(tensor("x", "FP32", [1, 2], ["a", 2])),
                 bad_request("input 'x' at [0] is a string ('a'); every value must be a number"), id="a string"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [1, None])),
                 bad_request("input 'x' at [1] is null; every value must be a number"), id="null"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [[[1, 2]]])),
                 bad_request("input 'x' has data nested as [1, 1, 2]; its shape is [1, 2]"),
                 id="nested deeper than the shape"),
    pytest.param(request(tensor("x", "FP32", [2, 2], [1, 2, 0.5, True])),
                 bad_request("input 'x' holds true or false among its numbers; its datatype FP32 takes numbers"),
                 id="a boolean among numbers"),
    pytest.param(request(tensor("x", "INT64", [1, 2], [1, -2])), array([[1, -2]], "FP32"),
                 id="integers for a float input"),
    pytest.param(request(tensor("x", "UINT8", [1, 2], [7, 255])), array([[7, 255]], "FP32"),
                 id="uint8 for a float input"),
    pytest.param(request(tensor("x", "FP64", [1, 2], [0.5, -2])), array([[0.5, -2]], "FP32"),
                 id="float64 for a float32 input"),
    pytest.param(request(tensor("x", "INT64", [2, 2], [1, 2, 3, 16777217])),
                 bad_request("input 'x' row 1, column 1 is an integer that FP32 cannot hold exactly: 16777217 (it "
                             "would be 16777216); the input 'x' is FP32"),
                 id="an integer float32 would round"),
    pytest.param(request(tensor("x", "UINT64", [1, 2], [2**63 + 1, 2])),
                 bad_request("input 'x' row 0, column 0 is an integer that FP32 cannot hold exactly: "
                             "9223372036854775809 (it would be 9223372036854775808); the input 'x' is FP32"),
                 id="a uint64 float32 would round"),
    pytest.param(request(tensor("x", "INT64", [2, 2], [[1, 2], [3, 4.5]])),
                 bad_request("input 'x' row 1, column 1 is not an integer; its datatype INT64 takes integers"),
                 id="a fraction declared INT64"),
    pytest.param(request(tensor("x", "INT64", [2, 2], [1, 2, 3, 4.5])),
                 bad_request("input 'x' row 1, column 1 is not an integer; its datatype INT64 takes integers"),
                 id="a fraction declared INT64, in flat data: its row and column told"),
    pytest.param(request(tensor("x", "FP32", [2, 2], [0.5, 1, 2, 16777217])),
                 bad_request("input 'x' row 1, column 1 is an integer that FP32 cannot hold exactly: 16777217 (it "
                             "would be 16777216); the input 'x' is FP32"),
                 id="an integer float32 would round among fractions, in flat data"),
    pytest.param(request(tensor("x", "INT8", [1, 2], [200, 2])),
                 bad_request("input 'x' holds 200, outside its datatype INT8's range -128 to 127"),
                 id="beyond the declared int8"),
    pytest.param(request(tensor("x", "FP64", [1, 2], [1e300, 2])),
                 bad_request("input 'x' row 0, column 0 is not a finite FP32 value (NaN, infinity or out of range)"),
                 id="a float64 beyond float32"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [16777217.0, 2])), array([[16777216, 2]], "FP32"),
                 id="a number written with a fraction is rounded as floats are"),
    pytest.param(request(tensor("x:0", "FP32", [1, 2], [1, 2])), array([[1, 2]], "FP32"),
                 id="the input named by its tensor"),
    pytest.param(request(tensor("pixels", "FP32", [1, 2], [1, 2])),
                 bad_request("input 'pixels' is not the model's; its inputs: 'x'"), id="a name that is no input"),
    pytest.param(request(tensor(None, "FP32", [1, 2], [1, 2])),
                 bad_request("input null is not the model's; its inputs: 'x'"), id="no name"),
    pytest.param(request(tensor(5, "FP32", [1, 2], [1, 2])),
                 bad_request("input 5 is not the model's; its inputs: 'x'"), id="a name that is no string"),
    pytest.param(request(tensor("a" * 200, "FP32", [1, 2], [1, 2])),
                 bad_request(f"input '{'a' * 76}... is not the model's; its inputs: 'x'"),
                 id="a long name, cut in the message"),
    pytest.param(request(X, X), bad_request("input 'x' is sent twice"), id="an input twice"),
    pytest.param(request(X, tensor("x:0", "FP32", [1, 2], [1, 2])), bad_request("input 'x' is sent twice"),
                 id="an input twice, by its name and its tensor's"),
    pytest.param(request([1, 2]), bad_request("input tensor 0 is a list of 2 items, not an object"),
                 id="a tensor that is no object"),
    pytest.param(request(), bad_request(f'"inputs" must be a non-empty list of tensors, e.g. {EXAMPLE}'),
                 id="no tensor"),
    pytest.param({"inputs": {"x": [[1, 2]]}}, bad_request(f'"inputs" must be a non-empty list of tensors, e.g. '
                                                          f"{EXAMPLE}"), id="inputs an object"),
    pytest.param({"data": [[1, 2]]}, bad_request(f'"inputs" must be a non-empty list of tensors, e.g. {EXAMPLE}'),
                 id="the how-to's form"),
    pytest.param(request(X, id=7), bad_request('"id" must be a string, got a number (7)'),
                 id="an id that is no string"),
    pytest.param(request(X, parameters=[]), bad_request('"parameters" must be an object'),
                 id="parameters that are no object"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [1, 2], parameters=[])),
                 bad_request('input \'x\' has "parameters" that is not an object'),
                 id="a tensor's parameters that are no object"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [1, 2], parameters={"binary_data_size": -1})),
                 bad_request("input 'x' has binary_data_size -1; it must be a byte count"),
                 id="a negative binary_data_size"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [1, 2], parameters={"binary_data_size": True})),
                 bad_request("input 'x' has binary_data_size true; it must be a byte count"),
                 id="a binary_data_size that is no count"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [1, 2], parameters={"binary_data_size": 8})),
                 bad_request("input 'x' has binary_data_size 8, past the end of the body's binary data"),
                 id="binary data in a body without any"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [1, 2], parameters={"binary_data_size": None})),
                 array([[1, 2]], "FP32"), id="binary_data_size null: the data"),
    pytest.param(request(tensor("x", "FP32", [1, 2], [1, 2], parameters={})), array([[1, 2]], "FP32"),
                 id="empty parameters"),
    pytest.param(request(X, outputs=[{"name": "z"}]), bad_request("output 'z' is not the model's; its outputs: 'y'"),
                 id="an output that is not the model's"),
    pytest.param(request(X, outputs=[{}]), bad_request("output null is not the model's; its outputs: 'y'"),
                 id="an output without a name"),
    pytest.param(request(X, outputs=["y"]),
                 bad_request('"outputs" must be a list of objects naming outputs, e.g. [{"name": "..."}]'),
                 id="outputs that are no objects"),
    pytest.param(request(X, outputs={"name": "y"}),
                 bad_request('"outputs" must be a list of objects naming outputs, e.g. [{"name": "..."}]'),
                 id="outputs an object"),
    pytest.param(request(X, outputs=[{"name": "y", "parameters": [1]}]),
                 bad_request('output \'y\' has "parameters" that is not an object'),
                 id="an output's parameters that are no object"),
    pytest.param(request(X, outputs=[{"name": "y", "parameters": []}]),
                 bad_request('output \'y\' has "parameters" that is not an object'),
                 id="an output's parameters an empty list"),
    pytest.param(request(X, outputs=[{"name": "y", "parameters": None}]), array([[1, 2]], "FP32"),
                 id="an output's parameters null: none"),
]  # fmt: skip

SEVERAL_INPUTS = [
    pytest.param(request(IMAGE, OFFSET), DEMO_ROW, id="every input"),
    pytest.param(request(OFFSET, IMAGE), DEMO_ROW, id="in any order"),
    pytest.param(request(tensor("inputs/pixels:0", "FP32", [1, 2, 2, 1], [0.5, 0.25, 1, 0]),
                         tensor("inputs/shift", "INT64", [1], [3])), DEMO_ROW, id="by their graph tensors' names"),
    pytest.param(request(IMAGE, tensor("offset", "INT64", [1, 1], [3])), DEMO_ROW,
                 id="one value per row in Triton's shape [N, 1]"),
    pytest.param(request(IMAGE, tensor("offset", "INT64", [1, 1], [[3]])), DEMO_ROW,
                 id="one value per row in Triton's shape [N, 1], nested"),
    pytest.param(request(IMAGE, tensor("offset", "INT32", [1], [3])), DEMO_ROW, id="int32 for an int64 input"),
    pytest.param(request(tensor("image", "UINT8", [1, 2, 2, 1], [0, 1, 255, 7]), OFFSET),
                 (array([[[[0], [1]], [[255], [7]]]], "FP32"), array([3], "INT64")), id="uint8 for a float input"),
    pytest.param(request(IMAGE), bad_request("request lacks the input 'offset'"), id="an input missing"),
    pytest.param(request(OFFSET), bad_request("request lacks the input 'image'"), id="the other input missing"),
    pytest.param(request(IMAGE, tensor("offset", "INT64", [2], [3, 4])),
                 bad_request("the inputs have different numbers of rows ('image' 1, 'offset' 2); each row needs a "
                             "value of every input"),
                 id="inputs of different rows"),
    pytest.param(request(IMAGE, tensor("offset", "INT64", [1, 2], [3, 4])),
                 bad_request("input 'offset' has shape [1, 2]; the input 'offset' takes [N] with N >= 1"),
                 id="two values a row for one"),
    pytest.param(request(IMAGE, tensor("offset", "INT64", [1, 1, 1], [3])),
                 bad_request("input 'offset' has shape [1, 1, 1]; the input 'offset' takes [N] with N >= 1"),
                 id="one value nested deeper than Triton's [N, 1]"),
    pytest.param(request(tensor("image", "FP32", [1, 2, 2], [0.5] * 4), OFFSET),
                 bad_request("input 'image' has shape [1, 2, 2]; the input 'image' takes [N, 2, 2, 1] with N >= 1"),
                 id="rows of another rank"),
    pytest.param(request(tensor("image", "FP32", [1, 4], [0.5] * 4), OFFSET),
                 bad_request("input 'image' has shape [1, 4]; the input 'image' takes [N, 2, 2, 1] with N >= 1"),
                 id="rows flat, which only the shape names"),
    pytest.param(request(IMAGE, tensor("offset", "FP32", [1], [3.0])),
                 bad_request("input 'offset' has datatype FP32; the model's input 'offset' is INT64"),
                 id="floats for an integer input"),
    pytest.param(request(IMAGE, tensor("offset", "INT32", [1], [3.5])),
                 bad_request("input 'offset' row 0 is not an integer; its datatype INT32 takes integers"),
                 id="a fraction declared INT32"),
    pytest.param(request(IMAGE, tensor("offset", "INT32", [1], [2**40])),
                 bad_request("input 'offset' holds 1099511627776, outside its datatype INT32's range -2147483648 to "
                             "2147483647"),
                 id="beyond the declared int32"),
    pytest.param(request(IMAGE, tensor("offset", "UINT64", [1], [2**63])),
                 bad_request("input 'offset' holds 9223372036854775808, outside the input 'offset' (INT64)'s range "
                             "-9223372036854775808 to 9223372036854775807"),
                 id="a uint64 beyond the int64 input"),
    pytest.param(request(tensor("image", "INT64", [1, 2, 2, 1], [16777217] * 4), OFFSET),
                 bad_request("input 'image' row 0, at [0, 0, 0] is an integer that FP32 cannot hold exactly: 16777217 "
                             "(it would be 16777216); the input 'image' is FP32"),
                 id="an integer float32 would round, in a row of rank 3"),
]  # fmt: skip

OTHER_INPUTS = [
    pytest.param(one_input("BOOL", ()), request(tensor("x", "BOOL", [2], [True, False])),
                 array([True, False], "BOOL"), id="booleans"),
    pytest.param(one_input("BOOL", ()), request(tensor("x", "BOOL", [1], [1])),
                 bad_request("input 'x' has datatype BOOL but its data holds integers"), id="integers declared BOOL"),
    pytest.param(one_input("BOOL", ()), request(tensor("x", "INT32", [1], [1])),
                 bad_request("input 'x' has datatype INT32; the model's input 'x' is BOOL"),
                 id="integers for a boolean input"),
    pytest.param(one_input("INT32", ()), request(tensor("x", "BOOL", [1], [True])),
                 bad_request("input 'x' has datatype BOOL; the model's input 'x' is INT32"),
                 id="booleans for an integer input"),
    pytest.param(one_input("INT32", ()), request(tensor("x", "UINT8", [1], [7])), array([7], "INT32"),
                 id="uint8 for an int32 input"),
    pytest.param(one_input("INT32", ()), request(tensor("x", "INT64", [1], [2**40])),
                 bad_request("input 'x' holds 1099511627776, outside the input 'x' (INT32)'s range -2147483648 to "
                             "2147483647"),
                 id="an int64 beyond the int32 input"),
    pytest.param(one_input("FP32", (-1,)), request(tensor("x", "FP32", [2, 3], [1, 2, 3, 4, 5, 6])),
                 array([[1, 2, 3], [4, 5, 6]], "FP32"), id="rows of a free dimension, as the shape says"),
    pytest.param(one_input("FP32", (-1,)), request(tensor("x", "FP32", [2, -1], [1, 2, 3, 4, 5, 6])),
                 bad_request("input 'x' has shape [2, -1]; the input 'x' takes [N, any] with N >= 1"),
                 id="a free dimension in the shape"),
]  # fmt: skip

BODIES = [
    pytest.param(b"", bad_request(f"body is empty; expected {DOCUMENT}"), id="empty"),
    pytest.param(b"[]", bad_request(f"body must be a JSON object like {DOCUMENT}, got a list of 0 items"),
                 id="not an object"),
    pytest.param(b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, NaN]}]}',
                 bad_request("body has a non-finite number at line 1 column 76; NaN, Infinity and numbers beyond "
                             "float range are not allowed"),
                 id="NaN"),
    pytest.param(b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, '
                 b'18446744073709551617]}]}',
                 bad_request("integer 18446744073709551617 is outside the 64-bit integer range, which JSON parsers "
                             "round to a float: no input takes it exactly; send a float (e.g. 1.5e20) where rounding "
                             "is meant"),
                 id="an integer beyond 64 bits"),
    pytest.param(b'{"inputs": [[[[[[[[]]]]]]]]}',
                 bad_request("body is nested 9 deep; a request is nested at most 8 deep: 4 rows (MAX_REQUEST_ROWS) of "
                             "'x' FP32 (N, 2)"),
                 id="nested deeper than any request"),
    pytest.param(b'{"inputs": [' + b"1," * 4999 + b"1]}",
                 too_large("body holds up to 5003 JSON values (counting its commas, colons and brackets), more than "
                           "the 4190 a request may hold: 4 rows (MAX_REQUEST_ROWS) of 'x' FP32 (N, 2)"),
                 id="more values than any request holds"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), TENSORS)
def test_each_input_tensor_is_its_rows_as_its_shape_and_datatype_say(body, expected):
    assert_outcome(decode("oip_json", body, PAIR), expected)


@pytest.mark.parametrize(("body", "expected"), SEVERAL_INPUTS)
def test_a_request_sends_every_input_once_with_as_many_rows(body, expected):
    assert_outcome(decode("oip_json", body, DEMO), expected)


@pytest.mark.parametrize(("model", "body", "expected"), OTHER_INPUTS)
def test_the_datatype_sent_must_be_one_the_input_takes(model, body, expected):
    assert_outcome(decode("oip_json", body, model), expected)


@pytest.mark.parametrize(("body", "expected"), BODIES)
def test_a_body_that_is_no_json_object_or_over_the_limits_is_refused_saying_why(body, expected):
    assert_outcome(decode("oip_json", body, PAIR), expected)


ASKED = [
    pytest.param({}, (None, None, frozenset()), id="no id, every output as JSON"),
    pytest.param({"id": "r-1"}, ("r-1", None, frozenset()), id="an id"),
    pytest.param({"id": ""}, ("", None, frozenset()), id="an empty id"),
    pytest.param({"id": None}, (None, None, frozenset()), id="id null"),
    pytest.param({"outputs": []}, (None, None, frozenset()), id="no output named: every output"),
    pytest.param({"outputs": [{"name": "probabilities"}]}, (None, (1,), frozenset()), id="one output"),
    pytest.param({"outputs": [{"name": "probabilities"}, {"name": "label"}, {"name": "label:0"}]},
                 (None, (1, 0), frozenset()), id="in the order asked, each once"),
    pytest.param({"outputs": [{"name": "label", "parameters": {"binary_data": True}}]},
                 (None, (0,), frozenset({0})), id="one output as binary data"),
    pytest.param({"parameters": {"binary_data_output": True}}, (None, None, frozenset({0, 1})),
                 id="every output as binary data"),
    pytest.param({"outputs": [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}],
                  "parameters": {"binary_data_output": True}},
                 (None, (0, 1), frozenset({1})), id="every output as binary data but one"),
    pytest.param({"parameters": {"binary_data_output": 1}}, (None, None, frozenset()),
                 id="binary_data_output only when true"),
    pytest.param({"outputs": [{"name": "label", "parameters": {"binary_data": 1}}]}, (None, (0,), frozenset()),
                 id="binary_data only when true"),
    pytest.param({"parameters": None}, (None, None, frozenset()), id="parameters null"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "expected"), ASKED)
def test_the_request_says_its_id_and_the_outputs_it_asks_for_and_how(fields, expected):
    decoded = decode("oip_json", request(IMAGE, OFFSET, **fields), DEMO)
    assert_outcome(decoded, DEMO_ROW)
    assert (decoded.id, decoded.outputs, decoded.binary) == expected


LABELS = np.array([1, 2], np.int64)
SCORES = np.array([[0.1, 0.9, 0.3], [2, np.nan, 0]], np.float32)
NAMES = b'{"model_name":"m","model_version":"1","outputs":['
LABEL = b'{"name":"label","shape":[2],"datatype":"INT64","data":[1,2]}'
PROBABILITIES = b'{"name":"probabilities","shape":[2,3],"datatype":"FP32","data":[0.1,0.9,0.3,2.0,null,0.0]}'

JSON_ANSWERS = [
    pytest.param({}, NAMES + LABEL + b"," + PROBABILITIES + b"]}",
                 id="every output named, shaped and typed, its data flat, NaN as null"),
    pytest.param({"id": "r-1"}, NAMES + LABEL + b"," + PROBABILITIES + b'],"id":"r-1"}', id="the id echoed"),
    pytest.param({"outputs": [{"name": "probabilities"}, {"name": "label"}]},
                 NAMES + PROBABILITIES + b"," + LABEL + b"]}", id="the outputs asked for, in their order"),
    pytest.param({"outputs": [{"name": "label"}]}, NAMES + LABEL + b"]}", id="only the output asked for"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "expected"), JSON_ANSWERS)
def test_the_answer_names_each_output_asked_for_with_its_shape_datatype_and_data(fields, expected):
    decoded = decode("oip_json", request(IMAGE, OFFSET, **fields), DEMO)
    answer = encode("oip_json", (LABELS, SCORES), DEMO, decoded)
    assert answer.headers["Content-Type"] == "application/json"
    assert HEADER_LENGTH not in answer.headers
    assert answer.body == expected


OUTPUT_DATATYPES = [
    pytest.param(np.array([[1.5, -3]], np.float16), b'"datatype":"FP16","data":[1.5,-3.0]', id="FP16"),
    pytest.param(np.array([[1.5, -3]], np.float64), b'"datatype":"FP64","data":[1.5,-3.0]', id="FP64"),
    pytest.param(np.array([[1, -3]], np.int8), b'"datatype":"INT8","data":[1,-3]', id="INT8"),
    pytest.param(np.array([[1, 65535]], np.uint16), b'"datatype":"UINT16","data":[1,65535]', id="UINT16"),
    pytest.param(np.array([[2**64 - 1, 0]], np.uint64), b'"datatype":"UINT64","data":[18446744073709551615,0]',
                 id="UINT64"),
    pytest.param(np.array([[True, False]]), b'"datatype":"BOOL","data":[true,false]', id="BOOL"),
    pytest.param(np.array([[np.inf, -np.inf]], np.float32), b'"datatype":"FP32","data":[null,null]',
                 id="FP32, infinities as null"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "expected"), OUTPUT_DATATYPES)
def test_an_output_is_answered_with_its_own_datatype(values, expected):
    answer = encode("oip_json", (values,), one_input("FP32", (2,)), Decoded((), "oip_json"))
    assert answer.body == NAMES + b'{"name":"y","shape":[1,2],' + expected + b"}]}"


def test_an_output_array_not_contiguous_is_answered_in_row_major_order():
    transposed = np.array([[1, 3], [2, 4]], np.float32).T  # [[1, 2], [3, 4]] as a view
    body = json.loads(encode("oip_json", (transposed,), one_input("FP32", (2,)), Decoded((), "oip_json")).body)
    assert body["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]


BINARY_ANSWERS = [
    pytest.param({"outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
                  "id": "b"},
                 b'{"name":"probabilities","shape":[2,3],"datatype":"FP32","parameters":{"binary_data_size":24}},'
                 + LABEL + b'],"id":"b"}',
                 SCORES.astype("<f4").tobytes(), id="one output as binary data, NaN's bits as they are"),
    pytest.param({"parameters": {"binary_data_output": True}},
                 b'{"name":"label","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}},'
                 b'{"name":"probabilities","shape":[2,3],"datatype":"FP32","parameters":{"binary_data_size":24}}]}',
                 LABELS.astype("<i8").tobytes() + SCORES.astype("<f4").tobytes(),
                 id="every output as binary data, in the outputs' order"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "expected_json", "expected_binary"), BINARY_ANSWERS)
def test_outputs_asked_as_binary_data_follow_the_json_little_endian(fields, expected_json, expected_binary):
    decoded = decode("oip_json", request(IMAGE, OFFSET, **fields), DEMO)
    answer = encode("oip_json", (LABELS, SCORES), DEMO, decoded)
    length = int(answer.headers[HEADER_LENGTH])
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.body[:length] == NAMES + expected_json
    assert answer.body[length:] == expected_binary

"""TF Serving's row form (its REST API's predict request): `{"instances": [...]}`, one instance per row, an instance
being the input's value, or an object naming each input (several inputs: always); answered `{"predictions": ...}`,
one per row, an object keyed by output names where the model has several outputs."""

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

IMAGE_ROW = [[[0.5], [0.25]], [[1], [0]]]  # one row of DEMO's image input, (2, 2, 1)
INTEGERS = one_input("INT32", (2,))

ONE_INPUT = [
    pytest.param(PAIR, {"instances": [[1, 2], [3, 4.5]]}, array([[1, 2], [3, 4.5]], "FP32"),
                 id="an instance is a row of the input"),
    pytest.param(one_input("FP64", ()), {"instances": [1, 2.5]}, array([1, 2.5], "FP64"),
                 id="an instance is one value, for an input of one value per row"),
    pytest.param(PAIR, {"instances": [{"x": [1, 2]}, {"x:0": [3, 4]}]}, array([[1, 2], [3, 4]], "FP32"),
                 id="instances name the input, by its name or its tensor's"),
    pytest.param(INTEGERS, {"instances": [{"x": [1, 2]}]}, array([[1, 2]], "INT32"),
                 id="instances name an integer input"),
    pytest.param(PAIR, {"instances": [[1, 2]] * 4}, array([[1, 2]] * 4, "FP32"), id="as many rows as the limit"),
    pytest.param(PAIR, {"instances": [[1, 2]] * 5},
                 too_large('"instances" has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)'),
                 id="a row over the limit"),
    pytest.param(INTEGERS, {"instances": [[1, 2]] * 5},
                 too_large('"instances" has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)'),
                 id="a row over the limit, integers"),
    pytest.param(INTEGERS, {"instances": [{"x": [1, 2]}] * 5},
                 too_large('"instances" has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)'),
                 id="a row over the limit, named"),
    pytest.param(PAIR, {"instances": [[1, 2], [3]]},
                 bad_request('row 1 of "instances" has 1 values; expected shape (N, 2)'),
                 id="a row of another width"),
    pytest.param(PAIR, {"instances": [{"x": [1, 2]}, [3, 4]]},
                 bad_request('row 0 of "instances" is an object, not a list of 2 numbers; expected shape (N, 2)'),
                 id="named and unnamed instances mixed"),
    pytest.param(INTEGERS, {"instances": [[1, 2], {"x": [3, 4]}]},
                 bad_request('"instances" at [1] is an object; every value must be a number'),
                 id="named and unnamed instances mixed, integers"),
    pytest.param(PAIR, {"instances": [{"x": [1, 2], "x:0": [3, 4]}]},
                 bad_request("instance 0 names the input 'x' twice ('x' and 'x:0')"), id="an input named twice"),
    pytest.param(PAIR, {"instances": [{"y": [1, 2]}]},
                 bad_request("instance 0 names 'y', which is not an input of the model; its inputs: 'x'"),
                 id="a name that is no input"),
    pytest.param(PAIR, {"instances": [{"x": [1, 2]}, {}]}, bad_request("instance 1 lacks the input 'x'"),
                 id="an instance naming nothing"),
    pytest.param(PAIR, {"instances": []},
                 bad_request('"instances" must be a non-empty list of inputs, one per row, got a list of 0 items'),
                 id="no instance"),
    pytest.param(PAIR, {"instances": {"x": [[1, 2]]}},
                 bad_request('"instances" must be a non-empty list of inputs, one per row, got an object'),
                 id="instances an object"),
    pytest.param(PAIR, {"instances": "x"},
                 bad_request("\"instances\" must be a non-empty list of inputs, one per row, got a string ('x')"),
                 id="instances a string"),
    pytest.param(one_input("BOOL", ()), {"instances": [True, False]}, array([True, False], "BOOL"), id="booleans"),
    pytest.param(one_input("BOOL", ()), {"instances": [1, 0]},
                 bad_request("\"instances\" holds integers; the input 'x' takes true or false (BOOL)"),
                 id="integers for a boolean input"),
    pytest.param(INTEGERS, {"instances": [[1, 2], [3, True]]},
                 bad_request("\"instances\" row 1, column 1 is a boolean; the input 'x' takes numbers (INT32)"),
                 id="a boolean among integers"),
    pytest.param(one_input("FP32", (-1,)), {"instances": [[1, 2, 3], [4, 5, 6]]},
                 array([[1, 2, 3], [4, 5, 6]], "FP32"), id="rows of a free dimension"),
    pytest.param(one_input("FP32", (-1,)), {"instances": [[1, 2, 3], [4, 5]]},
                 bad_request('"instances" holds lists of different lengths; its rows must be nested to one shape'),
                 id="rows of a free dimension, of different lengths"),
]  # fmt: skip

SEVERAL_INPUTS = [
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 3}, {"image": IMAGE_ROW, "offset": -1}]},
                 (array([IMAGE_ROW] * 2, "FP32"), array([3, -1], "INT64")), id="an object naming every input"),
    pytest.param({"instances": [{"offset": 3, "image": [0.5, 0.25, 1, 0]}]},
                 (array([IMAGE_ROW], "FP32"), array([3], "INT64")), id="in any order, a row flat"),
    pytest.param({"instances": [{"inputs/pixels:0": IMAGE_ROW, "inputs/shift": 3}]},
                 (array([IMAGE_ROW], "FP32"), array([3], "INT64")), id="by their graph tensors' names"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 3}] * 5},
                 too_large('"instances" has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)'),
                 id="a row over the limit"),
    pytest.param({"instances": [IMAGE_ROW]},
                 bad_request("instance 0 is a list of 2 items; with 2 inputs each instance is an object naming them: "
                             "'image', 'offset'"),
                 id="an instance that names nothing"),
    pytest.param({"instances": [{"image": IMAGE_ROW}]}, bad_request("instance 0 lacks the input 'offset'"),
                 id="an input missing"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 3}, {"offset": 3}]},
                 bad_request("instance 1 lacks the input 'image'"), id="an input missing in a later instance"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 3, "scale": 2}]},
                 bad_request("instance 0 names 'scale', which is not an input of the model; its inputs: 'image', "
                             "'offset'"),
                 id="a name that is no input"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 3, "inputs/shift:0": 4}]},
                 bad_request("instance 0 names the input 'offset' twice ('offset' and 'inputs/shift:0')"),
                 id="an input named twice"),
    pytest.param({"instances": [{"image": [0.5, 0.25, 1], "offset": 3}]},
                 bad_request("input 'image' of \"instances\" has rows of shape (3,); the input 'image' takes rows of "
                             "shape (2, 2, 1), or rows of 4 values flat: a batch of shape (N, 2, 2, 1)"),
                 id="a row of another shape"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": [3]}]},
                 bad_request("input 'offset' of \"instances\" is nested 2 lists deep, deeper than the input's rank "
                             "allows: the input 'offset' takes one value per row: a batch of shape (N)"),
                 id="a list for one value"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 3.5}]},
                 bad_request("input 'offset' of \"instances\" row 0 is not an integer; the input 'offset' (INT64) "
                             "takes integers"),
                 id="a fraction for an integer"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": True}]},
                 bad_request("input 'offset' of \"instances\" holds true or false; the input 'offset' takes numbers "
                             "(INT64)"),
                 id="a boolean for an integer"),
    pytest.param({"instances": [{"image": [0.5, 0.25, 1, True], "offset": 1}]},
                 bad_request("input 'image' of \"instances\" row 0, column 3 is a boolean; the input 'image' takes "
                             "numbers (FP32)"),
                 id="a boolean among numbers"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 1}], "signature_name": "serving_default"},
                 (array([IMAGE_ROW], "FP32"), array([1], "INT64")), id="the signature served, named"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 1}], "signature_name": None},
                 (array([IMAGE_ROW], "FP32"), array([1], "INT64")), id="signature_name null"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 1}], "signature_name": "predict"},
                 bad_request("signature_name 'predict' is not served; this server serves 'serving_default'"),
                 id="another signature"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 1}], "signature_name": 5},
                 bad_request("signature_name 5 is not served; this server serves 'serving_default'"),
                 id="a signature_name that is no string"),
    pytest.param({"instances": [{"image": IMAGE_ROW, "offset": 1}], "inputs": {"image": [IMAGE_ROW], "offset": [1]}},
                 bad_request('body has both "instances" and "inputs"; TF Serving\'s forms take one or the other'),
                 id="instances and inputs both"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "body", "expected"), ONE_INPUT)
def test_the_instances_of_a_one_input_model_are_its_rows_named_or_not(model, body, expected):
    assert_outcome(decode("tfserving_rows", body, model), expected)


@pytest.mark.parametrize(("body", "expected"), SEVERAL_INPUTS)
def test_each_instance_of_a_model_of_several_inputs_names_every_input_once(body, expected):
    assert_outcome(decode("tfserving_rows", body, DEMO), expected)


SCORES = np.array([[0.1, 0.9, 0.3], [2, np.nan, 0]], np.float32)

ANSWERS = [
    pytest.param(PAIR, (SCORES,), b'{"predictions":[[0.1,0.9,0.3],[2.0,null,0.0]]}',
                 id="one output: its rows, NaN as null"),
    pytest.param(DEMO, (np.array([1, 2], np.int64), SCORES),
                 b'{"predictions":[{"label":1,"probabilities":[0.1,0.9,0.3]},'
                 b'{"label":2,"probabilities":[2.0,null,0.0]}]}',
                 id="several outputs: an object per row, keyed by output names"),
    pytest.param(one_input("FP32", ()), (np.array([True, False]),), b'{"predictions":[true,false]}',
                 id="booleans"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "outputs", "expected"), ANSWERS)
def test_the_answer_is_one_prediction_per_row(model, outputs, expected):
    answer = encode("tfserving_rows", outputs, model)
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == expected

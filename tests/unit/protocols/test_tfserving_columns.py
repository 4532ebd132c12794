"""TF Serving's columnar form (its REST API's predict request): `{"inputs": value}` for a model of one input, or
`{"inputs": {name: value, ...}}` naming each input once, every input with as many rows; answered `{"outputs": ...}`,
an object keyed by output names where the model has several outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.protocols.tables import (
    DEMO,
    DTYPED,
    PAIR,
    array,
    assert_outcome,
    bad_request,
    decode,
    encode,
    interface,
    one_input,
    spec,
    too_large,
)

IMAGE_ROW = [[[0.5], [0.25]], [[1], [0]]]  # one row of DEMO's image input, (2, 2, 1)
ROW = {"ids": [2], "half": [[1.5, -3.0]], "flag": [True], "pixels": [[200, 100]]}  # one row of every DTYPED input
DTYPED_ROW = (array([2], "INT32"), array([[1.5, -3]], "FP16"), array([True], "BOOL"), array([[200, 100]], "UINT8"))
EXAMPLE = '{"inputs": [[2 numbers], ...]}'  # this form's request for PAIR's input of 2 values a row
ROWS_AND_OFFSET = interface([spec("x", "FP32", (2,)), spec("offset", "INT64", ())], spec("y", "FP32", ()))
NAMED_EXAMPLE = '{"inputs": {"x": [rows of shape (2)], "offset": [one value per row]}}'

ONE_INPUT = [
    pytest.param(PAIR, {"inputs": [[1, 2], [3, 4.5]]}, array([[1, 2], [3, 4.5]], "FP32"), id="the input's rows"),
    pytest.param(PAIR, {"inputs": {"x": [[1, 2]]}}, array([[1, 2]], "FP32"), id="named"),
    pytest.param(PAIR, {"inputs": {"x:0": [[1, 2]]}}, array([[1, 2]], "FP32"), id="named by its tensor"),
    pytest.param(PAIR, {"inputs": [[1, 2]] * 5},
                 too_large('"inputs" has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)'),
                 id="a row over the limit"),
    pytest.param(PAIR, {"inputs": {"x": [[1, 2]] * 5}},
                 too_large("input 'x' has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a row over the limit, named"),
    # The how-to's kind of rows (float32, one dimension) go the how-to's way, but show this form's example.
    pytest.param(PAIR, {"inputs": []}, bad_request(f'"inputs" has no rows; expected {EXAMPLE}'), id="no rows"),
    pytest.param(PAIR, {"inputs": 5}, bad_request(f'"inputs" must be a list of rows like {EXAMPLE}, got a '
                                                  "number (5)"), id="a number for the rows"),
    pytest.param(PAIR, {"inputs": {"x": 5}}, bad_request(f"input 'x' must be a list of rows like {EXAMPLE}, got a "
                                                         "number (5)"), id="a number for the rows, named"),
    pytest.param(PAIR, {"inputs": [[]]}, bad_request('row 0 of "inputs" has 0 values; expected shape (N, 2)'),
                 id="an empty row"),
    pytest.param(one_input("INT32", ()), {"inputs": []},
                 bad_request('"inputs" must be a non-empty list of rows of shape (N), got a list of 0 items'),
                 id="no rows of another input"),
    pytest.param(one_input("INT32", ()), {"inputs": 5},
                 bad_request('"inputs" must be a non-empty list of rows of shape (N), got a number (5)'),
                 id="a number for the rows of another input"),
    pytest.param(PAIR, {"inputs": {}}, bad_request("\"inputs\" lacks the input 'x'"), id="an object naming nothing"),
    pytest.param(one_input("FP32", (-1,)), {"inputs": [[1, 2, 3]]}, array([[1, 2, 3]], "FP32"),
                 id="rows of a free dimension"),
    pytest.param(one_input("FP32", (-1,)), {"inputs": [[]]}, np.zeros((1, 0), np.float32),
                 id="a row of no values, of a free dimension"),
]  # fmt: skip

SEVERAL_INPUTS = [
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW] * 2, "offset": [1, -2]}},
                 (array([IMAGE_ROW] * 2, "FP32"), array([1, -2], "INT64")), id="every input named"),
    pytest.param(DEMO, {"inputs": {"offset": [1], "image": [[0.5, 0.25, 1, 0]]}},
                 (array([IMAGE_ROW], "FP32"), array([1], "INT64")), id="in any order, rows flat"),
    pytest.param(DEMO, {"inputs": {"inputs/pixels:0": [IMAGE_ROW], "inputs/shift": [1]}},
                 (array([IMAGE_ROW], "FP32"), array([1], "INT64")), id="by their graph tensors' names"),
    pytest.param(DTYPED, {"inputs": ROW}, DTYPED_ROW, id="every dtype, booleans included"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW], "offset": [1, 2]}},
                 bad_request("the inputs have different numbers of rows ('image' 1, 'offset' 2); each row needs a "
                             "value of every input"),
                 id="inputs of different rows"),
    pytest.param(DTYPED, {"inputs": {"ids": [2], "half": [[1.5, -3.0]]}},
                 bad_request("\"inputs\" lacks the inputs 'flag', 'pixels'"), id="inputs missing"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW]}}, bad_request("\"inputs\" lacks the input 'offset'"),
                 id="an input missing"),
    pytest.param(DTYPED, {"inputs": {**ROW, "extra": [1]}},
                 bad_request("\"inputs\" names 'extra', which is not an input of the model; its inputs: 'ids', "
                             "'half', 'flag', 'pixels'"),
                 id="a name that is no input"),
    pytest.param(DTYPED, {"inputs": {**ROW, "ids:0": [1]}},
                 bad_request("\"inputs\" names the input 'ids' twice ('ids' and 'ids:0')"), id="an input named twice"),
    pytest.param(DTYPED, {"inputs": [[1]]},
                 bad_request('the columnar form {"inputs": value} is for a model with one input; this model has 4 '
                             "('ids' INT32 (N), 'half' FP16 (N, 2), 'flag' BOOL (N), 'pixels' UINT8 (N, 2)): name "
                             'each, e.g. {"inputs": {"ids": [one value per row], "half": [rows of shape (2)], '
                             '"flag": [one value per row], "pixels": [rows of shape (2)]}}'),
                 id="unnamed rows for several inputs"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW] * 5, "offset": [1] * 5}},
                 too_large("input 'image' has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a row over the limit"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW], "offset": [1] * 5}},
                 too_large("input 'offset' has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="a row over the limit in one input"),
    pytest.param(DEMO, {"inputs": {"image": [[0.5, 0.25, 1]], "offset": [1]}},
                 bad_request("input 'image' has rows of shape (3,); the input 'image' takes rows of shape (2, 2, 1), "
                             "or rows of 4 values flat: a batch of shape (N, 2, 2, 1)"),
                 id="rows of another shape"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW, IMAGE_ROW[:1]], "offset": [1, 2]}},
                 bad_request("input 'image' holds lists of different lengths; its rows must be nested to one shape"),
                 id="rows of different shapes"),
    pytest.param(DEMO, {"inputs": {"image": [["a"] * 4], "offset": [1]}},
                 bad_request("input 'image' at [0][0] is a string ('a'); every value must be a number"),
                 id="a string"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW], "offset": [[1]]}},
                 bad_request("input 'offset' is nested 2 lists deep, deeper than the input's rank allows: the input "
                             "'offset' takes one value per row: a batch of shape (N)"),
                 id="a list for one value"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW], "offset": "1"}},
                 bad_request("input 'offset' must be a non-empty list of rows of shape (N), got a string ('1')"),
                 id="no list of rows"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW], "offset": [1.5]}},
                 bad_request("input 'offset' row 0 is not an integer; the input 'offset' (INT64) takes integers"),
                 id="a fraction for an integer"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW], "offset": [2**63]}},
                 bad_request("input 'offset' holds 9223372036854775808, outside the input 'offset' (INT64)'s range "
                             "-9223372036854775808 to 9223372036854775807"),
                 id="an integer beyond int64"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW] * 2, "offset": [9007199254740993, 1.0]}},
                 bad_request("input 'offset' row 0 is an integer beyond 2**53 written among numbers with a fraction "
                             "or exponent, which cannot be read exactly; write every value of this input as a plain "
                             "integer"),
                 id="a large integer among fractions, for an integer input"),
    pytest.param(DTYPED, {"inputs": {**ROW, "pixels": [[256, 0]]}},
                 bad_request("input 'pixels' holds 256, outside the input 'pixels' (UINT8)'s range 0 to 255"),
                 id="beyond uint8"),
    pytest.param(DTYPED, {"inputs": {**ROW, "ids": [2147483648]}},
                 bad_request("input 'ids' holds 2147483648, outside the input 'ids' (INT32)'s range -2147483648 to "
                             "2147483647"),
                 id="beyond int32"),
    pytest.param(DTYPED, {"inputs": {**ROW, "half": [[70000.0, 0]]}},
                 bad_request("input 'half' row 0, column 0 is not a finite FP16 value (NaN, infinity or out of "
                             "range)"),
                 id="beyond float16"),
    pytest.param(DTYPED, {"inputs": {**ROW, "flag": [1]}},
                 bad_request("input 'flag' holds integers; the input 'flag' takes true or false (BOOL)"),
                 id="an integer for a boolean"),
    pytest.param(DTYPED, {"inputs": {**ROW, "ids": [True]}},
                 bad_request("input 'ids' holds true or false; the input 'ids' takes numbers (INT32)"),
                 id="a boolean for an integer"),
    pytest.param(ROWS_AND_OFFSET, {"inputs": {"x": 5, "offset": [1]}},
                 bad_request(f"input 'x' must be a list of rows like {NAMED_EXAMPLE}, got a number (5)"),
                 id="a number for the how-to's kind of rows, beside another input"),
    pytest.param(ROWS_AND_OFFSET, {"inputs": {"x": [], "offset": [1]}},
                 bad_request(f"input 'x' has no rows; expected {NAMED_EXAMPLE}"),
                 id="no rows of the how-to's kind, beside another input"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW], "offset": [1]}, "signature_name": "serving_default"},
                 (array([IMAGE_ROW], "FP32"), array([1], "INT64")), id="the signature served, named"),
    pytest.param(DEMO, {"inputs": {"image": [IMAGE_ROW], "offset": [1]}, "signature_name": "other"},
                 bad_request("signature_name 'other' is not served; this server serves 'serving_default'"),
                 id="another signature"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "body", "expected"), ONE_INPUT)
def test_the_inputs_of_a_one_input_model_are_its_rows_named_or_not(model, body, expected):
    assert_outcome(decode("tfserving_columns", body, model), expected)


@pytest.mark.parametrize(("model", "body", "expected"), SEVERAL_INPUTS)
def test_the_inputs_object_names_every_input_once_with_as_many_rows(model, body, expected):
    assert_outcome(decode("tfserving_columns", body, model), expected)


def test_inputs_of_a_free_dimension_are_bounded_by_a_ceiling_of_values_not_by_rows():
    body = b'{"inputs": [[' + b"1," * (1 << 23) + b"1]]}"  # 2**23 + 1 values in one row: 16 MiB
    assert_outcome(
        decode("tfserving_columns", body, one_input("FP32", (-1,))),
        too_large(
            "body holds up to 8388613 JSON values (counting its commas, colons and brackets), more than the 8388608 "
            "a request may hold: a ceiling for inputs of a free dimension ('x' FP32 (N, any))"
        ),
    )


SCORES = np.array([[0.1, 0.9, 0.3], [2, np.inf, 0]], np.float32)

ANSWERS = [
    pytest.param(PAIR, (SCORES,), b'{"outputs":[[0.1,0.9,0.3],[2.0,null,0.0]]}',
                 id="one output: its rows, infinity as null"),
    pytest.param(DEMO, (np.array([1, 2], np.int64), SCORES),
                 b'{"outputs":{"label":[1,2],"probabilities":[[0.1,0.9,0.3],[2.0,null,0.0]]}}',
                 id="several outputs: an object keyed by output names"),
    pytest.param(DTYPED, (np.array([[3, -6]], np.float16), np.array([False]), np.array([2.5], np.float32),
                          np.array([300], np.int32)),
                 b'{"outputs":{"doubled":[[3.0,-6.0]],"notflag":[false],"picked":[2.5],"total":[300]}}',
                 id="every dtype as JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "outputs", "expected"), ANSWERS)
def test_the_answer_is_the_outputs_columns(model, outputs, expected):
    answer = encode("tfserving_columns", outputs, model)
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == expected

"""The how-to's form: `{"data": rows}` for a model of one input, answered with class ids (the argmax of each row's
scores) or, with DATA_ANSWER=outputs or several outputs, the outputs themselves."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.protocols.tables import (
    DEMO,
    HOWTO,
    PAIR,
    array,
    as_body,
    assert_outcome,
    bad_request,
    decode,
    decode_fast,
    encode,
    interface,
    one_input,
    spec,
    too_large,
)

NON_FINITE = "NaN, Infinity and numbers beyond float range are not allowed"
EXAMPLE = '{"data": [[2 numbers], ...]}'  # the how-to's form for PAIR's input of 2 values a row

ROWS = [
    pytest.param(HOWTO, {"data": [[0.5] * 784] * 2}, np.full((2, 784), 0.5, np.float32), id="the how-to's rows"),
    pytest.param(PAIR, {"data": [[1, 2.5], [-3, 0]]}, array([[1, 2.5], [-3, 0]], "FP32"), id="rows of numbers"),
    pytest.param(PAIR, {"data": [[1, 2]] * 4}, array([[1, 2]] * 4, "FP32"), id="as many rows as the limit"),
    pytest.param(PAIR, {"data": [[1, 2]] * 5},
                 too_large('"data" has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)'),
                 id="a row over the limit"),
    pytest.param(PAIR, {"data": [1, 2.5]},
                 bad_request('row 0 of "data" is a number (1), not a list of 2 numbers; wrap a single image as '
                             "[[...]]; expected shape (N, 2)"),
                 id="one row not wrapped in a list"),
    pytest.param(PAIR, {"data": [[1, 2.5, 3]]}, bad_request('row 0 of "data" has 3 values; expected shape (N, 2)'),
                 id="a row of another width"),
    pytest.param(PAIR, {"data": [[1, 2], [3, 4], [5]]},
                 bad_request('row 2 of "data" has 1 values; expected shape (N, 2)'), id="a later row of another width"),
    pytest.param(PAIR, {"data": [[1, 2]] * 4 + [[1]]},
                 too_large('"data" has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)'),
                 id="the row limit before the later rows"),
    pytest.param(PAIR, {"data": [[1, "a"]]},
                 bad_request("row 0, column 1 of \"data\" is a string ('a'); every value must be a number"),
                 id="a string"),
    pytest.param(PAIR, {"data": [[1, None]]},
                 bad_request('row 0, column 1 of "data" is null; every value must be a number'), id="null"),
    pytest.param(PAIR, {"data": [[1, True]]},
                 bad_request('row 0, column 1 of "data" is a boolean (true); every value must be a number'),
                 id="a boolean"),
    pytest.param(PAIR, {"data": [[1, [2]]]},
                 bad_request('row 0, column 1 of "data" is a list of 1 items; every value must be a number'),
                 id="a list for a value"),
    pytest.param(PAIR, {"data": [[1, 1e39]]},
                 bad_request('row 0, column 1 of "data" is outside the float32 range; values must be finite'),
                 id="a number beyond float32"),
    pytest.param(PAIR, {"data": [[16777216, 0]]}, array([[16777216, 0]], "FP32"), id="2**24, held exactly"),
    pytest.param(PAIR, {"data": [[16777217, 0]]},
                 bad_request('row 0, column 0 of "data" is an integer that FP32 cannot hold exactly: 16777217 (it '
                             "would be 16777216); the input 'x' is FP32"),
                 id="2**24 + 1, which float32 rounds"),
    pytest.param(PAIR, {"data": [[0.5, 16777217]]},
                 bad_request('row 0, column 1 of "data" is an integer that FP32 cannot hold exactly: 16777217 (it '
                             "would be 16777216); the input 'x' is FP32"),
                 id="2**24 + 1 among fractions"),
    pytest.param(PAIR, {"data": [[16777217.0, 0]]}, array([[16777216, 0]], "FP32"),
                 id="a number written with a fraction is rounded as floats are"),
    pytest.param(PAIR, {"data": "pixels"},
                 bad_request(f"\"data\" must be a list of rows like {EXAMPLE}, got a string ('pixels')"),
                 id="data a string"),
    pytest.param(PAIR, {"data": {"x": [[1, 2]]}},
                 bad_request(f'"data" must be a list of rows like {EXAMPLE}, got an object'), id="data an object"),
    pytest.param(PAIR, {"data": None}, bad_request(f'"data" must be a list of rows like {EXAMPLE}, got null'),
                 id="data null"),
    pytest.param(PAIR, {"data": []}, bad_request(f'"data" has no rows; expected {EXAMPLE}'), id="no rows"),
    pytest.param(PAIR, {"data": [[1, 2], "x"]},
                 bad_request("row 1 of \"data\" is a string ('x'), not a list of 2 numbers; expected shape (N, 2)"),
                 id="a later row that is no list"),
    pytest.param(PAIR, {"data": [[1, {"v": 1}]]},
                 bad_request('row 0, column 1 of "data" is an object; every value must be a number'), id="an object"),
    pytest.param(PAIR, {"data": [[1, 2], [3, 1e39]]},
                 bad_request('row 1, column 1 of "data" is outside the float32 range; values must be finite'),
                 id="a number beyond float32 in a later row"),
    # As many values in all as N full rows, but not N rows of 2: flattening alone would accept them.
    pytest.param(PAIR, {"data": [[1], [1, 2, 3]]}, bad_request('row 0 of "data" has 1 values; expected shape (N, 2)'),
                 id="rows that only add up to full rows"),
    pytest.param(PAIR, {"data": [[[1, 2], 3], [[], 4]]},
                 bad_request('row 0, column 0 of "data" is a list of 2 items; every value must be a number'),
                 id="rows that only add up to full rows, nested"),
    pytest.param(PAIR, {"data": [1, [[1, 2], 3]]},
                 bad_request('row 0 of "data" is a number (1), not a list of 2 numbers; wrap a single image as '
                             "[[...]]; expected shape (N, 2)"),
                 id="rows that only add up to full rows, one not a list"),
    pytest.param(PAIR, b'{"data": [[1, 2]], "data": [[3, 4]]}', array([[3, 4]], "FP32"),
                 id="the last of two data keys"),
    pytest.param(PAIR, b'{"data": [[1, 2]], "da\\u0074a": [[3, 4]]}', array([[3, 4]], "FP32"),
                 id="the last of two data keys, one escaped"),
    pytest.param(PAIR, b'{"data": [[1, 2]], "data": "x"}',
                 bad_request(f"\"data\" must be a list of rows like {EXAMPLE}, got a string ('x')"),
                 id="the last of two data keys, no rows"),
    pytest.param(PAIR, b'{"data": [[1, 2]], "d\\u0061ta": 5}',
                 bad_request(f'"data" must be a list of rows like {EXAMPLE}, got a number (5)'),
                 id="the last of two data keys, escaped, no rows"),
    pytest.param(PAIR, b'\xef\xbb\xbf{"data": [[1, 2]]}', array([[1, 2]], "FP32"), id="a UTF-8 byte order mark"),
    pytest.param(PAIR, {"data": [[1, 2]], "instances": [[3, 4]], "inputs": [[5, 6]]}, array([[1, 2]], "FP32"),
                 id="data beside the other forms' keys"),
    pytest.param(PAIR, {"id": 7, "data": [[1, 2]]}, array([[1, 2]], "FP32"), id="other fields are ignored"),
    pytest.param(PAIR, {"data": [[1, 2]], "signature_name": "serving_default"}, array([[1, 2]], "FP32"),
                 id="the signature served, named"),
    pytest.param(one_input("FP32", (1,)), {"data": [[1], [2]], "id": "," * 40}, array([[1], [2]], "FP32"),
                 id="commas in a string are no values, however narrow the rows"),
    pytest.param(PAIR, {"data": [[1, 2]], "signature_name": "other"},
                 bad_request("signature_name 'other' is not served; this server serves 'serving_default'"),
                 id="another signature, of a body of plain rows"),
    pytest.param(one_input("INT32", (2,)), {"data": [[1, 2]], "signature_name": "other"},
                 bad_request("signature_name 'other' is not served; this server serves 'serving_default'"),
                 id="another signature"),
]  # fmt: skip

OTHER_INPUTS = [
    pytest.param(one_input("FP32", (2, 2)), {"data": [[[1, 2], [3, 4]]]}, array([[[1, 2], [3, 4]]], "FP32"),
                 id="rows nested to the input's shape"),
    pytest.param(one_input("FP32", (2, 2)), {"data": [[1, 2, 3, 4]]}, array([[[1, 2], [3, 4]]], "FP32"),
                 id="rows flat, in row-major order"),
    pytest.param(one_input("FP32", (2, 2)), {"data": [[1, 2]]},
                 bad_request("\"data\" has rows of shape (2,); the input 'x' takes rows of shape (2, 2), or rows of "
                             "4 values flat: a batch of shape (N, 2, 2)"),
                 id="rows of another shape"),
    pytest.param(one_input("INT32", (2,)), {"data": [[1, -2]]}, array([[1, -2]], "INT32"), id="integers"),
    pytest.param(one_input("INT32", (2,)), {"data": [[1, 2.5]]},
                 bad_request("\"data\" row 0, column 1 is not an integer; the input 'x' (INT32) takes integers"),
                 id="a fraction for an integer input"),
    pytest.param(one_input("FP64", ()), {"data": [1, 2.5]}, array([1, 2.5], "FP64"), id="one value per row"),
    pytest.param(one_input("BOOL", (2,)), {"data": [[True, False]]}, array([[True, False]], "BOOL"),
                 id="booleans"),
    pytest.param(one_input("FP32", (-1,)), {"data": [[1, 2, 3]]}, array([[1, 2, 3]], "FP32"),
                 id="rows of a free dimension"),
    pytest.param(DEMO, {"data": [[1, 2]]},
                 bad_request("the how-to's {\"data\": ...} form is for a model with one input; this model has 2 "
                             "('image' FP32 (N, 2, 2, 1), 'offset' INT64 (N)): name each, e.g. {\"inputs\": "
                             '{"image": [rows of shape (2, 2, 1)], "offset": [one value per row]}}'),
                 id="a model of two inputs"),
]  # fmt: skip

BODIES = [
    pytest.param(b"", bad_request(f"body is empty; expected {EXAMPLE}"), id="empty"),
    pytest.param(b" \n", bad_request(f"body is empty; expected {EXAMPLE}"), id="white space"),
    pytest.param(b"hello", bad_request("body is not valid JSON: unexpected character, expected a JSON value at line 1 "
                                       "column 1"), id="not JSON"),
    pytest.param(b'{"data": [[1, 2', bad_request("body is not valid JSON: unexpected end of data at line 1 column 16"),
                 id="cut short"),
    pytest.param(b'{"data": []} trailing',
                 bad_request("body is not valid JSON: unexpected content after document at line 1 column 14"),
                 id="text after the document"),
    pytest.param(b'{"data": [["\xff"]]}', bad_request("body is not valid UTF-8; send JSON encoded as UTF-8"),
                 id="not UTF-8"),
    pytest.param(b'\xef\xbb\xbf\xef\xbb\xbf{"data": [[1, 2]]}',
                 bad_request("body is not valid UTF-8; send JSON encoded as UTF-8"), id="a second byte order mark"),
    pytest.param(b"[[1, 2]]", bad_request(f"body must be a JSON object like {EXAMPLE}, got a list of 1 items"),
                 id="not an object"),
    pytest.param(b'"data"', bad_request(f"body must be a JSON object like {EXAMPLE}, got a string ('data')"),
                 id="a string"),
    pytest.param(b'{"data": [[1, NaN]]}',
                 bad_request(f"body has a non-finite number at line 1 column 15; {NON_FINITE}"), id="NaN"),
    pytest.param(b'{"data": [[1, -Infinity]]}',
                 bad_request(f"body has a non-finite number at line 1 column 16; {NON_FINITE}"), id="-Infinity"),
    pytest.param(b'{"data": [[Infinity, 1]]}',
                 bad_request(f"body has a non-finite number at line 1 column 12; {NON_FINITE}"), id="Infinity"),
    pytest.param('{"note": "\u00e9\u00e9\u00e9", "data": [[1, NaN]]}'.encode(),
                 bad_request(f"body has a non-finite number at line 1 column 30; {NON_FINITE}"),
                 id="the column counted in characters, not bytes"),
    pytest.param(b'{"data": [[1, 1e400]]}',
                 bad_request(f"body has a non-finite number at line 1 column 15; {NON_FINITE}"), id="1e400"),
    pytest.param(b'{"data": [[np.float64(0.5), 2]]}',
                 bad_request("body is not valid JSON: it holds numpy's np.float64(...) at line 1 column 12, which is "
                             "how str(list(array)) prints values under numpy 2 (the how-to's client builds its body "
                             'that way); send json.dumps({"data": X.tolist()}) instead'),
                 id="numpy 2's repr of a value"),
    pytest.param(b'{"data": [[18446744073709551617, 0]]}',
                 bad_request("integer 18446744073709551617 is outside the 64-bit integer range, which JSON parsers "
                             "round to a float: no input takes it exactly; send a float (e.g. 1.5e20) where rounding "
                             "is meant"),
                 id="an integer beyond 64 bits"),
    pytest.param(b'{"rows": [[1, 2]]}',
                 bad_request('body has none of "data" (the how-to\'s form), "instances" (TF Serving\'s row form), '
                             '"inputs" (TF Serving\'s columnar form) or "inputs" as a list of tensors '
                             f"(the Open Inference Protocol); e.g. {EXAMPLE}"),
                 id="no form's key"),
    pytest.param(b'{"data": [' + b"1," * 4199 + b"1]}",
                 too_large("body holds up to 4203 JSON values (counting its commas, colons and brackets), more than "
                           "the 4190 a request may hold: 4 rows (MAX_REQUEST_ROWS) of 'x' FP32 (N, 2)"),
                 id="more values than a request of the limit's rows holds, counted before parsing"),
    pytest.param(b'{"data": [[[[[[[[[]]]]]]]]]}',
                 bad_request("body is nested 10 deep; a request is nested at most 8 deep: 4 rows (MAX_REQUEST_ROWS) "
                             "of 'x' FP32 (N, 2)"),
                 id="nested deeper than any request"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "body", "expected"), ROWS)
def test_the_rows_of_the_data_field_are_the_batch_or_the_refusal_says_which_row_is_wrong(model, body, expected):
    assert_outcome(decode("howto", body, model), expected)


@pytest.mark.parametrize(("model", "body", "expected"), OTHER_INPUTS)
def test_any_one_input_model_takes_the_data_field_as_its_rows(model, body, expected):
    assert_outcome(decode("howto", body, model), expected)


@pytest.mark.parametrize(("body", "expected"), BODIES)
def test_a_body_that_is_no_json_object_or_over_the_limits_is_refused_saying_why(body, expected):
    assert_outcome(decode("howto", body, PAIR), expected)


HOWTO_ROW = np.linspace(0, 1, 784)  # a row of the how-to's model: 784 values
# The how-to's client: '{"data": [' + str(list(X_test[i])) + ']}', which numpy 2 prints as np.float64(0.0), ...
HOWTO_CLIENT = ('{"data": [' + str(list(HOWTO_ROW)) + "]}").encode()

HOWTO_BODIES = [
    pytest.param({"data": [list(HOWTO_ROW)] * 2}, np.tile(HOWTO_ROW.astype(np.float32), (2, 1)),
                 id="the limit's rows"),
    pytest.param({"data": [list(HOWTO_ROW)] * 3},
                 too_large('"data" has 3 rows; the limit is 2 rows per request (MAX_REQUEST_ROWS)'),
                 id="a row over the limit"),
    pytest.param({"data": [[0] * 3138]}, bad_request('row 0 of "data" has 3138 values; expected shape (N, 784)'),
                 id="a row of 3138 values, parsed: within the values a request may hold"),
    pytest.param(b'{"data": [[' + b"0," * 7000 + b"0]]}",
                 too_large("body holds up to 7005 JSON values (counting its commas, colons and brackets), more than "
                           "the 6524 a request may hold: 2 rows (MAX_REQUEST_ROWS) of 'network/X' FP32 (N, 784)"),
                 id="more values than a request may hold, counted before parsing"),
    pytest.param(HOWTO_CLIENT,
                 bad_request("body is not valid JSON: it holds numpy's np.float64(...) at line 1 column 12, which is "
                             "how str(list(array)) prints values under numpy 2 (the how-to's client builds its body "
                             'that way); send json.dumps({"data": X.tolist()}) instead'),
                 id="the how-to's client's body under numpy 2"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), HOWTO_BODIES)
def test_the_howto_model_takes_rows_of_784_values_up_to_the_limit(body, expected):
    assert_outcome(decode("howto", body, HOWTO, max_rows=2), expected)


def test_plain_rows_are_read_in_c_as_the_careful_path_reads_them():
    body = as_body({"data": [[i / 7 + j for j in range(784)] for i in range(5)]})
    fast = decode_fast(body, HOWTO, max_rows=10)
    assert fast is not None
    careful = body.replace(b'"data"', b'"d\\u0061ta"')  # a backslash: the careful path (orjson), same document
    assert decode_fast(careful, HOWTO, max_rows=10) is None
    assert_outcome(decode("howto", careful, HOWTO, max_rows=10), fast)


@pytest.mark.parametrize("name", ["serving_default", "other"])
def test_a_body_that_names_a_signature_is_left_to_the_careful_path_which_checks_it(name):
    assert decode_fast({"data": [[1, 2]], "signature_name": name}, PAIR) is None
    assert_outcome(decode_fast({"data": [[1, 2]]}, PAIR), array([[1, 2]], "FP32"))


def test_the_rows_limit_is_the_one_given():
    assert_outcome(decode("howto", {"data": [[1, 2]] * 5}, PAIR, max_rows=5), array([[1, 2]] * 5, "FP32"))
    assert_outcome(
        decode("howto", {"data": [[1, 2]] * 2}, PAIR, max_rows=1),
        too_large('"data" has 2 rows; the limit is 1 rows per request (MAX_REQUEST_ROWS)'),
    )


SCORES = np.array([[0.1, 0.9, 0.3], [2, 1, 0]], np.float32)
TWO_OUTPUTS = interface(spec("x", "FP32", (2,)), [spec("label", "INT64", ()), spec("probabilities", "FP32", (3,))])
OUTPUTS_ANSWER = interface(spec("x", "FP32", (2,)), spec("y", "FP32", (3,)), data_answer="outputs")

ANSWERS = [
    pytest.param(PAIR, (SCORES,), b"[1,0]", id="class ids, the argmax of each row's scores"),
    pytest.param(PAIR, (np.array([[1, 1, 0], [0, 2, 2], [3, 1, 3]], np.float32),), b"[null,null,null]",
                 id="no class where the highest score is shared"),
    pytest.param(PAIR, (np.array([[np.nan, 1, 0], [np.inf, 1, 0], [-np.inf, 1, 0], [1, 0, 0]], np.float32),),
                 b"[null,null,null,0]", id="no class where a score is not finite"),
    pytest.param(PAIR, (SCORES.astype(np.float64),), b"[1,0]", id="class ids of float64 scores"),
    pytest.param(PAIR, (SCORES.astype(np.float16),), b"[1,0]", id="class ids of float16 scores"),
    pytest.param(PAIR, (np.array([[3], [7]], np.int32),), b"[3,7]",
                 id="an output of one value per row as it is (a graph that answers the class id)"),
    pytest.param(PAIR, (np.array([[3.5], [np.nan]], np.float32),), b"[3.5,null]",
                 id="one value per row, NaN as null"),
    pytest.param(PAIR, (np.array([3.5, np.inf], np.float32),), b"[3.5,null]", id="a value per row, infinity as null"),
    pytest.param(PAIR, (np.array([[1, 5, 2]], np.int64),), b"[[1,5,2]]", id="integers are no scores: as they are"),
    pytest.param(PAIR, (np.array([[True, False]]),), b"[[true,false]]", id="booleans as they are"),
    pytest.param(PAIR, (np.zeros((0, 3), np.float32),), b"[]", id="no rows"),
    pytest.param(OUTPUTS_ANSWER, (np.array([[0.5, np.nan, 2]], np.float32),), b"[[0.5,null,2.0]]",
                 id="DATA_ANSWER=outputs: the outputs, NaN as null"),
    pytest.param(TWO_OUTPUTS, (np.array([1, 2], np.int64), SCORES),
                 b'{"label":[1,2],"probabilities":[[0.1,0.9,0.3],[2.0,1.0,0.0]]}',
                 id="several outputs: an object keyed by their names"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "outputs", "expected"), ANSWERS)
def test_the_answer_is_class_ids_or_the_outputs_as_json(model, outputs, expected):
    answer = encode("howto", outputs, model)
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == expected

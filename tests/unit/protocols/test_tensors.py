"""The tensor validator every form shares (protocols/tensors.py): one input's values, from JSON or from bytes, become
an array of the input's dtype and shape (N, *row shape), or a 400 naming the input and where the value is.  The
messages' first words (`x` here) are the field the form names: '"data"', "input 'x'", "body"..."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.protocols.tables import (
    array,
    assert_outcome,
    bad_request,
    check_datatype,
    convert,
    spec,
    too_large,
    validate,
    validate_tensor,
)

FP32_PAIR = spec("x", "FP32", (2,))  # the how-to's kind of rows
FP32_GRID = spec("x", "FP32", (2, 2))
FP64 = spec("x", "FP64", (2,))
INT32 = spec("x", "INT32", (2,))
INT64 = spec("x", "INT64", (2,))
UINT64 = spec("x", "UINT64", (1,))
FP16 = spec("x", "FP16", (1,))
BOOL = spec("x", "BOOL", (2,))
SCALAR = spec("x", "INT64", ())
FREE = spec("x", "FP32", (-1,))

JSON_VALUES = [
    pytest.param(FP32_GRID, [[[1, 2], [3, 4]]], array([[[1, 2], [3, 4]]], "FP32"), id="rows nested to the shape"),
    pytest.param(FP32_GRID, [[1, 2, 3, 4]], array([[[1, 2], [3, 4]]], "FP32"), id="a fixed row's values flat"),
    pytest.param(FP32_GRID, [[1, 2]],
                 bad_request("x has rows of shape (2,); the input 'x' takes rows of shape (2, 2), or rows of 4 values "
                             "flat: a batch of shape (N, 2, 2)"),
                 id="rows of another shape"),
    pytest.param(FP32_GRID, [[[[1, 2], [3, 4]]]],
                 bad_request("x is nested 4 lists deep, deeper than the input's rank allows: the input 'x' takes rows "
                             "of shape (2, 2), or rows of 4 values flat: a batch of shape (N, 2, 2)"),
                 id="nested deeper than the rank"),
    pytest.param(FP32_GRID, [[[1, [2]], [3, 4]]],
                 bad_request("x at [0][0][1] is a list nested deeper than the input's rank allows: its values are "
                             "nested 3 lists deep at most"),
                 id="one value nested deeper"),
    pytest.param(FP32_GRID, [[[1, 2], [3]]],
                 bad_request("x holds lists of different lengths; its rows must be nested to one shape"),
                 id="lists of different lengths"),
    pytest.param(FP32_GRID, [[[1, 2], [3, "4"]]],
                 bad_request("x at [0][1][1] is a string ('4'); every value must be a number"), id="a string"),
    pytest.param(FP32_GRID, [[[1, 2], [3, None]]], bad_request("x at [0][1][1] is null; every value must be a number"),
                 id="null"),
    pytest.param(FP32_GRID, [[[1, 2], [3, {}]]],
                 bad_request("x at [0][1][1] is an object; every value must be a number"),
                 id="an object"),
    pytest.param(FP32_GRID, [[[1, 2], [3, True]]],
                 bad_request("x row 0, at [1, 1] is a boolean; the input 'x' takes numbers (FP32)"), id="a boolean"),
    pytest.param(FP32_GRID, [[[1, 2], [3, 2**64]]],
                 bad_request("x at [0][1][1] is an integer beyond 64 bits (18446744073709551616)"),
                 id="an integer beyond 64 bits"),
    pytest.param(FP32_GRID, [], bad_request("x must be a non-empty list of rows of shape (N, 2, 2), got a list of 0 "
                                            "items"), id="no rows"),
    pytest.param(FP32_GRID, 5, bad_request("x must be a non-empty list of rows of shape (N, 2, 2), got a number (5)"),
                 id="no list"),
    pytest.param(FP32_GRID, [[1, 2, 3, 4]] * 5,
                 too_large("x has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"), id="over the limit"),
    pytest.param(FP32_PAIR, [[1, 2.5]], array([[1, 2.5]], "FP32"), id="the how-to's rows"),
    pytest.param(FP32_PAIR, [[1, 2.5, 3]], bad_request("row 0 of x has 3 values; expected shape (N, 2)"),
                 id="the how-to's rows, of another width"),
    pytest.param(FREE, [[1, 2, 3]], array([[1, 2, 3]], "FP32"), id="a free dimension"),
    pytest.param(SCALAR, [1, -2], array([1, -2], "INT64"), id="one value per row"),
    pytest.param(SCALAR, [[1]],
                 bad_request("x is nested 2 lists deep, deeper than the input's rank allows: the input 'x' takes one "
                             "value per row: a batch of shape (N)"),
                 id="a list for one value"),
    pytest.param(INT32, [[1, -2.0]], array([[1, -2]], "INT32"), id="integers written with a fraction"),
    pytest.param(INT32, [[1, 2.5]], bad_request("x row 0, column 1 is not an integer; the input 'x' (INT32) takes "
                                                "integers"), id="a fraction for an integer input"),
    pytest.param(INT32, [[1, 2**31]],
                 bad_request("x holds 2147483648, outside the input 'x' (INT32)'s range -2147483648 to 2147483647"),
                 id="beyond int32"),
    pytest.param(INT64, [[2**63 - 1, -(2**63)]], array([[2**63 - 1, -(2**63)]], "INT64"), id="int64's extremes"),
    pytest.param(INT64, [[2**63, 0]],
                 bad_request("x holds 9223372036854775808, outside the input 'x' (INT64)'s range -9223372036854775808 "
                             "to 9223372036854775807"),
                 id="beyond int64"),
    pytest.param(INT64, [[2**64 - 1, -1]],
                 bad_request("x row 0, column 0 is 18446744073709551615, outside the input 'x' (INT64)'s range "
                             "-9223372036854775808 to 9223372036854775807"),
                 id="uint64's maximum beside a negative"),
    pytest.param(INT64, [[2**53 + 1, 0.5]],
                 bad_request("x row 0, column 1 is not an integer; the input 'x' (INT64) takes integers"),
                 id="a fraction among large integers"),
    pytest.param(INT64, [[2**53 + 1, 1.0]],
                 bad_request("x row 0, column 0 is an integer beyond 2**53 written among numbers with a fraction or "
                             "exponent, which cannot be read exactly; write every value of this input as a plain "
                             "integer"),
                 id="a large integer beside a number written with a fraction"),
    pytest.param(UINT64, [[2**64 - 1]], array([[2**64 - 1]], "UINT64"), id="uint64's maximum"),
    pytest.param(FP64, [[2**53 + 1, 0]],
                 bad_request("x row 0, column 0 is an integer that FP64 cannot hold exactly: 9007199254740993 (it "
                             "would be 9007199254740992); the input 'x' is FP64"),
                 id="an integer float64 would round"),
    pytest.param(FP64, [[2**53 + 1, 0.5]],
                 bad_request("x row 0, column 0 is an integer that FP64 cannot hold exactly: 9007199254740993 (it "
                             "would be 9007199254740992); the input 'x' is FP64"),
                 id="an integer float64 would round, among fractions"),
    pytest.param(FP16, [[2048], [2049]],
                 bad_request("x row 1, column 0 is an integer that FP16 cannot hold exactly: 2049 (it would be 2048); "
                             "the input 'x' is FP16"),
                 id="an integer float16 would round"),
    pytest.param(FP16, [[65504.0]], array([[65504]], "FP16"), id="float16's largest"),
    pytest.param(FP16, [[70000.0]],
                 bad_request("x row 0, column 0 is not a finite FP16 value (NaN, infinity or out of range)"),
                 id="beyond float16"),
    pytest.param(BOOL, [[True, False]], array([[True, False]], "BOOL"), id="booleans"),
    pytest.param(BOOL, [[1, 0]], bad_request("x holds integers; the input 'x' takes true or false (BOOL)"),
                 id="integers for booleans"),
    pytest.param(BOOL, [[True, 0.5]], bad_request("x holds numbers with fractions; the input 'x' takes true or false "
                                                  "(BOOL)"), id="booleans and numbers mixed"),
]  # fmt: skip


@pytest.mark.parametrize(("input_spec", "value", "expected"), JSON_VALUES)
def test_a_json_value_is_the_inputs_rows_of_its_dtype_or_a_refusal_saying_where(input_spec, value, expected):
    assert_outcome(validate(value, input_spec), expected)


TENSORS = [
    pytest.param(INT64, [1, 2, 3, 4], [2, 2], "INT64", array([[1, 2], [3, 4]], "INT64"), id="flat"),
    pytest.param(INT64, [[1, 2], [3, 4]], [2, 2], "INT32", array([[1, 2], [3, 4]], "INT64"),
                 id="nested, of a narrower type"),
    pytest.param(SCALAR, [1, 2], [2, 1], "INT64", array([1, 2], "INT64"), id="one value per row as [N, 1]"),
    pytest.param(SCALAR, [[1], [2]], [2, 1], "INT64", array([1, 2], "INT64"), id="one value per row as [N, 1], nested"),
    # In flat data, a value's position is told as its row and column, not as its index (3 here).
    pytest.param(INT64, [1, 2, 3, 4.5], [2, 2], "INT64",
                 bad_request("x row 1, column 1 is not an integer; its datatype INT64 takes integers"),
                 id="a fraction in flat data"),
    pytest.param(INT64, [[1, 2], [3, 4.5]], [2, 2], "INT64",
                 bad_request("x row 1, column 1 is not an integer; its datatype INT64 takes integers"),
                 id="a fraction in nested data"),
    pytest.param(SCALAR, [1, 2.5], [2, 1], "INT64",
                 bad_request("x row 1 is not an integer; its datatype INT64 takes integers"),
                 id="a fraction, one value per row as [N, 1]"),
    pytest.param(INT64, [1, 2, 3, 2.0**53], [2, 2], "INT64",
                 bad_request("x row 1, column 1 is an integer beyond 2**53 written among numbers with a fraction or "
                             "exponent, which cannot be read exactly; write every value of this input as a plain "
                             "integer"),
                 id="a large integer among fractions in flat data"),
    pytest.param(INT32, [1, 2, -1, 2**63], [2, 2], "INT32",
                 bad_request("x row 1, column 1 is 9223372036854775808, outside its datatype INT32's range "
                             "-2147483648 to 2147483647"),
                 id="beyond 64-bit signed integers beside a negative, in flat data"),
    pytest.param(FP32_PAIR, [0.5, 0.25, 16777217, 1], [2, 2], "FP32",
                 bad_request("x row 1, column 0 is an integer that FP32 cannot hold exactly: 16777217 (it would be "
                             "16777216); the input 'x' is FP32"),
                 id="an integer float32 would round among fractions, in flat data"),
    pytest.param(INT64, [1, 2, 3, 4], [2, 2], "INT8", array([[1, 2], [3, 4]], "INT64"), id="int8 declared"),
    pytest.param(INT64, [1, 2, 3, 400], [2, 2], "INT8",
                 bad_request("x holds 400, outside its datatype INT8's range -128 to 127"),
                 id="beyond the declared int8"),
    pytest.param(INT32, [1, 2**40], [1, 2], "INT64",
                 bad_request("x holds 1099511627776, outside the input 'x' (INT32)'s range -2147483648 to 2147483647"),
                 id="beyond the input's int32"),
    pytest.param(FP32_PAIR, [0.5, 70000.0], [1, 2], "FP16",
                 bad_request("x row 0, column 1 is not a finite FP16 value"), id="beyond the declared float16"),
    pytest.param(BOOL, [True, 1], [1, 2], "BOOL", bad_request("x has datatype BOOL but its data holds integers"),
                 id="numbers declared BOOL"),
    pytest.param(FP32_PAIR, [True, 1], [1, 2], "FP32",
                 bad_request("x holds true or false among its numbers; its datatype FP32 takes numbers"),
                 id="a boolean among numbers"),
    pytest.param(FP32_PAIR, [1, 2], [5, 2], "FP32",
                 too_large("x has 5 rows; the limit is 4 rows per request (MAX_REQUEST_ROWS)"),
                 id="rows over the limit, as the shape says"),
    pytest.param(FP32_PAIR, [1, 2], [1, 2, 1], "FP32",
                 bad_request("x has shape [1, 2, 1]; the input 'x' takes [N, 2] with N >= 1"),
                 id="a shape of another rank"),
    pytest.param(FREE, [1, 2, 3], [1, 3], "FP32", array([[1, 2, 3]], "FP32"), id="a free dimension"),
    pytest.param(INT64, np.array([1, -2], "<i8").tobytes(), [1, 2], "INT64", array([[1, -2]], "INT64"),
                 id="bytes, little-endian"),
    pytest.param(INT64, np.array([1, -2], "<i4").tobytes(), [1, 2], "INT32", array([[1, -2]], "INT64"),
                 id="bytes of a narrower type"),
    pytest.param(INT64, np.array([1, -2], "<i4").tobytes(), [1, 2], "INT64",
                 bad_request("x has 8 bytes of binary data; its shape [1, 2] of INT64 needs 16"),
                 id="bytes too few for the shape"),
    pytest.param(BOOL, b"\x01\x00", [1, 2], "BOOL", array([[True, False]], "BOOL"), id="boolean bytes"),
    pytest.param(BOOL, b"\x01\xff", [1, 2], "BOOL", bad_request("x has BOOL bytes other than 0 and 1"),
                 id="a boolean byte of 255"),
]  # fmt: skip


@pytest.mark.parametrize(("input_spec", "data", "shape", "datatype", "expected"), TENSORS)
def test_an_open_inference_protocol_tensor_is_the_inputs_rows_as_its_shape_and_datatype_say(
    input_spec, data, shape, datatype, expected
):
    assert_outcome(validate_tensor(data, shape, datatype, input_spec), expected)


NUMBERS = ["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]
INTEGERS = [datatype for datatype in NUMBERS if "INT" in datatype]


def refused_datatype(sent: str, taken: str) -> object:
    return bad_request(f"x has datatype {sent}; the model's input 'x' is {taken}")


DATATYPES = [
    *(pytest.param("FP32", sent, sent, id=f"{sent} for a float input") for sent in NUMBERS),
    pytest.param("FP32", "BOOL", refused_datatype("BOOL", "FP32"), id="BOOL for a float input"),
    *(pytest.param("INT32", sent, sent, id=f"{sent} for an integer input") for sent in INTEGERS),
    *(pytest.param("INT32", sent, refused_datatype(sent, "INT32"), id=f"{sent} for an integer input")
      for sent in ("FP16", "FP32", "FP64", "BOOL")),
    pytest.param("BOOL", "BOOL", "BOOL", id="BOOL for a boolean input"),
    *(pytest.param("BOOL", sent, refused_datatype(sent, "BOOL"), id=f"{sent} for a boolean input")
      for sent in ("FP32", "INT8", "UINT8")),
    pytest.param("FP32", "BYTES", bad_request("x has datatype BYTES; the model's input 'x' is FP32"),
                 id="BYTES for a number input"),
    pytest.param("BYTES", "BYTES", "BYTES", id="BYTES for a string input"),
    pytest.param("BYTES", "UINT8", bad_request("x has datatype UINT8; the model's input 'x' is BYTES"),
                 id="numbers for a string input"),
    pytest.param("FP32", "float32", bad_request('x has datatype \'float32\'; the model\'s input \'x\' is "FP32"'),
                 id="numpy's name"),
    pytest.param("INT32", None, bad_request('x has no "datatype" string; the input\'s is "INT32"'), id="none"),
    pytest.param("INT32", 32, bad_request('x has no "datatype" string; the input\'s is "INT32"'), id="a number"),
]  # fmt: skip


@pytest.mark.parametrize(("taken", "sent", "expected"), DATATYPES)
def test_a_float_input_takes_any_number_datatype_an_integer_input_integers_a_boolean_input_booleans(
    taken, sent, expected
):
    assert check_datatype(sent, spec("x", taken, ())) == expected


CONVERSIONS = [
    pytest.param(np.array([[1.5, 2]]), "FP32", array([[1.5, 2]], "FP32"), id="float64 to float32"),
    pytest.param(np.array([[1e39, 2]]), "FP32",
                 bad_request("x row 0, column 0 is not a finite FP32 value (NaN, infinity or out of range)"),
                 id="beyond float32"),
    pytest.param(np.array([[1, np.nan]]), "FP64",
                 bad_request("x row 0, column 1 is not a finite FP64 value (NaN, infinity or out of range)"), id="NaN"),
    pytest.param(np.array([[2**24, 2]], "i8"), "FP32", array([[2**24, 2]], "FP32"), id="an int64 float32 holds"),
    pytest.param(np.array([[2, 2**24 + 1]], "i8"), "FP32",
                 bad_request("x row 0, column 1 is an integer that FP32 cannot hold exactly: 16777217 (it would be "
                             "16777216); the input 'x' is FP32"),
                 id="an int64 float32 would round"),
    pytest.param(np.array([[[1, 2**24 + 1]]], "i8"), "FP32",
                 bad_request("x row 0, at [0, 1] is an integer that FP32 cannot hold exactly: 16777217 (it would be "
                             "16777216); the input 'x' is FP32"),
                 id="an int64 float32 would round, in a row of rank 2"),
    pytest.param(np.array([[2**64 - 1]], "u8"), "FP64",
                 bad_request("x row 0, column 0 is an integer that FP64 cannot hold exactly: 18446744073709551615 (it "
                             "would be 18446744073709551616); the input 'x' is FP64"),
                 id="uint64's maximum, which float64 rounds up"),
    pytest.param(np.array([[2**31 - 1]], "i4"), "FP64", array([[2**31 - 1]], "FP64"),
                 id="every int32 is a float64"),
    pytest.param(np.array([[255]], "u1"), "FP16", array([[255]], "FP16"), id="every uint8 is a float16"),
    pytest.param(np.array([[2049]], "i2"), "FP16",
                 bad_request("x row 0, column 0 is an integer that FP16 cannot hold exactly: 2049 (it would be 2048); "
                             "the input 'x' is FP16"),
                 id="an int16 float16 would round"),
    pytest.param(np.array([[70000]], "i4"), "FP16",
                 bad_request("x row 0, column 0 is not a finite FP16 value (NaN, infinity or out of range)"),
                 id="an int32 beyond float16"),
    pytest.param(np.array([[1.0, -2.0]], "f4"), "INT8", array([[1, -2]], "INT8"), id="integral floats to int8"),
    pytest.param(np.array([[1.5]]), "INT32",
                 bad_request("x row 0, column 0 is not an integer; the input 'x' (INT32) takes integers"),
                 id="a fraction to int32"),
    pytest.param(np.array([[1, 2.0**53]]), "INT64",
                 bad_request("x row 0, column 1 is a float beyond 2**53 (9007199254740992.0), which need not be the "
                             "integer meant; send integers: the input 'x' (INT64) takes integers"),
                 id="a float64 beyond 2**53 to int64, which may not be the integer meant"),
    pytest.param(np.array([[np.inf]]), "INT32",
                 bad_request("x row 0, column 0 is not an integer; the input 'x' (INT32) takes integers"),
                 id="infinity to int32"),
    pytest.param(np.array([[3e9]]), "INT32",
                 bad_request("x holds 3000000000, outside the input 'x' (INT32)'s range -2147483648 to 2147483647"),
                 id="beyond int32"),
    pytest.param(np.array([[-1]], "i8"), "UINT8",
                 bad_request("x holds -1, outside the input 'x' (UINT8)'s range 0 to 255"), id="negative to uint8"),
    pytest.param(np.array([[2**63]], "u8"), "INT64",
                 bad_request("x holds 9223372036854775808, outside the input 'x' (INT64)'s range -9223372036854775808 "
                             "to 9223372036854775807"),
                 id="a uint64 beyond int64"),
    pytest.param(np.array([[2.0**64]]), "UINT64",
                 bad_request("x row 0, column 0 is 1.8446744073709552e+19, outside the input 'x' (UINT64)'s range 0 to "
                             "18446744073709551615"),
                 id="a float beyond uint64"),
    pytest.param(np.array([[True]]), "INT32",
                 bad_request("x holds true or false; the input 'x' takes numbers (INT32)"), id="booleans to a number"),
    pytest.param(np.array([[1]], "i8"), "BOOL",
                 bad_request("x holds integers; the input 'x' takes true or false (BOOL)"), id="integers to booleans"),
    pytest.param(np.array([[True, False]]), "BOOL", array([[True, False]], "BOOL"), id="booleans"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "datatype", "expected"), CONVERSIONS)
def test_a_binary_array_reaches_the_inputs_dtype_only_where_every_value_fits_it_exactly(values, datatype, expected):
    assert_outcome(convert(values, spec("x", datatype, values.shape[1:])), expected)

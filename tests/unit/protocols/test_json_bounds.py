"""JSON bodies bounded before they are parsed, no 500 from nesting, no made-up answers (tfscoring/protocols/:
jsonbounds.py, jsonforms.py, decode.py, tensors.py, the codecs), in-process: counts over the bytes refuse a body holding
more values than a request can (413) or nested deeper than the model's inputs (400) before orjson builds a Python
object; every validator and message is safe against nesting; a row whose scores are not all finite gets no class id;
integers reach a float input only exactly."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import tracemalloc

import numpy as np
import orjson
import pytest

from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import Interface, TensorSpec
from tfscoring.protocols import decode, howto, jsonbounds, npy, oip_binary, oip_json, registry, tfserving_rows
from tfscoring.protocols.codec import Decoded
from tfscoring.protocols.jsonforms import JsonBody, JsonForms, check_signature_name
from tfscoring.protocols.limits import Limits
from tfscoring.protocols.tensors import TensorReader

F32 = np.dtype("float32")
HOWTO = Interface("m", "1", (TensorSpec("x", "x:0", F32, (784,)),), (TensorSpec("y", "y:0", F32, (10,)),))
IMAGE = Interface("m", "1", (TensorSpec("x", "x:0", F32, (2, 2)),), (TensorSpec("y", "y:0", F32, (10,)),))
FREE = Interface("m", "1", (TensorSpec("v", "v:0", F32, (-1,)),), (TensorSpec("s", "s:0", F32, ()),))
INTS = Interface("m", "1", (TensorSpec("i", "i:0", np.dtype("int64"), (2,)),), (TensorSpec("s", "s:0", F32, ()),))
HALF = Interface("m", "1", (TensorSpec("h", "h:0", np.dtype("float16"), (2,)),), (TensorSpec("s", "s:0", F32, ()),))
DOUBLE = Interface("m", "1", (TensorSpec("d", "d:0", np.dtype("float64"), (2,)),), (TensorSpec("s", "s:0", F32, ()),))
DEEP = 1000  # orjson parses up to 1024 levels; Python's repr and a recursive walk stop at about 1000


def decode_json(body: bytes, interface: Interface, max_rows: int, header_length: str | None = None) -> Decoded:
    """A JSON body at POST /score, read as the server reads it (with its Inference-Header-Content-Length, if any)."""
    headers = {} if header_length is None else {oip_binary.HEADER_LENGTH: header_length}
    return registry.find("application/json", headers).decode(body, interface, Limits(max_rows=max_rows))


def encode(codec, outputs: tuple[np.ndarray, ...], interface: Interface) -> object:
    return json.loads(codec.encode(Decoded((), codec), outputs, interface).body)


def nested(depth: int, inner: bytes = b"") -> bytes:
    return b"[" * depth + inner + b"]" * depth


@pytest.fixture
def no_parse(monkeypatch):
    """orjson must not be reached: the body is refused on its bytes."""

    def refuse(_body):
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(decode.orjson, "loads", refuse)


# --- the count of values, before parsing


def test_empty_lists_count_as_values_and_are_refused_before_parsing(no_parse):
    # 2 empty lists per comma: under the old bound (twice the request's values, in commas), over the new one.
    max_rows = 4096
    body = b'{"inputs": [' + b"[[]]," * 2_000_000 + b"[[]]]}"
    most = registry.JSON.most_values(HOWTO, Limits(max_rows=max_rows))
    assert body.count(b",") < 2 * max_rows * 784 and decode.count(body).values > most
    for interface in (HOWTO, IMAGE):
        with pytest.raises(PayloadTooLarge) as caught:
            decode_json(body, interface, max_rows)
        assert caught.value.status_code == 413
        assert "more than the" in caught.value.message and "MAX_REQUEST_ROWS" in caught.value.message


def test_the_bounds_are_the_largest_of_the_forms_a_body_may_be_in():
    # 2 rows + 1 of 784 values, their list and a slot, an object and a key (TF Serving's instances); keys and ids.
    assert registry.JSON.most_values(HOWTO, Limits(max_rows=2)) == 3 * (784 + 1 + 3) + 4096 + 32 * 2
    assert oip_json.CODEC.most_values(HOWTO, Limits(max_rows=2)) == 6524  # the protocol's path: the same overhead
    assert oip_json.CODEC.deepest(HOWTO) == registry.JSON.deepest(HOWTO)  # and the deepest form

    class Records(tfserving_rows.RowsCodec):  # {"batch": {"records": [{"id", "tag", "x": row}]}}: 3 more a row
        name, depth = "records", 5  # the document, "batch", "records", a record and "x" enclose a row's values

        def row_overhead(self, interface: Interface) -> int:
            return super().row_overhead(interface) + 3

    forms = JsonForms((*registry.JSON_FORMS, Records()))
    assert forms.most_values(HOWTO, Limits(max_rows=2)) == 6524 + 3 * 3
    assert forms.deepest(HOWTO) == registry.JSON.deepest(HOWTO) + 1


def test_a_body_of_more_backslashes_than_a_request_holds_is_refused_before_parsing(no_parse):
    escapes = b"\\\\" * (decode.MAX_ESCAPES // 2)  # escaped backslashes in a string the how-to's form ignores
    with pytest.raises(PayloadTooLarge) as caught:
        decode_json(b'{"data": [[1, 2]], "note": "' + escapes + b'\\\\"}', INTS, 4)
    assert caught.value.message == (
        f"body holds {decode.MAX_ESCAPES + 2} backslashes, more than the {decode.MAX_ESCAPES} a request may hold"
    )


def test_a_body_of_as_many_backslashes_as_a_request_holds_is_read():
    escapes = b"\\\\" * (decode.MAX_ESCAPES // 2)
    decoded = decode_json(b'{"data": [[1, 2]], "note": "' + escapes + b'"}', INTS, 4)
    np.testing.assert_array_equal(decoded.arrays[0], np.array([[1, 2]], np.int64), strict=True)


def test_a_full_request_of_every_form_is_within_the_bounds():
    max_rows = 3
    rows = [[0.5] * 784] * max_rows
    flat = [0.5] * 784 * max_rows
    bodies = [
        {"data": rows, "id": "[[[[[[[[[[[[[[[[ ]]]]"},  # brackets in a string are not nesting
        {"instances": rows, "signature_name": "serving_default"},
        {"instances": [{"x": row} for row in rows]},
        {"inputs": rows},
        {"inputs": {"x": rows}},
        {"id": "a,b:c", "inputs": [{"name": "x", "shape": [3, 784], "datatype": "FP32", "data": rows}]},
        {"inputs": [{"name": "x", "shape": [3, 784], "datatype": "FP32", "data": flat, "parameters": {}}],
         "outputs": [{"name": "y", "parameters": {"binary_data": False}}], "parameters": {}},
    ]  # fmt: skip
    for document in bodies:
        body = orjson.dumps(document)
        assert len(decode_json(body, HOWTO, max_rows).arrays[0]) == max_rows


def test_one_row_over_the_limit_gets_its_own_message():
    body = orjson.dumps({"instances": [[0.5] * 784] * 4})
    with pytest.raises(PayloadTooLarge, match=r"has 4 rows; the limit is 3 rows per request \(MAX_REQUEST_ROWS\)$"):
        decode_json(body, HOWTO, 3)


def test_a_free_shape_body_is_bounded_by_a_ceiling(monkeypatch, no_parse):
    monkeypatch.setattr(jsonbounds, "FREE_JSON_VALUES", 1000)
    body = b'{"inputs": [[' + b"1," * 1000 + b"1]]}"
    with pytest.raises(PayloadTooLarge, match="more than the 1000 a request may hold: a ceiling for inputs of a free"):
        decode_json(body, FREE, 4096)


def test_brackets_and_quotes_beyond_what_the_values_need_are_refused(no_parse):
    body = b'{"inputs": [[1, 2]], "x": "' + b"]" * 18_000 + b'"}'
    with pytest.raises(PayloadTooLarge, match="brackets and quotes"):
        decode_json(body, INTS, 2)


# --- the depth, before parsing


@pytest.mark.parametrize(
    "body",
    [
        b'{"signature_name": ' + nested(DEEP) + b', "inputs": [[1, 2]]}',
        b'{"instances": [[1, 2]], "signature_name": ' + nested(DEEP) + b"}",
        b'{"inputs": [{"name": ' + nested(DEEP) + b', "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}',
        b'{"inputs": [{"name": "i", "shape": ' + nested(DEEP) + b', "datatype": "INT64", "data": [1, 2]}]}',
        b'{"inputs": [{"name": "i", "shape": [1, 2], "datatype": ' + nested(DEEP) + b', "data": [1, 2]}]}',
        b'{"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": ' + nested(DEEP, b"1") + b"}]}",
        b'{"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 2], "parameters": '
        + b'{"a": ' * DEEP
        + b"1"
        + b"}" * DEEP
        + b"}]}",
        b'{"id": ' + nested(DEEP) + b', "inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1]}]}',
        b'{"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}], "outputs": '
        + nested(DEEP)
        + b"}",
        # a string of closing brackets does not hide the nesting after it
        b'{"id": "' + b"]" * DEEP + b'", "inputs": [[1, 2]], "signature_name": ' + nested(DEEP) + b"}",
        b'{"id": "\\"' + b"]" * DEEP + b'", "inputs": [[1, 2]], "signature_name": ' + nested(DEEP) + b"}",
    ],
)
def test_a_body_nested_deeper_than_the_inputs_is_refused_before_parsing(body, no_parse):
    with pytest.raises(BadRequest) as caught:
        decode_json(body, INTS, 10)
    assert caught.value.status_code == 400
    assert "body is nested" in caught.value.message and "a request is nested at most 8 deep" in caught.value.message


def test_the_depth_masks_strings_and_their_escapes():
    assert decode.count(b'{"a": "[[[[", "b": [[1]]}').depth == 3
    assert decode.count(b'{"a": "]]]]", "b": [[1]]}').depth == 3
    assert decode.count(b'{"a": "x\\"]]]]", "b": [[1]]}').depth == 3  # an escaped quote does not end the string
    assert decode.count(b'{"a": "x\\\\", "b": [[1]]}').depth == 3  # an escaped backslash escapes nothing
    assert decode.count(b'{"a": "\\\\\\"]]", "b": [[[1]]]}').depth == 4
    assert decode.count(b'{"a": "\\n]]]]", "b": [[1]]}').depth == 3


def test_the_depth_allowed_follows_the_deepest_input():
    # 4: the deepest form's nesting down to its rows, the Open Inference Protocol's {"inputs": [{"data": [...]}]}.
    assert registry.JSON.deepest(HOWTO) == 1 + 4 + decode.EXTRA_DEPTH
    assert registry.JSON.deepest(IMAGE) == 2 + 4 + decode.EXTRA_DEPTH
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 2, 2], "datatype": "FP32", "data": [[[1, 2], [3, 4]]],
                                     "parameters": {"a": [[1]]}}]})  # fmt: skip
    assert decode_json(body, IMAGE, 1).arrays[0].shape == (1, 2, 2)


def test_the_howto_careful_path_is_bounded_too(no_parse):
    with pytest.raises(BadRequest, match="body is nested 1001 deep"):
        decode_json(b'{"x": ' + nested(DEEP) + b"}", HOWTO, 2)


# --- validators and messages safe against nesting, whatever reaches them


def deep_list(depth: int) -> list:
    return orjson.loads(nested(depth))


def test_validators_take_deep_values_without_recursing():
    deep = deep_list(DEEP)
    with pytest.raises(BadRequest) as caught:
        check_signature_name({"signature_name": deep}, INTS)
    assert len(caught.value.message) < 200 and "[[[" in caught.value.message
    cases = [
        {"inputs": [{"name": deep, "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]},
        {"inputs": [{"name": "i", "shape": deep, "datatype": "INT64", "data": [1, 2]}]},
        {"inputs": [{"name": "i", "shape": [1, 2], "datatype": deep, "data": [1, 2]}]},
        {"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": deep}]},
        {"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 2], "parameters": deep}]},
        {"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 2],
                     "parameters": {"binary_data_size": deep}}]},
        {"id": deep, "inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]},
        {"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}], "outputs": deep},
        {"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}], "outputs": [{"name": deep}]},
    ]  # fmt: skip
    for document in cases:
        with pytest.raises(BadRequest) as caught:
            oip_json.CODEC.read(JsonBody(document, b"", TensorReader(Limits(max_rows=10), False)), INTS)
        assert len(caught.value.message) < 300


@pytest.mark.parametrize("data", [[[1, [2]]], [[[[1, 2]]]], [[1, 2], [[[[[[3]]]]], 4]]])
def test_nesting_deeper_than_the_rank_is_a_400_that_says_so(data):
    spec = INTS.inputs[0]
    reader = TensorReader(Limits(max_rows=10))
    with pytest.raises(BadRequest, match="deeper than the input's rank allows"):
        reader.from_json(data, spec, '"inputs"')
    deep = deep_list(DEEP)
    with pytest.raises(BadRequest, match="nested deeper than the input's rank allows"):
        reader.from_json([[1, deep]], spec, '"inputs"')
    with pytest.raises(BadRequest, match="nested deeper than the input's rank allows"):
        reader.from_flat([1, deep], [1, 2], "INT64", spec, "input 'i'")


def test_shown_writes_any_value_in_about_80_characters():
    assert decode.shown("abc") == "'abc'"
    assert decode.shown([1, 2.5, None, True]) == "[1, 2.5, null, true]"
    assert decode.shown({"a": [1]}) == "{'a': [1]}"
    for value in (deep_list(DEEP), "x" * 10_000, list(range(10_000)), {str(i): i for i in range(1000)},
                  [[[[[1]]]]], [{"a" * 500: ["b" * 500]}]):  # fmt: skip
        text = decode.shown(value)
        assert len(text) <= 84, text
    assert decode.shown(deep_list(5)) == "[[[[...]]]]"
    assert decode.shown(list(range(100))).endswith("...")


# --- no made-up class ids


def test_a_row_whose_scores_are_not_all_finite_gets_a_null_class_id():
    interface = Interface("m", "1", HOWTO.inputs, (TensorSpec("y", "y:0", F32, (3,)),))
    scores = np.array([[0.1, 0.7, 0.2], [np.nan, np.nan, np.nan], [0.5, np.inf, 0.1], [0.9, 0.0, 0.1]], np.float32)
    assert encode(howto.CODEC, (scores,), interface) == [1, None, None, 0]
    values = encode(tfserving_rows.CODEC, (scores,), interface)
    assert values["predictions"][1] == [None, None, None]  # values: NaN and inf as null
    assert values["predictions"][2] == [0.5, None, 0.1]


def test_a_row_whose_highest_score_is_shared_gets_a_null_class_id():
    """The how-to's model answers scores all 0.0 for rows near float32's limit (the graph overflows and its ReLU
    turns NaN into 0): argmax would say class 0, which nothing in the scores supports."""
    interface = Interface("m", "1", HOWTO.inputs, (TensorSpec("y", "y:0", F32, (3,)),))
    scores = np.array([[0.0, 0.0, 0.0], [0.2, 0.7, 0.7], [0.7, 0.2, 0.2]], np.float32)
    assert encode(howto.CODEC, (scores,), interface) == [None, None, 0]


def test_rows_all_finite_keep_their_class_ids():
    interface = Interface("m", "1", HOWTO.inputs, (TensorSpec("y", "y:0", F32, (3,)),))
    scores = np.array([[0.1, 0.7, 0.2], [0.9, 0.0, 0.1]], np.float32)
    assert encode(howto.CODEC, (scores,), interface) == [1, 0]


# --- integers reach a float input only exactly


@pytest.mark.parametrize("value", ["18446744073709551616", "-9223372036854775809", "100000000000000000000001"])
@pytest.mark.parametrize("form", ["data", "instances", "inputs"])
def test_an_integer_beyond_64_bits_is_refused_not_rounded_by_the_parser(value, form):
    body = f'{{"{form}": [[0.5, {value}{", 0.5" * 782}]]}}'.encode()
    with pytest.raises(BadRequest, match="outside the 64-bit integer range"):
        decode_json(body, HOWTO, 10)


@pytest.mark.parametrize(
    "value", ["9223372036854775808", "1.00000000000000000000001", "1e19", "0.00000000000000000000123"]
)
def test_long_numbers_that_are_not_wide_integers_pass(value):
    body = f'{{"instances": [[0.5, {value}{", 0.5" * 782}]]}}'.encode()
    assert decode_json(body, HOWTO, 10).arrays[0].shape == (1, 784)


@pytest.mark.parametrize("value", [2**24 + 1, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63 + 1, 2**64 - 1])
def test_an_integer_float32_cannot_hold_is_refused_in_every_form(value):
    row = [0.5] * 783 + [value]
    message = f"is an integer that FP32 cannot hold exactly: {value} "
    bodies = [
        {"data": [row]},  # the how-to's fast path, and its careful one
        {"data": [row], "id": "\\"},
        {"instances": [row]},
        {"inputs": [row]},
        {"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": row}]},
        {"inputs": [{"name": "x", "shape": [1, 784], "datatype": "INT64", "data": [0] * 783 + [value]}]}
        if value < 2**63 else {"inputs": [{"name": "x", "shape": [1, 784], "datatype": "UINT64",
                                           "data": [0] * 783 + [value]}]},
        {"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": [row]}]},
        {"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP64", "data": [1] * 783 + [value]}]},
    ]  # fmt: skip
    for document in bodies:
        with pytest.raises(BadRequest, match=message) as caught:
            decode_json(orjson.dumps(document), HOWTO, 4)
        assert "(it would be" in caught.value.message


@pytest.mark.parametrize("value", [2**24, 2**53, 2**63, -(2**63), 2**64 - 2**40, 16777216])
def test_integers_float32_holds_are_taken(value):
    row = [0.5] * 783 + [value]
    for document in ({"data": [row]}, {"instances": [row]},
                     {"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": row}]}):  # fmt: skip
        decoded = decode_json(orjson.dumps(document), HOWTO, 4)
        assert int(decoded.arrays[0][0, 783]) == value


def test_integers_to_float16_and_float64_inputs_are_checked_exactly():
    with pytest.raises(
        BadRequest,
        match=r"an integer that FP16 cannot hold exactly: 2049 \(it would be 2048\); the input 'h'",
    ):
        decode_json(b'{"inputs": [[1, 2049]]}', HALF, 4)
    with pytest.raises(BadRequest, match="is an integer that FP16 cannot hold exactly: 2049 "):
        decode_json(b'{"inputs": [[0.5, 2049]]}', HALF, 4)
    assert decode_json(b'{"inputs": [[1, 2048]]}', HALF, 4).arrays[0].tolist() == [[1, 2048]]
    big = 2**53 + 1
    with pytest.raises(BadRequest, match=f"is an integer that FP64 cannot hold exactly: {big} "):
        decode_json(f'{{"inputs": [[1, {big}]]}}'.encode(), DOUBLE, 4)
    with pytest.raises(BadRequest, match=f"is an integer that FP64 cannot hold exactly: {big} "):
        decode_json(f'{{"inputs": [[0.5, {big}]]}}'.encode(), DOUBLE, 4)
    oip = {"inputs": [{"name": "d", "shape": [1, 2], "datatype": "INT64", "data": [1, big]}]}
    with pytest.raises(BadRequest, match=f"is an integer that FP64 cannot hold exactly: {big} "):
        decode_json(orjson.dumps(oip), DOUBLE, 4)


def test_integers_in_binary_bodies_to_a_float_input_are_checked_exactly():
    stream = io.BytesIO()
    row = np.zeros((1, 784), np.int64)
    row[0, 5] = 2**53 + 1
    np.save(stream, row)
    with pytest.raises(
        BadRequest, match=r"row 0, column 5 is an integer that FP32 cannot hold exactly: 9007199254740993 \(it would be"
    ):
        npy.CODEC.decode(stream.getvalue(), HOWTO, Limits(max_rows=4))
    row[0, 5] = 2**24
    stream = io.BytesIO()
    np.save(stream, row)
    assert npy.CODEC.decode(stream.getvalue(), HOWTO, Limits(max_rows=4)).arrays[0][0, 5] == 2**24
    header = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 784], "datatype": "INT64",
                                       "parameters": {"binary_data_size": 784 * 8}}]})  # fmt: skip
    data = np.zeros(784, "<i8")
    data[3] = 2**24 + 1
    with pytest.raises(BadRequest, match="is an integer that FP32 cannot hold exactly: 16777217 "):
        decode_json(header + data.tobytes(), HOWTO, 4, str(len(header)))


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [[-1, 9223372036854775808]]}',  # numpy: float64 of the two
        b'{"inputs": [[1, 18446744073709551616]]}',  # orjson: a float
        b'{"inputs": [[0, 100000000000000000000000]]}',
        b'{"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [-1, 9223372036854775808]}]}',
        b'{"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 18446744073709551616]}]}',
    ],
)
def test_an_integer_beyond_64_bits_is_out_of_range_not_a_fraction(body):
    with pytest.raises(BadRequest) as caught:
        decode_json(body, INTS, 4)
    assert "outside" in caught.value.message and "range" in caught.value.message
    assert "fraction" not in caught.value.message


# --- what a parse costs


@pytest.mark.parametrize(
    "document",
    [
        {"data": [[0.123456] * 784] * 20},
        {"instances": [[1] * 784] * 20},
        {"inputs": [[]] * 5000},
        {"inputs": [{}] * 5000},
        {"inputs": [{"name": "x", "shape": [20, 784], "datatype": "FP32", "data": [0.5] * 784 * 20}]},
        {"inputs": [["é" * 50]] * 100},
    ],
)
def test_parse_cost_bounds_the_objects_and_arrays_a_parse_makes(document):
    body = orjson.dumps(document)
    cost = jsonbounds.parse_cost(decode.count(body, depth=False))
    counts = registry.JSON.check_json(body, HOWTO, Limits())
    assert cost == jsonbounds.parse_cost(counts)
    tracemalloc.start()
    with contextlib.suppress(BadRequest):
        decode_json(body, HOWTO, 4096)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= jsonbounds.parse_cost(counts, allocated=True)  # orjson's untouched reservation counted
    assert peak - 12 * len(body) <= cost  # the rest, in what is touched


def test_the_counts_are_of_the_json_part_and_refuse_before_parsing(no_parse):
    header = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 784 * 4}}]})  # fmt: skip
    counts = registry.JSON.check_json(header, HOWTO, Limits(max_rows=4), binary=784 * 4)
    assert counts.size == len(header) and counts.binary == 784 * 4 and counts.depth == 4
    with_binary = jsonbounds.parse_cost(counts)
    assert with_binary >= 18 * 784 * 4
    # The binary extension's codec counts the JSON before the binary data, and reserves the parse with its conversion.
    reserved = []
    codec = registry.find("application/json", {oip_binary.HEADER_LENGTH: str(len(header))})
    with pytest.raises(AssertionError, match="the body was parsed"):
        codec.decode(header + bytes(784 * 4), HOWTO, Limits(max_rows=4), reserved.append)
    assert reserved == [with_binary]
    with pytest.raises(PayloadTooLarge):
        registry.JSON.check_json(b'{"inputs": [' + b"[]," * 10_000 + b"[]]}", HOWTO, Limits(max_rows=4))
    with pytest.raises(BadRequest, match="body is nested 1000 deep"):
        registry.JSON.check_json(nested(DEEP), HOWTO, Limits(max_rows=4))


def test_the_collector_is_paused_while_orjson_parses_and_left_as_it_was(monkeypatch):
    seen = []
    real = orjson.loads

    def loads(body):
        seen.append(gc.isenabled())
        return real(body)

    monkeypatch.setattr(decode.orjson, "loads", loads)
    assert gc.isenabled()
    three = Interface("m", "1", (TensorSpec("x", "x:0", F32, (3,)),), HOWTO.outputs)
    assert decode_json(b'{"data": [[1, 2, 3]], "x": [1]}', three, 1).arrays[0].shape == (1, 3)  # the careful path
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(BadRequest):
            decode_json(b'{"inputs": [[1, 2, 3]]}', HOWTO, 1)
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()


def test_an_integer_literal_of_thousands_of_digits_is_a_400_not_a_500():
    body = b'{"instances": [[' + b"1" * 4301 + b", 0" * 783 + b"]]}"  # Python's int() refuses over 4300 digits
    with pytest.raises(BadRequest, match="outside the 64-bit integer range"):
        decode_json(body, HOWTO, 10)


def test_digits_in_a_string_are_no_integer_literal():
    body = b'{"instances": [[1e20' + b", 0" * 783 + b']], "note": "order 123456789012345678901234"}'
    assert decode_json(body, HOWTO, 10).arrays[0][0, 0] == np.float32(1e20)
    oip = {"id": "req 123456789012345678901234", "inputs": [{"name": "x", "shape": [1, 783], "datatype": "FP32"}]}
    oip["inputs"][0]["data"] = [1e30] + [0] * 782
    with pytest.raises(BadRequest, match="shape"):  # the request's own mistake, not a wide integer
        decode_json(orjson.dumps(oip), HOWTO, 10)


def test_small_integers_reach_a_float_input_without_wide_copies():
    """uint8 to FP32 is always exact: no int64 copies of the array to compare (a 64 MiB .npy took 1.5 GiB)."""
    array = np.random.default_rng(0).integers(0, 256, (4096, 784), dtype=np.uint8)
    out = io.BytesIO()
    np.save(out, array)
    body = out.getvalue()
    tracemalloc.start()
    try:
        rows = npy.CODEC.decode(body, HOWTO, Limits()).arrays[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows.dtype == F32 and np.array_equal(rows, array)
    assert peak <= 7 * array.size  # the float32 rows, a mask and the data's slice of one byte a value, slack


def test_binary_tensor_data_beyond_what_the_rows_take_is_refused_before_it_is_costed():
    header = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32"}]})
    body = header + bytes(11 * 784 * 8)  # more than 10 rows of the widest dtype
    with pytest.raises(PayloadTooLarge, match="binary tensor data"):
        registry.find("application/json", {oip_binary.HEADER_LENGTH: str(len(header))}).decode(
            body, HOWTO, Limits(max_rows=10)
        )

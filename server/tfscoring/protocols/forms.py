"""The JSON request forms POST /score takes, and the answer each one expects.

- the how-to's `{"data": [...]}` (one-input models): rows nested to the input's shape, or flat; answered
  with class ids (argmax of a one-output model's scores, DATA_ANSWER=class_ids) or the outputs;
- TF Serving's REST predict API (g3doc/api_rest.md): row form `{"instances": [...]}` ->
  `{"predictions": [...]}`, an instance being the input's value, or an object keyed by input names
  (several inputs: always); columnar form `{"inputs": value or {name: value}}` -> `{"outputs": value or
  {name: value}}`; one output answers its values, several an object keyed by output names;
- the Open Inference Protocol v2 (KServe, Triton, MLServer): `{"id", "inputs": [{"name", "shape",
  "datatype", "data"}], "outputs": [{"name"}]}` -> `{"model_name", "model_version", "id", "outputs":
  [{"name", "shape", "datatype", "data"}]}`, data flat in row-major order or nested to the shape, and
  Triton's binary tensor data extension (a JSON header of Inference-Header-Content-Length bytes, then
  each binary tensor's bytes), both ways.

Every input is validated on its own (tensors.py) and all of them must have the same number of rows.

Before a JSON body is parsed, its bytes are counted (decode.count: no Python object per value): a body holding
more JSON values than a request to the model can (json_limits) gets 413, one nested deeper than the deepest
input's rank and the forms' wrapping 400; parse_cost() is what its parse will take, for the in-flight budget.
Messages show a client's values through decode.shown: at most about 80 characters, never walked deeply.

The how-to's answer, class ids, is the argmax of each row's scores; a row whose scores are not all finite
(NaN or infinite, e.g. for inputs near float32's limit) has no class: its id is null.  Outputs answered as
values keep NaN and infinities as null.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import DATATYPES, Batch, Interface, TensorSpec
from tfscoring.protocols import decode, tensors

HEADER_LENGTH = "Inference-Header-Content-Length"  # Triton's binary extension: the JSON part's length


class Form(enum.Enum):
    HOWTO = "data"
    ROW = "instances"
    COLUMNAR = "inputs"
    OIP = "open inference protocol"


@dataclass
class Request:
    """A decoded request: each input's rows, and how to answer."""

    rows: Batch  # one array per input of the interface, in its order
    form: Form
    id: str | None = None  # the Open Inference Protocol's request id, echoed
    outputs: tuple[int, ...] | None = None  # the outputs asked for (indices), None: all
    binary: frozenset[int] = field(default_factory=frozenset)  # outputs to answer as binary data


_TENSOR_KEYS = {"name", "shape", "datatype"}  # an Open Inference Protocol input tensor has these
_JSON = {"Content-Type": "application/json"}


def decode_json(
    body: bytes,
    interface: Interface,
    max_rows: int,
    header_length: str | None = None,
    oip_only: bool = False,
    counts: decode.Counts | None = None,
) -> Request:
    """The request in any JSON form.  `header_length`: the Inference-Header-Content-Length header, where sent;
    `oip_only`: the request came to an Open Inference Protocol path, so that is its form; `counts`: what
    check_json_body answered for this body, where the caller called it, not to count twice."""
    if counts is None and (fast := decode_fast(body, interface, max_rows, header_length, oip_only)):
        return fast
    try:
        request = _decode_document(body, interface, max_rows, header_length, oip_only, counts)
    except BadRequest:
        _check_wide_integers(body)  # an integer beyond 64 bits, read as a float, explains the error better
        raise
    if any(array.dtype.kind == "f" and array.size and float(np.abs(array).max()) >= 2.0**63 for array in request.rows):
        _check_wide_integers(body)  # such a value may have been an integer literal, rounded by the parser
    return request


def _decode_document(
    body: bytes,
    interface: Interface,
    max_rows: int,
    header_length: str | None,
    oip_only: bool,
    counts: decode.Counts | None,
) -> Request:
    binary = b""
    if header_length is not None:
        body, binary = _split_binary(body, header_length)
    check_body(body, interface, max_rows, counts)
    document = decode.parse_object(body, _oip_example(interface) if oip_only else _example(interface))
    booleans = b"true" in body or b"false" in body  # only then is a boolean among numbers worth looking for
    if oip_only or binary:
        return _oip(document, interface, max_rows, binary, booleans)
    _check_signature_name(document, interface)
    if "data" in document:
        return Request(_data(document["data"], interface, max_rows, booleans), Form.HOWTO)
    if "instances" in document and "inputs" in document:
        raise BadRequest('body has both "instances" and "inputs"; TF Serving\'s forms take one or the other')
    if "instances" in document:
        return Request(_instances(document["instances"], interface, max_rows, booleans), Form.ROW)
    if "inputs" in document:
        inputs = document["inputs"]
        if isinstance(inputs, list) and inputs and all(isinstance(i, dict) and _TENSOR_KEYS & i.keys() for i in inputs):
            return _oip(document, interface, max_rows, b"", booleans)
        return Request(_columnar(inputs, interface, max_rows, booleans), Form.COLUMNAR)
    raise BadRequest(
        'body has none of "data" (the how-to\'s form), "instances" or "inputs" (TF Serving\'s row and columnar '
        'forms) or "inputs" as a list of tensors (the Open Inference Protocol); e.g. ' + _example(interface)
    )


def decode_fast(
    body: bytes,
    interface: Interface,
    max_rows: int,
    header_length: str | None = None,
    oip_only: bool = False,
    reserve: Callable[[int], None] | None = None,
) -> Request | None:
    """The how-to's `{"data": rows}` parsed in C (simdjson: no Python object per value, the commas counted first),
    where the model and the body are plainly that; None for any other body, which decode_json takes.  `reserve`:
    told the parse's cost before it starts (decode.fast_rows)."""
    width = interface.howto_width
    if not width or header_length is not None or oip_only:
        return None
    rows = decode.fast_rows(body, width, max_rows, reserve)
    return None if rows is None else Request((rows,), Form.HOWTO)


def answer(request: Request, outputs: Batch, interface: Interface) -> AMLResponse:
    """The answer in the form the request came in."""
    specs = interface.outputs
    if request.form is Form.HOWTO:
        if len(outputs) == 1 and interface.data_answer == "class_ids":
            body = _class_ids(outputs[0])
        else:
            body = outputs[0] if len(outputs) == 1 else _named(specs, outputs)
    elif request.form is Form.ROW:
        if len(outputs) == 1:
            body = {"predictions": outputs[0]}
        else:
            body = {"predictions": [{s.name: o[i] for s, o in zip(specs, outputs, strict=True)} for i in range(
                len(outputs[0]))]}  # fmt: skip
    elif request.form is Form.COLUMNAR:
        body = {"outputs": outputs[0] if len(outputs) == 1 else _named(specs, outputs)}
    else:
        return _oip_answer(request, outputs, interface)
    return AMLResponse(_dumps(body), 200, _JSON)


def metadata(interface: Interface) -> AMLResponse:
    """GET /score: the model's interface in the Open Inference Protocol's model-metadata form (-1: any size)."""
    return AMLResponse(_dumps(metadata_document(interface)), 200, _JSON)


def metadata_document(interface: Interface) -> dict:
    return {
        "name": interface.model_name,
        "versions": [interface.model_version],
        "platform": "tensorflow_graphdef",
        # An input of one value per row says [-1, 1], as Triton does (and perf_analyzer needs); it takes [N] too.
        "inputs": [_tensor_metadata(spec, spec.shape or (1,)) for spec in interface.inputs],
        "outputs": [_tensor_metadata(spec, spec.shape) for spec in interface.outputs],
    }


def _tensor_metadata(spec: TensorSpec, row_shape: tuple[int, ...]) -> dict:
    return {"name": spec.name, "datatype": spec.datatype, "shape": [-1, *row_shape]}


def _class_ids(scores: np.ndarray) -> np.ndarray | list:
    """The how-to's answer: the argmax of each row's scores; null for a row whose scores tell no class: one not
    finite, or the highest shared by several classes (an input the model cannot tell apart, e.g. values near
    float32's limit that overflow inside the graph to scores all equal); an output of one value per row as it
    is (NaN: null)."""
    if scores.ndim == 2 and scores.shape[1] > 1 and scores.dtype.kind == "f":
        ids = scores.argmax(axis=1)
        top = scores[np.arange(len(scores)), ids]
        told = np.isfinite(scores).all(axis=1) & ((scores == top[:, np.newaxis]).sum(axis=1) == 1)
        if told.all():
            return ids
        return [int(i) if ok else None for i, ok in zip(ids.tolist(), told.tolist(), strict=True)]
    if scores.ndim == 2 and scores.shape[1] == 1:
        return scores[:, 0]
    return scores


def _named(specs: tuple[TensorSpec, ...], outputs: Batch) -> dict:
    return {spec.name: output for spec, output in zip(specs, outputs, strict=True)}


def _dumps(body: object) -> bytes:
    # numpy arrays straight to JSON; NaN and infinities (which a model may answer) become null.
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY, default=_to_list)


def _to_list(value: object) -> object:
    if isinstance(value, (np.ndarray, np.generic)):  # e.g. a non-contiguous array, which orjson leaves to this
        return value.tolist()
    raise TypeError


def _example(interface: Interface) -> str:
    if interface.howto_width:
        return decode.expected_shape(interface.howto_width)
    names = ", ".join(f'"{spec.name}": [{_rows_of(spec)}]' for spec in interface.inputs)
    return f'{{"inputs": {{{names}}}}}'


def _oip_example(interface: Interface) -> str:
    first = interface.inputs[0]
    shape = ", ".join(["1", *(str(max(n, 1)) for n in first.shape)])
    return (
        f'{{"inputs": [{{"name": "{first.name}", "shape": [{shape}], "datatype": "{first.datatype}", "data": [...]}}]}}'
    )


def _rows_of(spec: TensorSpec) -> str:
    return f"rows of shape ({spec.shown()[4:]}" if spec.shape else "one value per row"


# JSON values a body may hold for a model with an input of a free dimension, where no row size bounds them:
# 2**23, as many as 2048 rows of 4096 values, or a 32 MiB body of `0.5,`.  Measured at the ceiling (2 cores): parse
# and validation hold the GIL about 1 to 1.4 s, RSS rises about 500 MB; parse_cost() says 905 MB, inside the
# FREE_JSON_WEIGHT x 64 MiB (1 GiB) that such a body reserves before it is read.
FREE_JSON_VALUES = 1 << 23
# Nesting of the deepest form around an input's batch: the Open Inference Protocol's document, its "inputs"
# list, the tensor object and its "data" (the batch dimension); the row's own dimensions come on top.
FORM_DEPTH = 4


def json_limits(interface: Interface, max_rows: int) -> tuple[int, int, str]:
    """The most JSON values a request to the model may hold, its deepest nesting, and a phrase saying why.

    Fixed-shape inputs: MAX_REQUEST_ROWS + 1 rows (one over, so that it gets its own message) of each input's
    values and the lists of a row nested to its shape, an object and a key for each input (TF Serving's
    instances), and decode.KEY_VALUES besides (ids, names, parameters).  Free-shape: FREE_JSON_VALUES.
    Nesting: the deepest input's rank (one value per row: 1, Triton's [N, 1]) + FORM_DEPTH + decode.EXTRA_DEPTH."""
    rank = max(max((len(spec.shape) for spec in interface.inputs), default=0), 1)
    deepest = rank + FORM_DEPTH + decode.EXTRA_DEPTH
    if interface.bounded_json:
        per_row = 1 + sum(max(spec.row_size, 1) + _lists_in_row(spec.shape) + 2 for spec in interface.inputs)
        most = (max_rows + 1) * per_row + decode.KEY_VALUES + 32 * (len(interface.inputs) + len(interface.outputs))
        why = f"{max_rows} rows (MAX_REQUEST_ROWS) of {interface.input_list()}"
    else:
        most = FREE_JSON_VALUES
        why = f"a ceiling for inputs of a free dimension ({interface.input_list()})"
    return most, deepest, f"{why}, nested at most {deepest} deep"


def _lists_in_row(shape: tuple[int, ...]) -> int:
    """The lists of one row nested to `shape`: 1 + d0 + d0 x d1 ... (none for one value per row)."""
    lists, width = 0, 1
    for n in shape:
        lists += width
        width *= max(n, 1)
    return lists


def check_json_body(
    body: bytes, interface: Interface, max_rows: int, header_length: str | None = None
) -> decode.Counts:
    """Once a JSON body is read, before anything parses it: its counts (decode.count, of the JSON part where
    Inference-Header-Content-Length is sent), or a 413 where it holds more JSON values than a request to the model
    can, a 400 where it is nested deeper than the model's inputs (json_limits) or that header is wrong.  Pass the
    counts on to parse_cost (what to reserve) and decode_json (not to count twice)."""
    binary = 0
    if header_length is not None:
        body, rest = _split_binary(body, header_length)
        binary = len(rest)
        most_binary = max_rows * sum(max(spec.row_size, 1) * 8 for spec in interface.inputs)  # 8: the widest dtype
        if interface.bounded_json and binary > most_binary:  # refused before parse_cost reserves its conversion
            raise PayloadTooLarge(
                f"the binary tensor data is {binary} bytes, more than {max_rows} rows (MAX_REQUEST_ROWS) of "
                f"{interface.input_list()} take ({most_binary} at most)"
            )
    most, deepest, why = json_limits(interface, max_rows)
    counts = dataclasses.replace(decode.count(body, most), binary=binary)
    decode.check_counts(counts, most, deepest, why)
    return counts


# An integer literal of 19 digits or more, not the fraction or exponent of a number: orjson reads one beyond 64 bits
# (below -2**63 or above 2**64 - 1) as a float64, rounded.  Looked for only where a request failed or holds a value
# of 2**63 or more: rare in real inputs, so the common request pays one max() per input.
_WIDE_INTEGER = re.compile(rb"(?<![0-9.eE+-])-?[0-9]{19,}(?![0-9.eE])")
# Digits as 0, and what may come before an integer literal (a value's start, or its minus sign) as a comma: a
# comma and 19 zeros in the translated body is a candidate; a fraction's digits follow a point, never a comma.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string, its escapes included
_CANDIDATES = bytes.maketrans(b"123456789[: \t\r\n-", b"000000000,,,,,,,")


def _check_wide_integers(body: bytes) -> None:
    """A 400 for an integer literal beyond 64 bits, which JSON parsers round silently.  The regular expression runs
    only on a body with a run of 19 digits somewhere (found in C: about 0.5 ms for 1 MiB of numbers), and then on
    the body with its strings emptied (digits in a string are no number)."""
    if b"," + b"0" * 19 not in body.translate(_CANDIDATES):
        return
    for match in _WIDE_INTEGER.finditer(_JSON_STRING.sub(b'""', body)):
        literal = match[0]
        # More than 20 digits is beyond 2**64 whatever they are (JSON has no leading zeros): no int() of them,
        # which Python refuses past 4300 digits.
        if len(literal.lstrip(b"-")) > 20 or not -(2**63) <= int(literal) <= 2**64 - 1:
            shown = literal[:24].decode() + ("..." if len(literal) > 24 else "")
            raise BadRequest(
                f"integer {shown} is outside the 64-bit integer range, which JSON parsers round to a float: no "
                "input takes it exactly; send a float (e.g. 1.5e20) where rounding is meant"
            )


def check_body(body: bytes, interface: Interface, max_rows: int, counts: decode.Counts | None = None) -> None:
    """Before parsing: a 413 for a body holding more JSON values than a request to the model can, a 400 for one
    nested deeper than the model's inputs (json_limits)."""
    most, deepest, why = json_limits(interface, max_rows)
    if counts is None or counts.depth < 0:  # counted without the depth (parse_cost's): count it
        counts = decode.count(body, most)
    decode.check_counts(counts, most, deepest, why)


# Bytes each thing a JSON body holds costs once parsed, measured with tracemalloc (orjson 3.13, Python 3.11):
# orjson.loads of [0.123456, ...]: 24 bytes a float; ints to 2**30 28, to 2**63 36 (true, false, null and
# -5..256 none); [[], [], ...] 56 a list and 8 a slot in its list; [{}, ...] 64, [{"a": 0.5}, ...] 184 an object
# of up to 5 keys (keys of up to 64 bytes are cached); a string 49 + 1 a character (4 for non-ASCII text).
# orjson's parser (yyjson) also reserves 12 bytes a body byte but touches only its 16-byte value records and a
# copy of the body (RSS high-water of loads: 9 bytes a body byte for short floats, 30 for empty lists); it is
# freed before validation, which makes arrays: float64 and object copies, the converted array, masks.
_VALUE = 36 + 8  # the largest number object and its slot
_LIST = 56
_OBJECT = 184 + 48  # and its table growing past 5 keys, per key: counted with each value
_STRING = 49
_PARSER_VALUE = 16  # yyjson's record of each value, touched
_PARSER_RESERVED = 12  # yyjson's reservation, a body byte: allocated, mostly never touched
_ARRAYS_PER_VALUE = 40  # validation and conversion: float64 (8), object (8), converted (<= 8), masks, exactness
_BINARY_PER_BYTE = 18  # a binary tensor's bytes: converted to a dtype up to 8 times wider, and its exactness check


def parse_cost(
    body: bytes | decode.Counts, interface: Interface, header_length: str | None = None, allocated: bool = False
) -> int:
    """An upper bound, in bytes, of the memory that decode_json's parse, validation and conversion of `body`
    take at their peak (Python objects, the memory orjson's parser touches, numpy arrays), from its bytes alone:
    reserve it from the in-flight budget once the body is read.  `body` may be check_json_body's counts.
    `allocated`: count the part of orjson's reservation that it never touches too (what tracemalloc sees; not
    resident memory)."""
    if isinstance(body, decode.Counts):
        counts = body
    else:
        if header_length is not None:
            body, rest = _split_binary(body, header_length)
        counts = dataclasses.replace(decode.count(body, depth=False), binary=len(rest) if header_length else 0)
    text_bytes = counts.size * (1 if counts.ascii else 4)  # the strings' characters
    binary = counts.binary
    values = counts.values
    untouched = _PARSER_RESERVED * counts.size if allocated else 0
    return (
        untouched
        + counts.size  # orjson's copy of the body
        + values * (_VALUE + _PARSER_VALUE + _ARRAYS_PER_VALUE)
        + counts.lists * _LIST
        + counts.objects * _OBJECT
        + counts.strings * _STRING
        + text_bytes
        + binary * _BINARY_PER_BYTE
    )


def _check_signature_name(document: dict, interface: Interface) -> None:
    """TF Serving's `signature_name`: the one signature served (serving_default where the graph has none)."""
    name = document.get("signature_name")
    served = interface.signature_key or "serving_default"
    if name is not None and name != served:
        raise BadRequest(f"signature_name {decode.shown(name)} is not served; this server serves {served!r}")


def only_input(interface: Interface, form: str) -> TensorSpec:
    """The input of a one-input model, for a form that has no names; a 400 for a model with several."""
    if len(interface.inputs) != 1:
        raise BadRequest(
            f"{form} is for a model with one input; this model has {len(interface.inputs)} "
            f"({interface.input_list()}): name each, e.g. {_example(interface)}"
        )
    return interface.inputs[0]


def _data(data: object, interface: Interface, max_rows: int, booleans: bool) -> Batch:
    spec = only_input(interface, 'the how-to\'s {"data": ...} form')
    return (tensors.from_json(data, spec, max_rows, '"data"', booleans),)


def _instances(instances: object, interface: Interface, max_rows: int, booleans: bool) -> Batch:
    if not isinstance(instances, list) or not instances:
        raise BadRequest(
            f'"instances" must be a non-empty list of inputs, one per row, got {decode.json_type(instances)}'
        )
    if len(interface.inputs) == 1 and not all(isinstance(instance, dict) for instance in instances):
        return (tensors.from_json(instances, interface.inputs[0], max_rows, "instances", booleans),)
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise BadRequest(
                f"instance {i} is {decode.json_type(instance)}; with {len(interface.inputs)} inputs each instance "
                f"is an object naming them: {_names(interface.inputs)}"
            )
        _check_names(instance, interface, f"instance {i}")
    if len(instances) > max_rows:
        raise PayloadTooLarge(f'"instances" has {len(instances)} rows; the limit is {max_rows} rows per request')
    rows = []
    for spec in interface.inputs:
        values = [_value_of(instance, spec) for instance in instances]
        rows.append(tensors.from_json(values, spec, max_rows, f"input {spec.name!r} of instances", booleans))
    return tuple(rows)


def _columnar(inputs: object, interface: Interface, max_rows: int, booleans: bool) -> Batch:
    if not isinstance(inputs, dict):
        spec = only_input(interface, 'the columnar form {"inputs": value}')
        return (tensors.from_json(inputs, spec, max_rows, '"inputs"', booleans),)
    _check_names(inputs, interface, '"inputs"')
    rows = tuple(
        tensors.from_json(_value_of(inputs, spec), spec, max_rows, f"input {spec.name!r}", booleans)
        for spec in interface.inputs
    )
    _same_rows(rows, interface)
    return rows


def _check_names(named: dict, interface: Interface, where: str) -> None:
    """An object keyed by input names (any of each input's aliases) names each input once and nothing else."""
    found = {}
    for key in named:
        spec = interface.input_named(key)
        if spec is None:
            raise BadRequest(
                f"{where} names {decode.shown(key)}, which is not an input of the model; its inputs: "
                f"{_names(interface.inputs)}"
            )
        if spec.name in found:
            raise BadRequest(
                f"{where} names the input {spec.name!r} twice "
                f"({decode.shown(found[spec.name])} and {decode.shown(key)})"
            )
        found[spec.name] = key
    missing = [spec.name for spec in interface.inputs if spec.name not in found]
    if missing:
        raise BadRequest(f"{where} lacks the input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")


def _value_of(named: dict, spec: TensorSpec) -> object:
    return next(value for key, value in named.items() if key in spec.aliases)


def _names(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(repr(spec.name) for spec in specs)


def _same_rows(rows: Batch, interface: Interface) -> None:
    counts = {spec.name: len(array) for spec, array in zip(interface.inputs, rows, strict=True)}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{name!r} {count}" for name, count in counts.items())
        raise BadRequest(f"the inputs have different numbers of rows ({shown}); each row needs a value of every input")


def _split_binary(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} is {decode.shown(header_length)}; it must be the length in bytes of the JSON at the "
            f"start of the body ({len(body)} bytes)"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _oip(document: dict, interface: Interface, max_rows: int, binary: bytes, booleans: bool) -> Request:
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        first = interface.inputs[0]
        raise BadRequest(
            f'"inputs" must be a non-empty list of tensors, e.g. [{{"name": "{first.name}", "shape": [1, ...], '
            f'"datatype": "{first.datatype}", "data": [...]}}]'
        )
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f'"id" must be a string, got {decode.json_type(request_id)}')
    found: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise BadRequest(f"input tensor {i} is {decode.json_type(tensor)}, not an object")
        name = tensor.get("name")
        spec = interface.input_named(name)
        if spec is None:
            raise BadRequest(f"input {decode.shown(name)} is not the model's; its inputs: {_names(interface.inputs)}")
        if spec.name in found:
            raise BadRequest(f"input {spec.name!r} is sent twice")
        where = f"input {decode.shown(name)}"
        declared = tensors.check_datatype(tensor.get("datatype"), spec, where)
        size = _binary_size(tensor, where)
        if size is not None:
            if offset + size > len(binary):
                raise BadRequest(f"{where} has binary_data_size {size}, past the end of the body's binary data")
            rows = tensors.from_bytes(binary[offset : offset + size], tensor.get("shape"), declared, spec, max_rows,
                                      where)  # fmt: skip
            offset += size
        else:
            data = tensor.get("data")
            if not isinstance(data, list):
                raise BadRequest(f'{where} has no "data" list of values (nor binary_data_size)')
            rows = tensors.from_flat(data, tensor.get("shape"), declared, spec, max_rows, where, booleans)
        found[spec.name] = rows
    if offset != len(binary):
        raise BadRequest(f"the body has {len(binary) - offset} bytes of binary data that no input claims")
    missing = [spec.name for spec in interface.inputs if spec.name not in found]
    if missing:
        raise BadRequest(f"request lacks the input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    rows = tuple(found[spec.name] for spec in interface.inputs)
    _same_rows(rows, interface)
    wanted, binary_out = _requested_outputs(document, interface)
    return Request(rows, Form.OIP, request_id, wanted, binary_out)


def _binary_size(tensor: dict, where: str) -> int | None:
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise BadRequest(f'{where} has "parameters" that is not an object')
    size = parameters.get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise BadRequest(f"{where} has binary_data_size {decode.shown(size)}; it must be a byte count")
    return size


def _requested_outputs(document: dict, interface: Interface) -> tuple[tuple[int, ...] | None, frozenset[int]]:
    """The outputs a request asks for (all when it names none) and which of them it wants as binary data."""
    parameters = document.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise BadRequest('"parameters" must be an object')
    all_binary = parameters.get("binary_data_output") is True
    asked = document.get("outputs")
    if not asked:  # absent or empty: every output, as Triton answers
        every = tuple(range(len(interface.outputs)))
        return None, frozenset(every if all_binary else ())
    if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
        raise BadRequest('"outputs" must be a list of objects naming outputs, e.g. [{"name": "..."}]')
    wanted, binary = [], set()
    for output in asked:
        spec = interface.output_named(output.get("name"))
        if spec is None:
            raise BadRequest(
                f"output {decode.shown(output.get('name'))} is not the model's; its outputs: "
                f"{_names(interface.outputs)}"
            )
        index = interface.outputs.index(spec)
        if index not in wanted:
            wanted.append(index)
        options = output.get("parameters") or {}
        if not isinstance(options, dict):
            raise BadRequest(f'output {spec.name!r} has "parameters" that is not an object')
        if options.get("binary_data", all_binary) is True:
            binary.add(index)
    return tuple(wanted), frozenset(binary)


def _oip_answer(request: Request, outputs: Batch, interface: Interface) -> AMLResponse:
    chosen = request.outputs if request.outputs is not None else range(len(outputs))
    tensors_out, blobs = [], []
    for index in chosen:
        spec, values = interface.outputs[index], outputs[index]
        tensor = {"name": spec.name, "shape": list(values.shape), "datatype": DATATYPES[values.dtype]}
        if index in request.binary:
            blob = np.ascontiguousarray(values, values.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = values.ravel()
        tensors_out.append(tensor)
    body = {"model_name": interface.model_name, "model_version": interface.model_version, "outputs": tensors_out}
    if request.id is not None:
        body["id"] = request.id
    header = _dumps(body)
    if not blobs:
        return AMLResponse(header, 200, _JSON)
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return AMLResponse(header + b"".join(blobs), 200, headers)

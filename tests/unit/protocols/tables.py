"""The protocol layer as the tables of this folder call it: decode a body of one request form against a model's
interface and the limits, encode outputs into that form's answer, and pick the form of a body from its content
type, path and headers.  No TensorFlow, no server: interfaces are built here as plain values.

Every test goes through the functions of this module (decode, receive, encode, validate...), so that when the
layer's API changes only this adapter does.  A body is decoded as the server decodes it: the codec found by
protocols/registry.py from its content type, headers and path (for JSON at POST /score, the JSON forms: the how-to's
rows in C first, then the counts, the parse, signature_name and the form its keys say), decoded within a Limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from tfscoring.errors import BadRequest, PayloadTooLarge, ScoringError
from tfscoring.http import routes
from tfscoring.interface import DTYPES, Interface, TensorSpec
from tfscoring.protocols import codec, oip_json, registry, tensors
from tfscoring.protocols.limits import Limits

MAX_ROWS = 4  # MAX_REQUEST_ROWS of these tables: small, so that a body one row over it stays small
HEADER_LENGTH = "Inference-Header-Content-Length"

# The request forms, by their codecs' names (the names of this folder's files), as the registry lists them: the
# JSON forms and the Open Inference Protocol's binary extension; the bodies of a content type of their own (one-input
# models), each sent as its codec's first content type.
JSON_FORMS = (*(form.name for form in registry.JSON_FORMS), "oip_binary")
_CONTENT_TYPES: dict[str, str] = {}
for _body in registry.BODY_CODECS:
    _CONTENT_TYPES.setdefault(_body.name, _body.content_type)
BODY_FORMS = tuple(_CONTENT_TYPES)
OIP_PATH = "/v2/models/m/infer"  # the Open Inference Protocol's infer path of these tables' models (named "m")
# A path of each route that chooses a form (the registry's BY_ROUTE), and so the path of each such form.
_ROUTE_PATHS = {"infer": OIP_PATH}
_FORM_PATHS = {form.name: _ROUTE_PATHS[route] for route, form in registry.BY_ROUTE.items()}


# Interfaces


def spec(name: str, datatype: str, shape: tuple[int, ...], tensor: str | None = None) -> TensorSpec:
    """One input or output: its name, Open Inference Protocol datatype ("FP32"), row shape (-1: free) and graph
    tensor (default: the name's op, output 0)."""
    return TensorSpec(name, tensor or f"{name}:0", DTYPES[datatype], tuple(shape))


def interface(
    inputs: list[TensorSpec] | TensorSpec,
    outputs: list[TensorSpec] | TensorSpec,
    signature_key: str | None = None,
    data_answer: str = "class_ids",
) -> Interface:
    as_tuple = lambda specs: (specs,) if isinstance(specs, TensorSpec) else tuple(specs)  # noqa: E731
    return Interface("m", "1", as_tuple(inputs), as_tuple(outputs), signature_key, data_answer)


# The how-to's model: one float32 input of 784 values a row, ten scores.
HOWTO = interface(spec("network/X", "FP32", (784,)), spec("network/output/MatMul", "FP32", (10,)))
# A row of two values: small enough to write rows out in a table (the how-to's rows path, decode.to_batch).
PAIR = interface(spec("x", "FP32", (2,)), spec("y", "FP32", (3,)))
# model/demo.py's two-input model: an image and an integer of one value per row; two outputs; a signature.
DEMO = interface(
    [spec("image", "FP32", (2, 2, 1), "inputs/pixels:0"), spec("offset", "INT64", (), "inputs/shift:0")],
    [spec("label", "INT64", ()), spec("probabilities", "FP32", (3,))],
    signature_key="serving_default",
)
# tests/graphs.py's graph of every kind of dtype.
DTYPED = interface(
    [spec("ids", "INT32", ()), spec("half", "FP16", (2,)), spec("flag", "BOOL", ()), spec("pixels", "UINT8", (2,))],
    [
        spec("doubled", "FP16", (2,)),
        spec("notflag", "BOOL", ()),
        spec("picked", "FP32", ()),
        spec("total", "INT32", ()),
    ],
)


def one_input(datatype: str, shape: tuple[int, ...], name: str = "x") -> Interface:
    """A model of one input of that datatype and row shape, and one float32 output."""
    return interface(spec(name, datatype, shape), spec("y", "FP32", ()))


# Outcomes


@dataclass(frozen=True)
class Refused:
    """A refused request: the error's type (its status) and its exact message."""

    error: type[ScoringError]
    message: str


@dataclass(frozen=True)
class Decoded:
    """A decoded request: one array per input of the interface, in its order; the form it was read in; the Open
    Inference Protocol's id, outputs asked for (indices; None: all) and outputs to answer as binary data."""

    arrays: tuple[np.ndarray, ...]
    form: str
    id: str | None = None
    outputs: tuple[int, ...] | None = None
    binary: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Answer:
    """An answer's headers and body (always a 200: the layer's refusals are Refused values)."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def array(values: object, datatype: str) -> np.ndarray:
    """An expected array: the values in the Open Inference Protocol datatype's dtype."""
    return np.array(values, DTYPES[datatype])


def bad_request(message: str) -> Refused:
    return Refused(BadRequest, message)


def too_large(message: str) -> Refused:
    return Refused(PayloadTooLarge, message)


def outcome(call) -> object:
    """What `call()` returns, or the request's refusal as a Refused value."""
    try:
        return call()
    except ScoringError as err:
        return Refused(type(err), err.message)


def assert_arrays(got: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...]) -> None:
    """The same arrays: dtype, shape and values (NaN equal to NaN)."""
    assert len(got) == len(expected), f"{len(got)} arrays, expected {len(expected)}"
    for i, (array, want) in enumerate(zip(got, expected, strict=True)):
        assert (array.dtype, array.shape) == (want.dtype, want.shape), f"array {i}"
        np.testing.assert_array_equal(array, want, err_msg=f"array {i}", strict=True)


def assert_outcome(got: object, expected: object) -> None:
    """`got` (a Decoded, an array or a Refused) is `expected`: a Refused, or the arrays (a tuple, or one array)."""
    if isinstance(expected, Refused):
        assert got == expected
        return
    assert not isinstance(got, Refused), f"refused: {got}"
    arrays = got.arrays if isinstance(got, Decoded) else got if isinstance(got, tuple) else (got,)
    assert_arrays(arrays, expected if isinstance(expected, tuple) else (expected,))


# Bodies


def as_body(body: object) -> bytes:
    """Bytes as they are; anything else as its JSON (NaN and Infinity written as Python's json writes them)."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def binary_body(document: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    """The Open Inference Protocol's binary tensor extension: the JSON, then each binary tensor's bytes; and the
    Inference-Header-Content-Length header saying where the JSON ends."""
    header = json.dumps(document).encode()
    return header + b"".join(blobs), {HEADER_LENGTH: str(len(header))}


# The layer


def decode(
    form: str,
    body: object,
    model: Interface,
    *,
    max_rows: int = MAX_ROWS,
    headers: dict[str, str] | None = None,
    image_scale: str = "unit",
) -> Decoded | Refused:
    """`body` decoded in `form`, as the server decodes a body it reads in that form (see receive): "howto",
    "tfserving_rows" and "tfserving_columns" a JSON body at POST /score, "oip_json" one at /v2/models/<name>/infer,
    "oip_binary" one with the Inference-Header-Content-Length header (`headers`), "raw", "npy" and "image" bodies of
    their content types.  A body read in another form is an AssertionError."""
    if form not in JSON_FORMS + BODY_FORMS:
        raise ValueError(f"no form {form!r}")
    if form == "oip_binary" and HEADER_LENGTH not in (headers or {}):
        raise ValueError("an oip_binary body needs its Inference-Header-Content-Length header (binary_body)")
    got = receive(
        body,
        model,
        content_type=_CONTENT_TYPES.get(form, "application/json"),
        path=_FORM_PATHS.get(form),
        headers=headers,
        max_rows=max_rows,
        image_scale=image_scale,
    )
    if isinstance(got, Decoded):
        assert got.form == form, f"decoded in the form {got.form!r}, not {form!r}"
    return got


def receive(
    body: object,
    model: Interface,
    *,
    content_type: str | None = "application/json",
    path: str | None = None,
    headers: dict[str, str] | None = None,
    max_rows: int = MAX_ROWS,
    image_scale: str = "unit",
) -> Decoded | Refused:
    """`body` as POST /score receives it (or an Open Inference Protocol `path` through the front door): the form
    picked from its content type, path, headers and keys, and decoded in it."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()  # as werkzeug's request.mimetype
    headers = headers or {}

    def picked() -> Decoded:
        route = None if path is None else routes.resolve(path, "POST", model).action
        decoded = registry.find(mimetype, headers, route).decode(
            as_body(body), model, Limits(max_rows=max_rows, image_scale=image_scale)
        )
        form = decoded.codec.name
        if HEADER_LENGTH in headers and form == "oip_json":  # the binary extension: answered as the protocol's
            form = "oip_binary"
        return Decoded(tuple(decoded.arrays), form, decoded.id, decoded.outputs, decoded.binary)

    return outcome(picked)


def decode_fast(body: object, model: Interface, *, max_rows: int = MAX_ROWS) -> np.ndarray | None:
    """The rows of a JSON body at POST /score where a form reads it on its bytes alone (the how-to's rows in C, no
    Python object per value), or None where the body is left to the careful path every JSON form takes (counted,
    parsed, validated: what `decode` and `receive` go on to)."""
    decoded = registry.JSON.decode_fast(as_body(body), model, Limits(max_rows=max_rows), codec.no_reserve)
    return None if decoded is None else decoded.arrays[0]


def json_forms() -> dict[str, str]:
    """The JSON forms a body at POST /score may be in, in the order they claim a document: each form's name and
    what claims a document for it, as messages say it."""
    return {form.name: form.claimed_by for form in registry.JSON_FORMS}


def encode(form: str, outputs: tuple[np.ndarray, ...], model: Interface, request: Decoded | None = None) -> Answer:
    """The answer to a request of `form` (its Decoded value where it matters: the Open Inference Protocol's id and
    outputs asked for) whose outputs are `outputs`."""
    request = request or Decoded((), form)
    answering = _codec(request.form)
    decoded = codec.Decoded(request.arrays, answering, request.id, request.outputs, request.binary)
    answer = answering.encode(decoded, outputs, model)
    return Answer(dict(answer.headers), answer.body)


def _codec(form: str) -> codec.Codec:
    """The codec that reads and answers a request of `form`."""
    if form == "oip_binary":  # the binary extension's answer is the protocol's
        return oip_json.CODEC
    return next(found for found in registry.codecs() if found.name == form)  # an image: the first content type's


def validate(value: object, input_spec: TensorSpec, field: str = "x", max_rows: int = MAX_ROWS) -> np.ndarray | Refused:
    """One input's rows from a parsed JSON value (nested to the row's shape, or a fixed row's values flat), as the
    JSON forms hand them to the shared tensor validator; `field` names them in messages."""
    return outcome(lambda: tensors.TensorReader(Limits(max_rows=max_rows)).from_json(value, input_spec, field))


def validate_tensor(
    data: list | bytes,
    shape: object,
    datatype: str,
    input_spec: TensorSpec,
    field: str = "x",
    max_rows: int = MAX_ROWS,
) -> np.ndarray | Refused:
    """One input's rows from an Open Inference Protocol tensor of that declared shape and datatype: its JSON data
    (a list, flat or nested to the shape) or its binary data (bytes)."""
    reader = tensors.TensorReader(Limits(max_rows=max_rows))
    if isinstance(data, bytes):
        return outcome(lambda: reader.from_bytes(data, shape, datatype, input_spec, field))
    return outcome(lambda: reader.from_flat(data, shape, datatype, input_spec, field))


def check_datatype(datatype: object, input_spec: TensorSpec, field: str = "x") -> str | Refused:
    """The Open Inference Protocol datatype a tensor declares, if the input takes it."""
    return outcome(lambda: tensors.check_datatype(datatype, input_spec, field))


def convert(values: np.ndarray, input_spec: TensorSpec, field: str = "x") -> np.ndarray | Refused:
    """An array of a binary body (raw, .npy, a binary tensor) in the input's dtype, where every value fits it."""
    return outcome(lambda: tensors.convert(values, input_spec, field))

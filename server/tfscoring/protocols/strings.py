"""Byte strings (BYTES, TensorFlow's DT_STRING): how each request form carries them in and how answers carry them out.

A string input's array is an object array of Python bytes, one per value, of shape (N, *row shape): what TensorFlow
takes as a DT_STRING feed and answers for a DT_STRING fetch.

In a JSON request (TF Serving's forms and the Open Inference Protocol's) a value is either
- `{"b64": "<base64>"}`: TF Serving's rule for binary data, decoded strictly (the standard alphabet, padded; any
  other character, a missing or misplaced `=`, or data after the padding is a 400); or
- a JSON string, taken as its UTF-8 bytes (TF Serving takes text so; the Open Inference Protocol's BYTES data are
  strings).
A binary tensor (Triton's extension) holds each value as a 4-byte little-endian length and that many bytes.

In a JSON answer a value is a string where its bytes are UTF-8 and `{"b64": ...}` where they are not, except for a
TF Serving output whose name ends in `_bytes`, always `{"b64": ...}` (TF Serving's rule); in a binary one, as in
requests.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
import sys

import numpy as np

from tfscoring.errors import BadRequest
from tfscoring.interface import BYTES, TensorSpec
from tfscoring.protocols import decode
from tfscoring.protocols.limits import Limits

B64 = "b64"
# TF Serving: an output whose name ends so holds binary data, always answered as {"b64": ...}.
BINARY_SUFFIX = "_bytes"
# A Python bytes object's own size besides its bytes (33 on 64-bit CPython): many tiny strings cost this each.
BYTES_OBJECT = sys.getsizeof(b"")
LENGTH = struct.Struct("<I")  # a binary tensor's length of one value
EXAMPLE = '{"b64": "<base64>"}'


def is_b64(value: object) -> bool:
    """A JSON object of TF Serving's binary form: its only key is "b64"."""
    return isinstance(value, dict) and len(value) == 1 and B64 in value


def value_bytes(value: object, spec: TensorSpec, where: str) -> bytes:
    """One JSON value of a string input: a b64 object's bytes, or a string's UTF-8 bytes; a 400 for anything else."""
    if type(value) is str:
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, which JSON's \ud800 escape can spell
            raise BadRequest(
                f"{where} is a string with a lone surrogate escape, which has no UTF-8 bytes; send binary data as "
                f"{EXAMPLE}"
            ) from None
    if isinstance(value, dict):
        if B64 not in value or len(value) != 1:
            keys = ", ".join(decode.shown(key) for key in list(value)[:5])
            raise BadRequest(f"{where} is an object with the keys {keys}; a byte string's object is {EXAMPLE} alone")
        text = value[B64]
        if type(text) is not str:
            raise BadRequest(f'{where} has "b64" {decode.json_type(text)}; it must be a base64 string')
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as err:  # ValueError: a character beyond ASCII
            raise BadRequest(
                f'{where} is not valid base64 ({err}); "b64" holds standard base64: A-Z, a-z, 0-9, + and /, '
                "padded with = to a multiple of 4 characters"
            ) from None
    raise BadRequest(
        f"{where} is {decode.json_type(value)}; the input {spec.name!r} takes byte strings (BYTES): {EXAMPLE} or a "
        "string (its UTF-8 bytes)"
    )


def from_json(value: object, spec: TensorSpec, field: str, limits: Limits) -> np.ndarray:
    """The object array of a string input from a parsed JSON list of rows, each nested to the row shape (or, for a
    fixed row of several dimensions, its values flat), each value a b64 object or a string."""
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{field} must be a non-empty list of rows of shape {spec.shown()}, got {_json(value)}")
    limits.check_rows(len(value), field)
    rank = len(spec.shape) + 1
    flat_rows = spec.fixed and len(spec.shape) > 1 and _is_flat(value, spec.row_size)
    leaves, dims = _walk(value, 2 if flat_rows else rank, field)
    array = _array(leaves, dims, spec, field)
    if flat_rows:
        return array.reshape(len(value), *spec.shape)
    if any(want >= 0 and got != want for got, want in zip(dims[1:], spec.shape, strict=True)):
        wanted = "one value per row" if not spec.shape else f"rows of shape ({spec.shown()[4:]}"
        raise BadRequest(
            f"{field} has rows of shape {tuple(dims[1:])}; the input {spec.name!r} takes {wanted}: a batch of shape "
            f"{spec.shown()}"
        )
    return array


def from_flat(data: list, shape: list[int], rows: int, spec: TensorSpec, field: str) -> np.ndarray:
    """The object array of a string input from the Open Inference Protocol's data: flat in row-major order, or
    nested to `shape` (the declared one, whose `rows` were checked), each value a string or a b64 object."""
    if data and isinstance(data[0], list):
        leaves, dims = _walk(data, len(shape), field)
        if dims != list(shape):
            raise BadRequest(f"{field} has data nested as {dims}; its shape is {shape}")
    else:
        leaves, dims = _walk(data, 1, field) if data else ([], [0])
        if len(leaves) != math.prod(shape):
            raise BadRequest(f"{field} has {len(leaves)} values; its shape {shape} needs {math.prod(shape)}")
    batch_shape = (rows, *(shape[1:] if spec.shape else ()))  # Triton's [N, 1] for one value a row: (N,)
    return _array(leaves, dims, spec, field).reshape(batch_shape)


def from_lengths(data: bytes, shape: list[int], rows: int, spec: TensorSpec, field: str) -> np.ndarray:
    """The object array of a string input from a binary tensor (Triton's extension): each of the shape's values a
    4-byte little-endian length, then that many bytes; every length checked against the bytes left."""
    count = math.prod(shape)
    if count * LENGTH.size > len(data):
        raise BadRequest(
            f"{field} has {len(data)} bytes of binary data; its shape {shape} of BYTES needs {count} values, each a "
            f"{LENGTH.size}-byte length and its bytes ({count * LENGTH.size} bytes at least)"
        )
    values, pos = [], 0
    for k in range(count):
        if pos + LENGTH.size > len(data):
            raise BadRequest(
                f"{field} has {len(data)} bytes of binary data, which end before value {k} of {count}: each value is "
                f"a {LENGTH.size}-byte little-endian length, then its bytes"
            )
        (size,) = LENGTH.unpack_from(data, pos)
        pos += LENGTH.size
        if size > len(data) - pos:
            raise BadRequest(
                f"{field} value {k} says it is {size} bytes long; {len(data) - pos} bytes of its binary data are left"
            )
        values.append(data[pos : pos + size])
        pos += size
    if pos != len(data):
        raise BadRequest(f"{field} has {len(data) - pos} bytes of binary data after its {count} values")
    batch_shape = (rows, *(shape[1:] if spec.shape else ()))
    return _objects(values).reshape(batch_shape)


def refuse_datatype(spec: TensorSpec, field: str) -> BadRequest:
    """A 400 for a form that holds numbers only (a raw body of values, .npy, the how-to's rows) sent to a string
    input: the forms that carry bytes."""
    return BadRequest(
        f"the input {spec.name!r} takes byte strings (BYTES), which {field} does not carry: send "
        f'{{"instances": [{EXAMPLE}, ...]}} (TF Serving\'s forms), an Open Inference Protocol tensor of datatype '
        "BYTES, or, for a model of one string input, the bytes of one row as the body (application/octet-stream, or an "
        "image type)"
    )


def one_row(body: bytes, spec: TensorSpec, what: str) -> np.ndarray:
    """A whole body as the one row of a string input of one value a row (row shape (), or 1s: (1,), (1, 1)...)."""
    if any(n not in (1, -1) for n in spec.shape):
        raise BadRequest(
            f"the input {spec.name!r} takes byte strings in a batch of shape {spec.shown()}; {what} is one byte "
            "string: send rows in JSON or as binary tensors (the Open Inference Protocol's)"
        )
    return _objects([bytes(body)]).reshape(1, *(1 for _ in spec.shape))


# Answers


def answered(values: np.ndarray, binary: bool = False) -> list:
    """A string output as JSON values, nested to its shape: each a string where its bytes are UTF-8 (and `binary` is
    false) and {"b64": ...} where not."""
    flat = [_answer_value(value, binary) for value in values.flat]
    return _nested(flat, values.shape)


def flat_answer(values: np.ndarray) -> list:
    """A string output's values flat, as the Open Inference Protocol's data: strings where UTF-8, else b64 objects."""
    return [_answer_value(value, False) for value in values.flat]


def is_binary_name(name: str) -> bool:
    """TF Serving's rule: an output whose name ends in `_bytes` holds binary data."""
    return name.endswith(BINARY_SUFFIX)


def length_prefixed(values: np.ndarray) -> bytes:
    """A string output as a binary tensor: each value's 4-byte little-endian length, then its bytes."""
    return b"".join(LENGTH.pack(len(v)) + bytes(v) for v in map(_as_bytes, values.flat))


def _answer_value(value: object, binary: bool) -> object:
    data = _as_bytes(value)
    if not binary:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {B64: base64.b64encode(data).decode("ascii")}


def _as_bytes(value: object) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _nested(flat: list, shape: tuple[int, ...]) -> list:
    nested = np.empty(shape, object)
    nested.reshape(-1)[:] = flat  # a view: the array is new and contiguous
    return nested.tolist()


# Reading


def _is_flat(rows: list, width: int) -> bool:
    return all(
        isinstance(row, list) and len(row) == width and not any(isinstance(v, list) for v in row) for row in rows
    )


def _walk(value: list, rank: int, field: str) -> tuple[list, list[int]]:
    """A regular nested list of `rank` levels: its leaves in row-major order and its dimensions; a 400 saying where
    it is not regular or nested deeper."""
    items, dims = value, [len(value)]
    for _ in range(1, rank):
        for k, item in enumerate(items):
            if not isinstance(item, list):
                at = decode.position(np.unravel_index(k, dims))
                raise BadRequest(f"{field} {at} is {_json(item)}; its values are nested {rank} lists deep")
        widths = {len(item) for item in items}
        if len(widths) > 1:
            raise BadRequest(f"{field} holds lists of different lengths; its rows must be nested to one shape")
        dims.append(widths.pop() if widths else 0)
        items = [inner for item in items for inner in item]
    for k, item in enumerate(items):
        if isinstance(item, list):
            at = decode.position(np.unravel_index(k, dims))
            raise BadRequest(
                f"{field} {at} is a list nested deeper than the input's rank allows: its values are nested {rank} "
                "lists deep"
            )
    return items, dims


def _array(leaves: list, dims: list[int], spec: TensorSpec, field: str) -> np.ndarray:
    values = [
        value_bytes(leaf, spec, f"{field} {decode.position(np.unravel_index(k, dims))}")
        for k, leaf in enumerate(leaves)
    ]
    return _objects(values).reshape(dims)


def _objects(values: list[bytes]) -> np.ndarray:
    """An object array of these bytes, one dimension (np.array would read nothing into them, but says so)."""
    array = np.empty(len(values), BYTES)
    array[:] = values
    return array


def _json(value: object) -> str:
    return decode.json_type(value)

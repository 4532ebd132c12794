"""JSON-schema fragments of a model's tensors, from which each codec writes its schemas for /swagger.json."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfscoring.interface import BYTES, DATATYPES, Interface, TensorSpec
from tfscoring.protocols import strings

REF = "#/components/schemas/"


def value(dtype: np.dtype, answer: bool = False) -> dict:
    """One value of a tensor; in answers a float may be null (orjson writes NaN and infinities so)."""
    if dtype == BYTES:
        return byte_string(answer)
    if dtype.kind == "b":
        return {"type": "boolean"}
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if answer:
        return {"type": "number", "nullable": True}
    limit = float(np.finfo(dtype).max)
    return {"type": "number", "minimum": -limit, "maximum": limit}


def byte_string(answer: bool = False) -> dict:
    """A byte string (BYTES): TF Serving's {"b64": ...}, or text (its UTF-8 bytes; in answers where they are UTF-8)."""
    b64 = {
        "type": "object",
        "description": "The bytes in standard base64 (TF Serving's form of binary data).",
        "required": [strings.B64],
        "properties": {strings.B64: {"type": "string", "format": "byte"}},
        "additionalProperties": False,
    }
    text = {"type": "string", "description": "The bytes as UTF-8 text."}
    how = "A byte string: text where its bytes are UTF-8, else base64" if answer else "A byte string: text or base64"
    return either(how, [text, b64])


def nested(spec: TensorSpec, answer: bool = False) -> dict:
    """One row of a tensor: arrays nested to its row shape (any length where the graph leaves it free)."""
    schema = value(spec.dtype, answer)
    for n in reversed(spec.shape):
        schema = {"type": "array", "items": schema} | ({"minItems": n, "maxItems": n} if n >= 0 else {})
    return schema


def row(spec: TensorSpec) -> dict:
    """One row of an input in a request: nested to its row shape, or (a fixed shape) its values flat."""
    if len(spec.shape) == 1 or not spec.fixed:
        return nested(spec)
    flat = {"type": "array", "minItems": spec.row_size, "maxItems": spec.row_size, "items": value(spec.dtype)}
    if spec.shape:
        how = f"One row: nested to the row shape {list(spec.shape)}, or its {spec.row_size} values flat"
    else:
        how = "One value, or that value alone in a list"
    return either(how, [nested(spec), flat])


def rows(spec: TensorSpec) -> dict:
    return {"type": "array", "minItems": 1, "items": row(spec)}


def answer_rows(spec: TensorSpec) -> dict:
    return {"type": "array", "items": nested(spec, True)}


def named(specs: tuple[TensorSpec, ...], schema: Callable[[TensorSpec], dict], answer: bool = False) -> dict:
    """An object holding a value per tensor, keyed by their names."""
    by_name = {"type": "object", "required": [s.name for s in specs], "properties": {s.name: schema(s) for s in specs}}
    return by_name if answer else by_name | {"additionalProperties": False}


def either(description: str, alternatives: list[dict]) -> dict:
    return {"description": description, "anyOf": alternatives} if len(alternatives) > 1 else alternatives[0]


def signature(interface: Interface) -> dict:
    """TF Serving's signature_name property, of the forms that take it."""
    return {
        "signature_name": {
            "type": "string",
            "description": "TF Serving's signature; only the one served.",
            "enum": [interface.signature_key or "serving_default"],
        }
    }


def aliases(interface: Interface) -> str:
    """What a request form's description says of input names."""
    first = interface.inputs[0].tensor
    return f"; an input may also be named by its graph tensor's op name or full name (e.g. {first!r})."


def shown(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name!r} {s.datatype} {s.shown()}" for s in specs)


def takes(spec: TensorSpec) -> list[str]:
    """The Open Inference Protocol datatypes an input takes: its own first; a float input any number type, an
    integer input any integer type (the values must fit)."""
    kinds = {"b": "b", "i": "iu", "u": "iu", "O": "O"}.get(spec.dtype.kind, "iuf")
    return [spec.datatype, *(name for dtype, name in DATATYPES.items() if dtype.kind in kinds)]

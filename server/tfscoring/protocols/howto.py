"""The how-to's form, `{"data": [row, ...]}` (one-input models): rows nested to the input's shape, or flat.

Answered with class ids (DATA_ANSWER=class_ids: the argmax of a one-output model's scores) or the outputs (one
output's values, several in an object keyed by output names).  A row whose scores tell no class (one not finite,
or the highest shared by several classes) has no class id: null.  Outputs answered as values keep NaN and
infinities as null.

Two paths, one contract.  The fast path (decode_fast) parses with simdjson and copies the numbers straight into a
numpy buffer, building no Python object per value (about 30 us per 784-value row against 70 us for orjson +
np.array).  It takes only bodies it can prove well-formed: exactly N+1 brackets in the whole body, N rows of
`width` values each, every value a number, no `signature_name`.  Anything else, valid or not, goes the careful way
of every JSON form (jsonforms.decode_json: counted, parsed by orjson, validated by tensors.py), the single source of
every error message.
"""

from __future__ import annotations

import codecs
import math
import threading

import numpy as np
import simdjson

from tfscoring.interface import Batch, Interface
from tfscoring.protocols import decode, schemas, strings
from tfscoring.protocols.codec import (
    Answer,
    Decoded,
    Reserve,
    Schema,
    answer_outputs,
    answer_values,
    json_answer,
    only_input,
)
from tfscoring.protocols.jsonforms import JsonBody, JsonCodec, named_outputs
from tfscoring.protocols.limits import Limits

FORM = 'the how-to\'s {"data": ...} form'
ANSWERED_AS = "the how-to's form"  # what /swagger.json says of the bodies answered as this form (raw, .npy, images)
# The fast path's memory: simdjson's padded copy of the body and its document (2 bytes a body byte), and per value
# its tape, the float64 array and the float32 batch with their checks: measured about 43 bytes a value in a fresh
# worker (bench/results/gil-hold.md: 138 MB for 4096 rows of 0 and 1).
FAST_BODY_WEIGHT = 2
FAST_VALUE_BYTES = 48

# One parser per worker, used under a lock: a simdjson parser keeps the memory of the largest document it
# has read, so one per thread would multiply that, and the parse holds the GIL anyway.
_parser = simdjson.Parser()
_parser_lock = threading.Lock()


class HowtoCodec(JsonCodec):
    name = "howto"
    claimed_by = '"data" (the how-to\'s form)'

    def claims(self, document: dict) -> bool:
        return "data" in document

    def decode_fast(self, body: bytes, interface: Interface, limits: Limits, reserve: Reserve) -> Decoded | None:
        """The rows of a plainly well-formed `{"data": [...]}` body for a model of the how-to's rows (one float32
        input of one dimension), parsed in C; None for any other body or model.  `reserve` is told what the parse
        takes, from the body's size and commas, before it starts."""
        width = interface.howto_width
        if not width or b'"data"' not in body:  # another form: not worth simdjson's parse (under its lock)
            return None
        commas = body.count(b",")
        # More values than a request may hold: declined unparsed, the count refuses it.  Fewer commas than
        # MAX_REQUEST_ROWS full rows hold is always within (and spares the common request the sum).
        if commas >= limits.max_rows * width and commas >= self.most_values(interface, limits):
            return None
        reserve(FAST_BODY_WEIGHT * len(body) + FAST_VALUE_BYTES * (commas + 1))
        batch = _fast_batch(decode.without_bom(body), width, limits.max_rows)
        if batch is None:
            return None
        if batch.size:
            extent = float(np.abs(batch).max())  # one pass for both checks below (NaN propagates)
            if not math.isfinite(extent):
                decode.check_finite(batch)  # a 400 naming the first value beyond float32
            if extent >= 2**24:  # an integer float32 may not hold: the careful path knows which values were integers
                return None
        return Decoded((batch,), self)

    def read(self, body: JsonBody, interface: Interface) -> Decoded:
        spec = only_input(interface, FORM)
        if spec.strings:
            raise strings.refuse_datatype(spec, FORM)
        return Decoded((body.tensors.from_json(body.document.get("data"), spec, '"data"'),), self)

    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        if len(outputs) == 1 and interface.data_answer == "class_ids":
            return json_answer(answer_values(interface.outputs[0], class_ids(outputs[0])))
        outputs = answer_outputs(interface.outputs, outputs)
        return json_answer(outputs[0] if len(outputs) == 1 else named_outputs(interface.outputs, outputs))

    def schema(self, interface: Interface) -> Schema | None:
        if len(interface.inputs) != 1 or interface.inputs[0].strings:  # byte strings: refused (read)
            return None
        (spec,) = interface.inputs
        kind = {"b": "booleans", "i": "integers", "u": "integers"}.get(spec.dtype.kind, "finite numbers")
        size = f"{spec.row_size} {kind}" if spec.fixed else kind
        shape = "" if len(spec.shape) == 1 else f", nested to the row shape {list(spec.shape)}"
        shape += " or flat" if spec.fixed and len(spec.shape) != 1 else ""
        request = {
            "type": "object",
            "description": "The how-to's request. Other fields are ignored; of duplicate keys the last one counts.",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "array",
                    "description": f"Rows to score, each one row of input {spec.name!r} ({spec.datatype}).",
                    "minItems": 1,
                    "items": {"$ref": schemas.REF + "Row"},
                },
                **schemas.signature(interface),
            },
        }
        row = {"description": f"One row: {size} (read as {spec.dtype.name}){shape}.", **schemas.row(spec)}
        return Schema({"ServiceInput": request, "Row": row}, {"ServiceOutput": _answer_schema(interface)})


CODEC = HowtoCodec()


def class_ids(scores: np.ndarray) -> np.ndarray | list:
    """The how-to's answer: the argmax of each row's scores; null for a row whose scores tell no class: one not
    finite, or the highest shared by several classes (an input the model cannot tell apart, e.g. values near
    float32's limit that overflow inside the graph to scores all equal); an output of one value per row as it
    is (NaN: null)."""
    if scores.ndim == 2 and scores.shape[1] > 1 and scores.dtype.kind == "f":
        ids = scores.argmax(axis=1)
        top = scores[np.arange(len(scores)), ids]
        has_class = np.isfinite(scores).all(axis=1) & ((scores == top[:, np.newaxis]).sum(axis=1) == 1)
        if has_class.all():
            return ids
        return [int(i) if ok else None for i, ok in zip(ids.tolist(), has_class.tolist(), strict=True)]
    if scores.ndim == 2 and scores.shape[1] == 1:
        return scores[:, 0]
    return scores


def class_count(interface: Interface) -> int | None:
    """The classes where the form answers class ids: argmax of one float output of shape (N, k), k > 1."""
    outputs = interface.outputs
    if interface.data_answer != "class_ids" or len(outputs) != 1:
        return None
    (spec,) = outputs
    return spec.shape[0] if spec.dtype.kind == "f" and len(spec.shape) == 1 and spec.shape[0] > 1 else None


def _answer_schema(interface: Interface) -> dict:
    """What the form (and a binary body) answers: with DATA_ANSWER=class_ids, a one-output model's class ids (the
    argmax of float scores of shape (N, k)) or, for an output of shape (N, 1), its values; otherwise the output's
    rows, or each output's in an object keyed by output names."""
    outputs = interface.outputs
    if len(outputs) > 1:
        return {
            "description": "Each output's rows, keyed by output names.",
            **schemas.named(outputs, schemas.answer_rows, True),
        }
    (spec,) = outputs
    rows = {"description": f"The output {spec.name!r} of each row.", **schemas.answer_rows(spec)}
    if interface.data_answer != "class_ids" or len(spec.shape) != 1 or spec.shape[0] == 0:
        return rows
    ids = {
        "type": "array",
        "description": "The class id of each row; null where its scores tell none (not finite, or a tie at the top).",
        "items": {"type": "integer", "minimum": 0, "nullable": True},
    }
    values = {
        "type": "array",
        "description": f"The value of {spec.name!r} for each row.",
        "items": schemas.value(spec.dtype, True),
    }
    if spec.shape[0] == 1:
        return values
    if spec.shape[0] > 1:
        ids["items"]["maximum"] = spec.shape[0] - 1
        return ids if spec.dtype.kind == "f" else rows
    # A free width: class ids where the scores have several columns, the values where they have one.
    return schemas.either("By the output's width", [ids if spec.dtype.kind == "f" else rows, values])


def _fast_batch(body: bytes, width: int, max_rows: int) -> np.ndarray | None:
    """The batch of a plainly well-formed body, or None to let the careful path decide."""
    if b"\\" in body or body.startswith(codecs.BOM_UTF8):
        # Escapes could spell a second "data" key (simdjson keeps the first, the careful path the last);
        # simdjson skips a second BOM that the careful path refuses. Plain bodies have neither.
        return None
    with _parser_lock:
        try:
            document = _parser.parse(body)
        except (ValueError, RuntimeError):  # invalid JSON, UTF-8 or number: the careful path words the error
            return None
        try:
            data = document.get("data") if isinstance(document, simdjson.Object) else None
            if not isinstance(data, simdjson.Array) or not 0 < len(data) <= max_rows:
                return None
            if "signature_name" in document:  # TF Serving's, which the parsed document's reading checks (jsonforms)
                return None
            rows = len(data)
            # With as many brackets as rows + 1 in the whole body, no row holds a nested list; with one "data",
            # no duplicate key that the careful path (last one wins) would read differently.
            if body.count(b"[") != rows + 1 or body.count(b'"data"') != 1:
                return None
            if any(len(data[i]) != width for i in range(rows)):
                return None
            values = data.as_buffer(of_type="d")  # every value a number, copied out in C
        except (TypeError, ValueError):  # a row that is not a list, a value that is not a number
            return None
        finally:
            data = document = None  # the parser may be reused only once its proxies are gone
    numbers = np.frombuffer(values, np.float64)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported by check_finite
        batch = numbers.astype(np.float32).reshape(rows, width)
    return batch

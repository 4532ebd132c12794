"""JSON bodies as the JSON codecs read them: counted over their bytes before anything parses them, parsed, and the
how-to's rows (float32 values of one dimension) validated.

- `count` and `check_counts`: what a body holds (values, lists, objects, strings, nesting), counted in C and numpy
  without a Python object per value, and the 413 / 400 for a body holding more than a request may;
- `parse_object`: orjson's parse, with Python's garbage collector paused, or a 400 that says what is wrong;
- `to_batch`: the how-to's rows, the path tensors.py takes for a float32 input of one dimension;
- `shown`, `json_type`: a client's values in messages, at most about 80 characters, never walked deeply.

Every way a body can be wrong gets a BadRequest (or PayloadTooLarge) whose message says what is wrong and where,
so a client can fix its request without reading logs.
"""

from __future__ import annotations

import codecs
import gc
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import orjson

from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import TensorSpec
from tfscoring.protocols.limits import Limits

_NUMBERS = frozenset((int, float))  # bool is a subclass of int but its own type, so it is not in here
_NON_FINITE_LITERALS = ("NaN", "Infinity", "-Infinity")


@dataclass(frozen=True)
class Counts:
    """What a JSON body holds, counted over its bytes before it is parsed (no Python object per value).

    Brackets, commas and colons inside strings are counted too: every figure is an upper bound, except `depth`,
    for which strings are masked (a "]" in a string must not hide nesting)."""

    size: int  # bytes
    values: int  # JSON values the parse creates, keys included: at most one per , [ { : and the document itself
    lists: int  # [
    objects: int  # {
    strings: int  # at most half the quotes
    marks: int  # [ ] { } and quotes: the work of measuring the depth
    depth: int  # the deepest nesting of lists and objects; -1: not measured (the body is refused on its counts)
    escapes: int = 0  # backslashes, counted where the depth was measured
    binary: int = 0  # bytes of binary tensors after the JSON (Inference-Header-Content-Length), set by the caller
    ascii: bool = False  # every byte ASCII: a string's characters take a byte each (else up to 4)


_STRUCTURE = b'[]{},:"'
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(_STRUCTURE)))
_DELTA = np.zeros(256, np.int8)  # nesting: +1 at [ and {, -1 at ] and }
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1
_QUOTE = ord('"')
_BACKSLASH = ord("\\")
_IS_NESTING = bytes(int(b in b'[]{}"') for b in range(256))
# Backslashes a body may hold: escapes in keys, ids and names (a request's only strings); past this the depth is not
# measured and the body is refused (413).
MAX_ESCAPES = 1 << 20
_CHUNK = 1 << 20  # marks per numpy pass: bounded temporaries whatever the body
MARKS_PER_VALUE = 4  # a request's [ ] { } and quotes: at most an opening and a closing bracket, or 2 quotes, a value


def count(body: bytes, most_values: int | None = None, depth: bool = True) -> Counts:
    """The body's Counts: passes in C over the bytes (bytes.translate keeps only , : [ ] { } "), then a numpy
    pass over the brackets and quotes for the depth, skipped (-1) where the body already holds more values than
    `most_values` or more brackets and quotes than MARKS_PER_VALUE per value, or not asked for (`depth`); measured
    on a 2-core machine: about 25 ms for a 30 MiB body of the how-to's rows, 50 to 75 ms for 64 MiB of anything,
    90 ms for 30 MiB with a backslash (escapes are then found with numpy)."""
    marks = body.translate(None, _NOT_STRUCTURE)
    if most_values is not None and len(marks) > (1 + MARKS_PER_VALUE) * most_values:  # refused: count no further
        return Counts(len(body), len(marks) + 1, len(marks), len(marks), len(marks), len(marks), -1)  # not ascii
    nesting = marks.translate(None, b",:")
    lists, objects, quotes = nesting.count(b"["), nesting.count(b"{"), nesting.count(b'"')
    values = len(marks) - len(nesting) + lists + objects + 1
    del marks
    escapes, deepest = 0, -1
    if depth and (most_values is None or (values <= most_values and len(nesting) <= MARKS_PER_VALUE * most_values)):
        if b"\\" in body:  # escaped quotes out, so that the quotes left open and close strings
            nesting, escapes = _unescaped(body, nesting)
        deepest = _deepest(nesting) if escapes <= MAX_ESCAPES else -1
    return Counts(
        len(body), values, lists, objects, quotes // 2 + 1, len(nesting), deepest, escapes, ascii=body.isascii()
    )


def _unescaped(body: bytes, nesting: bytes) -> tuple[bytes, int]:
    """The body's [ ] { } and quotes (`nesting`) but its escaped quotes, and its count of backslashes; (b"", count)
    where there are more than MAX_ESCAPES.  Numpy over the bytes: about 30 ms for 64 MiB with no escaped quote,
    100 ms with some (an escaped bracket is no JSON)."""
    array = np.frombuffer(body, np.uint8)
    slashes = np.flatnonzero(array == _BACKSLASH)
    if len(slashes) > MAX_ESCAPES:
        return b"", len(slashes)
    # In a run of backslashes, the 1st, 3rd, ... escape the next byte (an escaped backslash escapes nothing).
    index = np.arange(len(slashes))
    starts = np.ones(len(slashes), bool)
    starts[1:] = slashes[1:] != slashes[:-1] + 1
    run_start = np.maximum.accumulate(np.where(starts, index, 0))
    escaped = slashes[(index - run_start) % 2 == 0] + 1
    escaped = escaped[escaped < len(array)]
    quotes = escaped[array[escaped] == _QUOTE]
    if not len(quotes):
        return nesting, len(slashes)
    marks = np.flatnonzero(np.frombuffer(body.translate(_IS_NESTING), bool))  # where each of `nesting` is
    return np.delete(np.frombuffer(nesting, np.uint8), np.searchsorted(marks, quotes)).tobytes(), len(slashes)


def _deepest(marks: bytes) -> int:
    """The deepest nesting of [ ] { } ", brackets within strings left out."""
    array = np.frombuffer(marks, np.uint8)
    deepest = level = quotes = 0
    for start in range(0, len(array), _CHUNK):
        chunk = array[start : start + _CHUNK]
        delta = _DELTA.take(chunk)
        is_quote = chunk == _QUOTE
        if quotes & 1 or is_quote.any():
            seen = np.cumsum(is_quote, dtype=np.int64)
            seen += quotes
            quotes = int(seen[-1])
            delta[(seen & 1).astype(bool)] = 0  # within a string (its closing quote is no bracket)
        levels = np.cumsum(delta, dtype=np.int64)
        levels += level
        deepest = max(deepest, int(levels.max()))
        level = int(levels[-1])
    return deepest


def check_counts(counts: Counts, most_values: int, deepest: int, why: str) -> None:
    """A 413 for a body holding more values than `most_values` (or more brackets and quotes than a request of
    that many values), a 400 for one nested deeper than `deepest`; `why` says where the limits come from."""
    if counts.values > most_values:
        raise PayloadTooLarge(
            f"body holds up to {counts.values} JSON values (counting its commas, colons and brackets), more than "
            f"the {most_values} a request may hold: {why}"
        )
    if counts.marks > MARKS_PER_VALUE * most_values:
        raise PayloadTooLarge(
            f"body holds {counts.marks} brackets and quotes, more than the {MARKS_PER_VALUE * most_values} a "
            f"request may hold ({MARKS_PER_VALUE} for each of its at most {most_values} values): {why}"
        )
    if counts.escapes > MAX_ESCAPES:
        raise PayloadTooLarge(
            f"body holds {counts.escapes} backslashes, more than the {MAX_ESCAPES} a request may hold"
        )
    if counts.depth > deepest:
        raise BadRequest(f"body is nested {counts.depth} deep; a request is nested at most {deepest} deep: {why}")


# Values a request may hold beside its rows: keys, ids, parameters, output names.
KEY_VALUES = 4096
# Nesting a request may have beyond its forms' own: an object of parameters, a list or two in them.
EXTRA_DEPTH = 3


def expected_shape(width: int) -> str:
    return f'{{"data": [[{width} numbers], ...]}}'


def parse_object(body: bytes, example: str) -> dict:
    """The body as a JSON object, or a 400 that says what is wrong with it (and shows `example`)."""
    document = _parse_json(without_bom(body), example)
    if not isinstance(document, dict):
        raise BadRequest(f"body must be a JSON object like {example}, got {json_type(document)}")
    return document


def without_bom(body: bytes) -> bytes:
    # RFC 8259 lets a parser ignore a byte order mark; orjson and simdjson refuse it.
    return body[len(codecs.BOM_UTF8) :] if body.startswith(codecs.BOM_UTF8) else body


def _parse_json(body: bytes, example: str) -> object:
    if not body.strip():
        raise BadRequest(f"body is empty; expected {example}")
    try:
        with _collector_paused():
            return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadRequest(_describe_json_error(err)) from None


# Python's cyclic garbage collector, paused while orjson builds a document: a parse allocates millions of lists
# and objects, each allocation counting toward a collection that walks them all again, and a JSON document holds
# no cycle to collect (reference counts free it).  Measured: 1.9 s -> 0.4 s for a body of 4096 rows of (28, 28, 1)
# nested lists.  Paused for as long as any thread parses; left as it was (enabled or not) when the last one ends.
_collector_lock = threading.Lock()
_collector_parses = 0
_collector_was_enabled = True


@contextmanager
def _collector_paused() -> Iterator[None]:
    global _collector_parses, _collector_was_enabled
    with _collector_lock:
        if _collector_parses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_parses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_parses -= 1
            if _collector_parses == 0 and _collector_was_enabled:
                gc.enable()


_NUMPY_SCALAR = re.compile(r"np\.[a-z_]+[0-9]*\(")  # np.float64(0.0): numpy 2's repr of a scalar


def _describe_json_error(err: orjson.JSONDecodeError) -> str:
    if "UTF-8" in err.msg:
        return "body is not valid UTF-8; send JSON encoded as UTF-8"
    # err.pos counts characters of err.doc, the decoded text, not bytes of the body.
    if "infinity" in err.msg or err.doc[err.pos : err.pos + 9].startswith(_NON_FINITE_LITERALS):
        return (
            f"body has a non-finite number at line {err.lineno} column {err.colno}; "
            "NaN, Infinity and numbers beyond float range are not allowed"
        )
    numpy_scalar = _NUMPY_SCALAR.match(err.doc, err.pos)
    if numpy_scalar:
        return (
            f"body is not valid JSON: it holds numpy's {numpy_scalar.group(0)}...) at line {err.lineno} column "
            f"{err.colno}, which is how str(list(array)) prints values under numpy 2 (the how-to's client builds "
            'its body that way); send json.dumps({"data": X.tolist()}) instead'
        )
    return f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"


def to_batch(data: object, spec: TensorSpec, limits: Limits, field: str, example: str) -> np.ndarray:
    """The float32 batch of a parsed JSON list of rows of `spec`'s width (a float32 input of one dimension),
    validated; errors name `field`, where the rows were, and show `example`, a request of the form, where `data` is
    no list of rows."""
    (width,) = spec.shape
    if not isinstance(data, list):
        raise BadRequest(f"{field} must be a list of rows like {example}, got {json_type(data)}")
    if not data:
        raise BadRequest(f"{field} has no rows; expected {example}")
    _check_row(0, data[0], width, field)  # a lone flat image gets its own hint before any count
    limits.check_rows(len(data), field)
    for i in range(1, len(data)):
        _check_row(i, data[i], width, field)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported just below
        batch = np.array(data, dtype=np.float32)
    check_finite(batch, field)
    check_json_integers(data, batch, spec, lambda at: f"row {at[0]}, column {at[1]} of {field}")
    return batch


def check_json_integers(value: list, array: np.ndarray, spec: TensorSpec, where) -> None:
    """The JSON integers of `value` (the list `array` was made from, of its size) must be held exactly by the
    float input `spec`: checked in integer arithmetic where the array has values of 2**(mantissa bits + 1) or more,
    the first integers the dtype may not hold (float64 reads 2**53 + 1 as 2**53, which float32 holds).
    `where(index)` names a value in messages."""
    with np.errstate(invalid="ignore"):
        large = np.abs(array) >= 2.0 ** (np.finfo(spec.dtype).nmant + 1)
    if not large.any():
        return
    candidates = np.array(value, dtype=object).reshape(array.shape)[large]
    integers = np.flatnonzero(np.fromiter((type(v) is int for v in candidates), bool, len(candidates)))
    if len(integers):
        at = np.argwhere(large)
        for k in integers:
            check_exact_integer(candidates[k], spec, where([int(i) for i in at[k]]))


def check_exact_integer(value: object, spec: TensorSpec, where: str) -> None:
    """A JSON integer (a Python int, exact) sent to a float input must be one the input's dtype holds exactly:
    compared in integer arithmetic, as float64 would round 2**53 + 1 before any comparison."""
    if type(value) is not int:
        return
    with np.errstate(over="ignore"):
        try:
            held = spec.dtype.type(value)
        except OverflowError:
            held = np.inf
    if np.isfinite(held) and int(held) == value:
        return
    became = f"it would be {int(held)}" if np.isfinite(held) else "beyond its range"
    raise BadRequest(
        f"{where} is an integer that {spec.datatype} cannot hold exactly: {value} ({became}); the input "
        f"{spec.name!r} is {spec.datatype}"
    )


def _check_row(i: int, row: object, width: int, field: str) -> None:
    if not isinstance(row, list):
        hint = "; wrap a single image as [[...]]" if isinstance(row, (int, float)) else ""
        raise BadRequest(
            f"row {i} of {field} is {json_type(row)}, not a list of {width} numbers{hint}; expected shape (N, {width})"
        )
    if len(row) != width:
        raise BadRequest(f"row {i} of {field} has {len(row)} values; expected shape (N, {width})")
    if not _NUMBERS.issuperset(map(type, row)):  # one C-speed pass over the row's element types
        j, value = next((j, v) for j, v in enumerate(row) if type(v) not in _NUMBERS)
        raise BadRequest(f"row {i}, column {j} of {field} is {json_type(value)}; every value must be a number")


def check_finite(batch: np.ndarray, field: str = '"data"') -> None:
    finite = np.isfinite(batch)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise BadRequest(f"row {i}, column {j} of {field} is outside the float32 range; values must be finite")


def position(index) -> str:
    """Where a value is in a batch, as messages say it: "row 3", "row 3, column 1", "row 3, at [1, 0]"."""
    index = [int(i) for i in index]
    if len(index) == 2:
        return f"row {index[0]}, column {index[1]}"
    return f"row {index[0]}" + (f", at {index[1:]}" if len(index) > 2 else "")


def shown(value: object, limit: int = 80) -> str:
    """A client's JSON value written for a message in at most about `limit` characters: strings as Python's repr,
    lists and objects opened a few levels deep only (never deeper, whatever the nesting), the rest cut to "..."."""
    parts: list[str] = []
    room = [limit]

    def put(text: str) -> bool:
        parts.append(text[: max(room[0], 0)])
        room[0] -= len(text)
        return room[0] > 0

    def walk(item: object, depth: int) -> bool:
        if isinstance(item, list):
            if depth >= _SHOWN_DEPTH:
                return put("[...]" if item else "[]")
            if not put("["):
                return False
            for k, inner in enumerate(item):
                if (k and not put(", ")) or not walk(inner, depth + 1):
                    return False
            return put("]")
        if isinstance(item, dict):
            if depth >= _SHOWN_DEPTH:
                return put("{...}" if item else "{}")
            if not put("{"):
                return False
            for k, (key, inner) in enumerate(item.items()):
                if (k and not put(", ")) or not put(repr(key[:limit]) + ": ") or not walk(inner, depth + 1):
                    return False
            return put("}")
        if isinstance(item, str):
            return put(repr(item[:limit]) if len(item) <= limit else repr(item[:limit]) + "...")
        if item is None or isinstance(item, bool):
            return put({None: "null", True: "true", False: "false"}[item])
        return put(repr(item))

    if walk(value, 0):
        return "".join(parts)
    return "".join(parts)[: max(limit - 3, 1)] + "..."


_SHOWN_DEPTH = 3  # nesting that shown() opens; deeper lists and objects are written [...] and {...}


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return "an object"

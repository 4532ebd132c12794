"""What a JSON body may hold for the model, and what its parse costs, known from its bytes before anything parses it.

Before a JSON body is parsed, its bytes are counted (decode.count: no Python object per value): a body holding more
JSON values than a request to the model can (most_values) gets 413, one nested deeper than the deepest input's rank
and the forms' wrapping (deepest) 400; parse_cost() is what its parse will take, for the in-flight budget.  What the
forms add to their inputs' values and nesting is theirs (JsonCodec.row_overhead and .depth): the codec that reads a
body passes the largest of the forms it may be in.

After a parse, an integer literal beyond 64 bits, which JSON parsers round to a float silently, is looked for where
the request failed or holds a value that large (check_wide_integers).
"""

from __future__ import annotations

import dataclasses
import re

from tfscoring.errors import BadRequest
from tfscoring.interface import Interface, TensorSpec
from tfscoring.protocols import decode, strings
from tfscoring.protocols.limits import Limits

# A request's first weight in the in-flight budget, per body byte, before a JSON body is read: it is decoded
# through Python objects (up to about 3 bytes per body byte on the careful path).
JSON_WEIGHT = 3
# A JSON body for an input with a free dimension: no count of values refuses it before parsing, so short values
# (`1,`) may take some 16 bytes of Python objects and arrays per body byte (measured: a 57 MiB body, +940 MB).
FREE_JSON_WEIGHT = 16
# JSON values a body may hold for a model with an input of a free dimension, where no row size bounds them:
# 2**23, as many as 2048 rows of 4096 values, or a 32 MiB body of `0.5,`.  Measured at the ceiling (2 cores): parse
# and validation hold the GIL about 1 to 1.4 s, RSS rises about 500 MB; parse_cost() says 905 MB, inside the
# FREE_JSON_WEIGHT x 64 MiB (1 GiB) that such a body reserves before it is read.
FREE_JSON_VALUES = 1 << 23


def first_weight(interface: Interface) -> int:
    return JSON_WEIGHT if interface.bounded_json else FREE_JSON_WEIGHT


def most_values(interface: Interface, limits: Limits, row_overhead: int) -> int:
    """The most JSON values a request to the model may hold, in forms whose rows hold at most `row_overhead` values
    besides their inputs' values and lists (JsonCodec.row_overhead).

    Fixed-shape inputs: MAX_REQUEST_ROWS + 1 rows (one over, so that it gets its own message) of each input's
    values and the lists of a row nested to its shape, and the form's overhead, and decode.KEY_VALUES besides (ids,
    names, parameters).  Free-shape: FREE_JSON_VALUES."""
    if not interface.bounded_json:
        return FREE_JSON_VALUES
    per_row = row_overhead + sum(
        max(spec.row_size, 1) * _values_per_value(spec) + _lists_in_row(spec.shape) for spec in interface.inputs
    )
    return (limits.max_rows + 1) * per_row + decode.KEY_VALUES + 32 * (len(interface.inputs) + len(interface.outputs))


def deepest(interface: Interface, form_depth: int) -> int:
    """The deepest nesting of a request to the model: the deepest input's rank (one value per row: 1, Triton's
    [N, 1]) + `form_depth` (the forms' nesting down to the list of rows: JsonCodec.depth) + decode.EXTRA_DEPTH."""
    rank = max(max((len(spec.shape) + spec.strings for spec in interface.inputs), default=0), 1)
    return rank + form_depth + decode.EXTRA_DEPTH


def check_json(
    body: bytes, interface: Interface, limits: Limits, most: int, nesting: int, binary: int = 0
) -> decode.Counts:
    """Once a JSON body is read, before anything parses it: its counts (decode.count; `binary`: the bytes of binary
    tensors after it), or a 413 where it holds more than `most` JSON values (most_values), a 400 where it is nested
    deeper than `nesting` (deepest)."""
    counts = dataclasses.replace(decode.count(body, most), binary=binary)
    decode.check_counts(counts, most, nesting, _why(interface, limits))
    return counts


def _why(interface: Interface, limits: Limits) -> str:
    """Where a request's limits come from, as the 413 and 400 of check_json say."""
    if interface.bounded_json:
        return f"{limits.max_rows} rows (MAX_REQUEST_ROWS) of {interface.input_list()}"
    return f"a ceiling for inputs of a free dimension ({interface.input_list()})"


def _values_per_value(spec: TensorSpec) -> int:
    """The JSON values one value of the input may count as: a byte string's {"b64": "..."} is an object, a key and
    its string (its comma, brace and colon); a number, a boolean or a text string is one."""
    return 3 if spec.strings else 1


def string_cost(counts: decode.Counts, interface: Interface) -> int:
    """Beyond parse_cost, for a model of string inputs: each string's bytes, decoded from its base64 (3/4 of its
    characters) or encoded from its text (at most its UTF-8 in the body), and a Python bytes object each
    (strings.BYTES_OBJECT: many tiny strings cost that much each).  Known from the counts before any parse."""
    if not any(spec.strings for spec in interface.inputs):
        return 0
    return counts.size + counts.strings * strings.BYTES_OBJECT


def _lists_in_row(shape: tuple[int, ...]) -> int:
    """The lists of one row nested to `shape`: 1 + d0 + d0 x d1 ... (none for one value per row)."""
    lists, width = 0, 1
    for n in shape:
        lists += width
        width *= max(n, 1)
    return lists


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


def parse_cost(counts: decode.Counts, allocated: bool = False) -> int:
    """An upper bound, in bytes, of the memory that the parse, validation and conversion of a JSON body of these
    counts take at their peak (Python objects, the memory orjson's parser touches, numpy arrays): reserve it from
    the in-flight budget once the body is read.  `allocated`: count the part of orjson's reservation that it never
    touches too (what tracemalloc sees; not resident memory)."""
    text_bytes = counts.size * (1 if counts.ascii else 4)  # the strings' characters
    untouched = _PARSER_RESERVED * counts.size if allocated else 0
    return (
        untouched
        + counts.size  # orjson's copy of the body
        + counts.values * (_VALUE + _PARSER_VALUE + _ARRAYS_PER_VALUE)
        + counts.lists * _LIST
        + counts.objects * _OBJECT
        + counts.strings * _STRING
        + text_bytes
        + counts.binary * _BINARY_PER_BYTE
    )


# An integer literal of 19 digits or more, not the fraction or exponent of a number: orjson reads one beyond 64 bits
# (below -2**63 or above 2**64 - 1) as a float64, rounded.  Looked for only where a request failed or holds a value
# of 2**63 or more: rare in real inputs, so the common request pays one max() per input.
_WIDE_INTEGER = re.compile(rb"(?<![0-9.eE+-])-?[0-9]{19,}(?![0-9.eE])")
# Digits as 0, and what may come before an integer literal (a value's start, or its minus sign) as a comma: a
# comma and 19 zeros in the translated body is a candidate; a fraction's digits follow a point, never a comma.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string, its escapes included
_CANDIDATES = bytes.maketrans(b"123456789[: \t\r\n-", b"000000000,,,,,,,")


def check_wide_integers(body: bytes) -> None:
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

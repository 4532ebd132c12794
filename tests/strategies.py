"""Hypothesis strategies of request bodies, shared by the fuzz tests: in-process (tests/unit/test_fuzz_decode.py) and
against the server (tests/http/test_fuzz_api.py).

Arbitrary JSON documents, bodies one or two mutations away from a valid `{"data": [[...], ...]}`, rows nested
wrongly, duplicate keys, valid documents; raw float32 bodies and .npy bodies, valid or mutated.  Each composite
strategy draws a body and the width of the rows it was made for (WIDTHS); MAX_ROWS is small so that a body one row
over the limit (413) is reached.  `fuzz(n)` is the settings of every property: n examples (times FUZZ_SCALE),
reproducible unless FUZZ_RANDOM is set.  `requests_to_send` pairs bodies with a Content-Type, the body's own or any
other, for the server.
"""

from __future__ import annotations

import ast
import base64
import codecs
import io
import json
import os
import struct
import warnings

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from tfscoring.protocols import npy, raw

WIDTH = 784
MAX_ROWS = 3  # small, so that "too many rows" (413) is reached
WIDTHS = st.sampled_from([1, 3, WIDTH])  # the contract holds for any width; 784 is the model's
BOM = codecs.BOM_UTF8.decode()


def fuzz(examples: int) -> settings:
    """Bounded, reproducible settings: `examples` cases per property (times FUZZ_SCALE)."""
    return settings(
        max_examples=examples * int(os.environ.get("FUZZ_SCALE", "1")),
        derandomize=not os.environ.get("FUZZ_RANDOM"),
        database=None,  # no example database: a failure prints its example, and the fixed seed finds it again
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# ---------------------------------------------------------------------------------------------------------------
# Bodies


def _encode(document: object, ensure_ascii: bool, compact: bool) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(document, ensure_ascii=ensure_ascii, separators=separators).encode()  # NaN, Infinity as is


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)
small_rows = st.lists(
    st.lists(st.integers(-9, 9) | st.floats(-1e3, 1e3), min_size=1, max_size=4), min_size=1, max_size=4
)
# Any JSON document, often under a "data" key, sometimes a list of short number rows that a small width accepts.
json_bodies = st.builds(
    _encode,
    json_values | st.builds(lambda v: {"data": v}, json_values) | st.builds(lambda rows: {"data": rows}, small_rows),
    ensure_ascii=st.booleans(),
    compact=st.booleans(),
)

# Numbers as they can be written in JSON: plain, with long mantissas, with exponents far beyond float32 or float64.
number_tokens = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),  # '1e+300', '-0.0', '5e-324'
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(lambda x: f"{x:.9g}"),
    st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,4})?", fullmatch=True),
)
# Numbers every parser reads alike and float32 holds: finite float32 values and int64s.
plain_number_tokens = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**63), 2**63 - 1).map(str),
)
# What does not belong in a row: other JSON types, non-finite literals, numbers JSON does not allow, garbage.
bad_tokens = st.sampled_from(
    [
        *("NaN", "-NaN", "Infinity", "-Infinity", "infinity", "1e400", "-1e39", "3.5e38", "1e-400"),
        *("null", "true", "false", '"0.5"', '""', '"\\u0030"', "[]", "[0.5]", "[[0.5]]", "{}", '{"a": 1}'),
        *("01", "+1", ".5", "1.", "-", "1e", "0x10", "1_000", "", ",", "]", "[", '"', "\\", "\u00a0", "\xff"),
    ]
) | st.text(max_size=3)
plain_separators = st.sampled_from([",", ", ", ",\n  "])
odd_separators = st.sampled_from([" ,\t", ",\r\n  ", ", \x0c", ",\u00a0", ",,", ""])
EXACT_LENGTH = st.just(0)
ROWS_WITHIN_LIMIT = st.integers(1, MAX_ROWS)


@st.composite
def rows_text(
    draw,
    width: int,
    fill: st.SearchStrategy[str],
    replacements: st.SearchStrategy[str],
    separators: st.SearchStrategy[str] = plain_separators,
    lengths: st.SearchStrategy[int] = EXACT_LENGTH,
    rows: st.SearchStrategy[int] = ROWS_WITHIN_LIMIT,
) -> str:
    """`"[[...], ...]"`: rows of one repeated number with a few values replaced.

    A row has width + a drawn `lengths` delta values.  Drawing a fill value and
    a few replacements, rather than 784 values, keeps examples small enough for
    hypothesis to shrink.
    """
    sep = draw(separators)
    texts = []
    for _ in range(draw(rows)):
        length = max(0, width + draw(lengths))
        values = [draw(fill)] * length
        for index, token in draw(st.lists(st.tuples(st.integers(0, max(0, length - 1)), replacements), max_size=3)):
            if length:
                values[index] = token
        texts.append("[" + sep.join(values) + "]")
    return "[" + sep.join(texts) + "]"


NEAR_VALID_MUTATIONS = (
    *("row length", "value", "rows", "separator", "data", "key", "duplicate key", "fields", "prefix", "suffix"),
    *("cut", "encoding", "stray byte"),
)


@st.composite
def near_valid_bodies(draw) -> tuple[bytes, int]:
    """A valid `{"data": [[784 numbers], ...]}` body with up to two mutations, and the width it is meant for.

    Without mutations it is valid, and about a third of the examples have none,
    so both sides of every boundary are reached.
    """
    width = draw(WIDTHS)
    mutations = draw(st.sets(st.sampled_from(NEAR_VALID_MUTATIONS), max_size=2))
    event(f"mutations: {len(mutations)}")
    data = draw(
        rows_text(
            width,
            fill=number_tokens if "value" in mutations else plain_number_tokens,
            replacements=number_tokens | bad_tokens if "value" in mutations else plain_number_tokens,
            separators=odd_separators if "separator" in mutations else plain_separators,
            lengths=st.sampled_from([0, 0, -1, 1, -width]) if "row length" in mutations else EXACT_LENGTH,
            rows=st.sampled_from([0, MAX_ROWS + 1]) if "rows" in mutations else ROWS_WITHIN_LIMIT,
        )
    )
    if "data" in mutations:
        data = draw(st.sampled_from([data[1:-1], "[" + data + "]", data[1:], data[:-1], "{}", "null", '"[[0]]"']))
    key = '"data"'
    if "key" in mutations:
        key = draw(st.sampled_from(['"d\\u0061ta"', '"Data"', '"data "', '"da\\ta"', "data", "'data'", '"\\"data\\""']))
    fields = [f"{key}: {data}"]
    extras = ['"id": 7', '"x": [[1, 2]]', '"s": "[[,]]"']
    if "fields" in mutations:
        extras += ['"note": "a\\nb"', '"\\u00e9": [1]', '"data ": 5', '"": {}']
    for extra in draw(st.lists(st.sampled_from(extras), max_size=2)):
        fields.insert(draw(st.integers(0, len(fields))), extra)
    if "duplicate key" in mutations:  # which one counts? the last, as in Python's json
        duplicate = draw(
            st.sampled_from(['"data": null', '"data": 5', '"data": [[0]]', '"d\\u0061ta": 5', f"{key}: []"])
        )
        fields.insert(draw(st.sampled_from([0, len(fields)])), duplicate)
    prefix = draw(st.sampled_from(["", " ", "\n\t", BOM, BOM + " "]))
    if "prefix" in mutations:
        prefix = draw(st.sampled_from([BOM + BOM, "\x00", "[", "{", "x", "\ufffe", '"data"']))
    suffix = draw(st.sampled_from(["", " ", "\n"]))
    if "suffix" in mutations:
        suffix = draw(st.sampled_from([",", "}", "]", "x", " {}", "\x00", " " + BOM, "//"]))
    text = prefix + "{" + draw(plain_separators).join(fields) + "}" + suffix
    if "cut" in mutations:
        text = text[: draw(st.integers(0, len(text) - 1))]
    encoding = "utf-8"
    if "encoding" in mutations:
        encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]))
    body = text.encode(encoding, errors="replace")
    if "stray byte" in mutations:
        at = draw(st.integers(0, len(body)))
        body = (
            body[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80"]))
            + body[at:]
        )
    return body, width


def _plain_rows(draw, width: int) -> str:
    return draw(rows_text(width, fill=plain_number_tokens, replacements=plain_number_tokens))


@st.composite
def misnested_bodies(draw) -> tuple[bytes, int]:
    """`{"data": ...}` with finite numbers, but rows nested a level deeper or shallower, or strings holding brackets."""
    width = draw(st.sampled_from([1, 1, 3, WIDTH]))
    rows = _plain_rows(draw, width)
    inner = rows[1:-1]  # "[...], [...]"
    data = draw(
        st.sampled_from(
            [
                f"[{rows}]",  # the whole list wrapped: one row holding the rows
                f"[[{rows}]]",
                "[" + inner.replace("[", "[[").replace("]", "]]") + "]",  # every row wrapped
                inner,  # the rows themselves as "data": a flat image, or several
                f'["{inner}"]',  # a row that is a string
                f"[{inner}, [{inner}]]",  # the rows, then all of them again as one row
            ]
        )
    )
    fields = [f'"data": {data}']
    if draw(st.booleans()):
        others = ['"s": "[[["', '"t": "]]"', '"x": {"y": [[1]]}', '"z": []']
        fields.insert(draw(st.integers(0, 1)), draw(st.sampled_from(others)))
    return ("{" + ", ".join(fields) + "}").encode(), width


@st.composite
def duplicate_key_bodies(draw) -> tuple[bytes, int]:
    """`"data"` two or three times, spelled plainly or escaped, holding rows, nothing, or something else."""
    width = draw(st.sampled_from([1, 3, WIDTH]))

    def member() -> str:
        key = draw(st.sampled_from(['"data"', '"data"', '"d\\u0061ta"']))
        value = draw(st.sampled_from(["rows", "rows", "null", "5", '"x"', "[]", "{}"]))
        return f"{key}: {_plain_rows(draw, width) if value == 'rows' else value}"

    fields = [member() for _ in range(draw(st.integers(2, 3)))]
    if draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), '"x": {"data": [[1]]}')
    return ("{" + ", ".join(fields) + "}").encode(), width


@st.composite
def valid_bodies(draw, plain_numbers: bool = False) -> tuple[str, int]:
    """The text of a well-formed `{"data": ...}` body of 1 to MAX_ROWS full rows, and its width.

    Its numbers may still overflow float32 or float64 (a valid document the
    service refuses) unless plain_numbers: then every number is a finite float32
    or an int64, which the fast path must take.
    """
    width = draw(WIDTHS)
    tokens = plain_number_tokens if plain_numbers else number_tokens
    data = draw(rows_text(width, fill=tokens, replacements=tokens))
    ws = draw(st.sampled_from(["", " ", "\n", "\t", "\r\n"]))
    fields = [f'"data":{ws}{data}']
    if draw(st.booleans()):
        fields.insert(draw(st.integers(0, 1)), '"id": 7')
    return ws + "{" + ws + f",{ws}".join(fields) + ws + "}" + ws, width


# ---------------------------------------------------------------------------------------------------------------
# application/octet-stream


@st.composite
def raw_bodies(draw) -> tuple[bytes, int]:
    """Rows of float32 bit patterns (any of 2**32, NaNs and infinities included), sometimes a few bytes off."""
    width = draw(WIDTHS)
    values = np.full(draw(st.integers(0, MAX_ROWS + 1)) * width, draw(st.integers(0, 2**32 - 1)), dtype="<u4")
    for index, bits in draw(st.lists(st.tuples(st.integers(0, max(0, values.size - 1)), st.integers(0, 2**32 - 1)))):
        if values.size:
            values[index] = bits
    return values.tobytes() + draw(st.sampled_from([b"", b"", b"", b"\0", b"\0\0\0", b"\0" * 5])), width


# ---------------------------------------------------------------------------------------------------------------
# application/x-npy

_REAL_DESCRS = ["'<f4'", "'>f4'", "'<f8'", "'>f8'", "'<f2'", "'<f16'", "'|b1'", "'|i1'", "'<i8'", "'>u2'", "'|u1'"]
_OTHER_DESCRS = [
    *("'<c8'", "'<U3'", "'|S2'", "'|O'", "'|V4'", "'<M8[s]'", "'<m8'", "'(2,)<f4'", "'junk'", "''", "'<f3'"),
    *("[('a', '<f4')]", "[('a', '<f4', (2,))]", "('<f4', (1,))", "[()]", "[1]", "{}", "1", "None", "b'<f4'"),
]
# Headers known to upset numpy's parser (which evaluates the header as a Python literal), besides random text.
NASTY_HEADERS = {
    "unterminated triple quote": '"""',
    "unhashable key": "{[]: 1}",
    "keys of mixed types": '{1: 2, "a": 3}',
    "unclosed brackets": "(" * 300,
    "nested too deep": "-" * 9000 + "1",
    "backslash": "\\",
    "NUL": "\x00",
}
NPY_MUTATIONS = (
    *("magic", "version", "header length", "descr", "fortran_order", "shape", "keys", "header", "data size"),
    "data bits",
)


def _npy_dtype(descr: str) -> np.dtype | None:
    """The dtype a header's descr names, as numpy reads it; None when numpy refuses it."""
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}".encode("latin-1")
    stream = io.BytesIO(struct.pack("<H", len(header)) + header)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.lib.format.read_array_header_1_0(stream)[2]
    except Exception:  # any refusal: the body then gets data of some size all the same
        return None


@st.composite
def npy_bodies(draw) -> tuple[bytes, int]:
    """A valid .npy body of 1 to MAX_ROWS rows with up to two mutations (magic, header, data...), and its width."""
    width = draw(WIDTHS)
    mutations = draw(st.sets(st.sampled_from(NPY_MUTATIONS), max_size=2))

    def part(name: str, valid: st.SearchStrategy, mutated: st.SearchStrategy):
        return draw(mutated if name in mutations else valid)

    magic = part("magic", st.just(b"\x93NUMPY"), st.sampled_from([b"\x93NUMPX", b"NUMPY", b"", b"\x93NUMP"]))
    version = part("version", st.sampled_from([(1, 0), (2, 0)]), st.sampled_from([(3, 0), (1, 1), (0, 0), (255, 255)]))
    descr = part("descr", st.sampled_from(_REAL_DESCRS), st.sampled_from(_OTHER_DESCRS))
    fortran = part("fortran_order", st.sampled_from(["False", "True"]), st.sampled_from(["0", "1", "None", "'no'"]))
    shape = part(
        "shape",
        st.integers(1, MAX_ROWS).map(lambda n: f"({n}, {width})"),
        st.one_of(
            st.tuples(st.integers(-1, MAX_ROWS + 1), st.sampled_from([width + 1, width - 1, 0, -width])).map(repr),
            st.sampled_from([(), (0, width), (-1, width), (MAX_ROWS + 1, width), (2**62, width)]).map(repr),
            st.tuples(st.integers(-1, 4)).map(repr),
            st.tuples(st.integers(0, 3), st.just(width), st.integers(0, 2)).map(repr),
            st.sampled_from([f"(True, {width})", f"(1.0, {width})", f"(2**70, {width})", f"[1, {width}]", "None"]),
        ),
    )
    fields = draw(st.permutations([f"'descr': {descr}", f"'fortran_order': {fortran}", f"'shape': {shape}"]))
    if "keys" in mutations:
        fields = fields[: draw(st.integers(0, 2))] + draw(st.sampled_from([[], ["'x': 1"], ["1: 2"], ["'shape': ()"]]))
    header = part(
        "header",
        st.just("{" + ", ".join(fields) + ", }"),
        st.sampled_from(list(NASTY_HEADERS.values())) | st.text(max_size=20),
    )
    header_bytes = header.encode("latin-1", errors="replace")
    header_bytes += b" " * (-(len(header_bytes) + 11) % 64) + b"\n"  # padded as np.save pads it
    length = part("header length", st.just(len(header_bytes)), st.sampled_from([0, 1, len(header_bytes) + 1, 65535]))
    length_field = struct.pack("<H" if version[0] == 1 else "<I", length % 65536)
    # As many bytes of data as the header asks for (when it makes sense), or some off; small values or random bits.
    dtype = _npy_dtype(descr) or np.dtype("<f4")
    try:
        count = int(np.prod(ast.literal_eval(shape), dtype=np.int64)) if shape.startswith("(") else 0
    except (OverflowError, TypeError, ValueError):  # '(2**70, 784)' is no literal
        count = 0
    count = max(0, min(count, (MAX_ROWS + 1) * width))
    if "data bits" in mutations:
        data = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).bytes(count * dtype.itemsize)
    else:
        data = (np.arange(count) % 7).astype(dtype if dtype.kind in "biuf" else np.uint8).tobytes()
    if "data size" in mutations:
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))] if data and draw(st.booleans()) else data + b"\0"
    return magic + bytes(version) + length_field + header_bytes + data, width


# ---------------------------------------------------------------------------------------------------------------
# Requests: a body and a Content-Type

CONTENT_TYPES = st.sampled_from(
    [
        *(None, "application/json", "application/json; charset=utf-8", "text/plain", "", "*/*"),
        *("image/png", "image/jpeg", "IMAGE/PNG"),
        *("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "multipart/form-data"),
        *("application/octet-stream", "APPLICATION/OCTET-STREAM", "application/x-npy", "application/x-npy; v=1"),
        *('application/json; charset="', "application/json; charset=utf-16", ";;", "application/"),
    ]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30)


def _with_type(bodies: st.SearchStrategy[bytes], own_type: str) -> st.SearchStrategy[tuple[bytes, str | None]]:
    """(body, Content-Type): the body's own type most of the time, any other now and then."""
    return st.tuples(bodies, st.sampled_from([own_type] * 3) | CONTENT_TYPES)


def _body(case: tuple[bytes, int]) -> bytes:
    return case[0]  # the width it was made for aside: the server's is 784


# What the fuzzing of the server sends: any bytes, or a body of each kind, as (body, Content-Type).
requests_to_send = st.one_of(
    st.tuples(st.binary(max_size=300), CONTENT_TYPES),
    _with_type(json_bodies, "application/json"),
    _with_type(near_valid_bodies().map(_body), "application/json"),
    _with_type(raw_bodies().map(_body), raw.CONTENT_TYPE),
    _with_type(npy_bodies().map(_body), npy.CONTENT_TYPE),
)


# ---------------------------------------------------------------------------------------------------------------
# Byte strings (a model of one string input): values that start like images, or not, in every form carrying bytes

# Each signature protocols/image/embedded.py takes for an image, and near misses: values are these and random bytes.
IMAGE_SIGNATURES = (
    *(b"\xff\xd8\xff", b"\xff\xd8\xff\xc0\x00\x11\x08", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"),
    *(b"GIF89a", b"GIF87a", b"GIF8", b"GIF", b"BM", b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00"),
    *(b"RIFF\x00\x00\x00\x00WEBPVP8X", b"RIFF\xff\xff\xff\x00WEBPVP8L", b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n"),
    b"",
)


@st.composite
def byte_string_values(draw) -> bytes:
    """An image's signature (or a near miss, or nothing), then random bytes: a header that may declare anything."""
    return draw(st.sampled_from(IMAGE_SIGNATURES)) + draw(st.binary(max_size=80))


@st.composite
def byte_string_requests(draw) -> tuple[bytes, str, str | None, dict[str, str]]:
    """(body, Content-Type, Open Inference Protocol path or None, headers) for a model whose one input, named
    "image_bytes", takes one byte string a row: TF Serving's rows and columns ({"b64": ...} or text), the Open
    Inference Protocol's BYTES in JSON and as a binary tensor (lengths that may lie), an octet-stream body."""
    values = draw(st.lists(byte_string_values(), min_size=1, max_size=MAX_ROWS + 1))
    as_json = [{"b64": base64.b64encode(v).decode()} if draw(st.booleans()) else v.decode("latin-1") for v in values]
    form = draw(st.sampled_from(["rows", "columns", "oip_json", "oip_binary", "octet-stream"]))
    if form == "rows":
        return json.dumps({"instances": as_json}).encode(), "application/json", None, {}
    if form == "columns":
        return json.dumps({"inputs": {"image_bytes": as_json}}).encode(), "application/json", None, {}
    tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [len(values)]}
    if form == "oip_json":
        return json.dumps({"inputs": [{**tensor, "data": as_json}]}).encode(), "application/json", "infer", {}
    if form == "oip_binary":
        lengths = [len(v) + draw(st.sampled_from([0, 0, 0, 1, -1])) for v in values]
        blob = b"".join(struct.pack("<I", max(n, 0)) + v for n, v in zip(lengths, values, strict=True))
        header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(blob)}}]}).encode()
        return header + blob, "application/octet-stream", "infer", {"Inference-Header-Content-Length": str(len(header))}
    return values[0], "application/octet-stream", None, {}

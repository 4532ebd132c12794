"""Fuzzing the request parsers in-process: whatever the body, a valid batch or a 400/413 with a message, nothing else.

The promise, for a JSON body read as the server reads one (tests/support.py's json_rows: the JSON codecs of
protocols/registry.py, for a model of one float32 input of rows), application/octet-stream (raw.CODEC) and
application/x-npy (npy.CODEC), over arbitrary bytes, arbitrary JSON documents and bodies one mutation away from
valid ones:

- the answer is a float32 array of shape (n, width), 1 <= n <= max_rows, every
  value finite; or a BadRequest / PayloadTooLarge with a non-empty message;
- no other exception, ever (that would be a 500);
- the JSON fast path (the how-to's rows in simdjson) and the careful path (orjson) agree on every
  body: same batch bit for bit, or the same error.

Hypothesis runs with a fixed seed, so a CI run is reproducible; FUZZ_RANDOM=1
explores new cases and FUZZ_SCALE=n runs n times as many.  The strategies are
tests/strategies.py's, shared with tests/http/test_fuzz_api.py, which posts the same kinds of bodies to the server.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import struct

import numpy as np
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

from tests.strategies import (
    MAX_ROWS,
    NASTY_HEADERS,
    WIDTH,
    WIDTHS,
    byte_string_requests,
    duplicate_key_bodies,
    fuzz,
    json_bodies,
    misnested_bodies,
    near_valid_bodies,
    npy_bodies,
    raw_bodies,
    valid_bodies,
)
from tests.support import json_rows, rows_interface
from tests.unit.protocols import tables
from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.protocols import howto, npy, raw
from tfscoring.protocols.codec import no_reserve
from tfscoring.protocols.limits import Limits

# ---------------------------------------------------------------------------------------------------------------
# The contract


def raw_rows(body: bytes, width: int, max_rows: int) -> np.ndarray:
    """The rows of an application/octet-stream body to a model of one float32 input of `width` values a row."""
    return raw.CODEC.decode(body, rows_interface(width), Limits(max_rows=max_rows)).arrays[0]


def npy_rows(body: bytes, width: int, max_rows: int) -> np.ndarray:
    """The rows of an application/x-npy body to a model of one float32 input of `width` values a row."""
    return npy.CODEC.decode(body, rows_interface(width), Limits(max_rows=max_rows)).arrays[0]


def fast_rows(body: bytes, width: int, max_rows: int) -> np.ndarray | None:
    """The rows of a JSON body as the how-to's fast path reads them (simdjson), or None where it leaves the body
    to the careful path."""
    decoded = howto.CODEC.decode_fast(body, rows_interface(width), Limits(max_rows=max_rows), no_reserve)
    return None if decoded is None else decoded.arrays[0]


def assert_batch_or_client_error(decoder, body: bytes, width: int, max_rows: int = MAX_ROWS) -> np.ndarray | None:
    """The decoder's answer is a valid batch (returned) or a 400/413 with a message (None); anything else fails."""
    try:
        batch = decoder(body, width, max_rows)
    except (BadRequest, PayloadTooLarge) as err:
        assert err.status_code in (400, 413)
        assert isinstance(err.message, str) and err.message.strip(), f"empty message for {body[:80]!r}"
        event(f"refused: {err.status_code}")
        return None
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float32
    assert batch.ndim == 2 and batch.shape[1] == width and 1 <= batch.shape[0] <= max_rows, batch.shape
    assert np.isfinite(batch).all()
    event("accepted")
    return batch


_POSITION = re.compile(r"line \d+ column \d+")


def outcome(body: bytes, width: int) -> tuple:
    """What json_rows answers, comparable across bodies: the batch's bytes, or the error (positions blanked)."""
    try:
        batch = json_rows(body, width, MAX_ROWS)
    except (BadRequest, PayloadTooLarge) as err:
        event(f"refused: {err.status_code}")
        return type(err).__name__, _POSITION.sub("line L column C", err.message)
    event("accepted")
    return "batch", batch.shape, batch.tobytes()


# ---------------------------------------------------------------------------------------------------------------
# JSON bodies (json_rows: the server's JSON path)


@fuzz(400)
@given(body=st.binary(max_size=400), width=WIDTHS)
def test_any_bytes_give_a_batch_or_a_client_error(body, width):
    assert_batch_or_client_error(json_rows, body, width)


@fuzz(300)
@given(body=json_bodies, width=WIDTHS, bom=st.booleans())
def test_any_json_document_gives_a_batch_or_a_client_error(body, width, bom):
    assert_batch_or_client_error(json_rows, codecs.BOM_UTF8 + body if bom else body, width)


@fuzz(500)
@given(case=near_valid_bodies())
def test_near_valid_bodies_give_a_batch_or_a_client_error(case):
    body, width = case
    assert_batch_or_client_error(json_rows, body, width)


@fuzz(300)
@given(case=near_valid_bodies())
def test_fast_and_careful_paths_agree_on_near_valid_bodies(case):
    """A backslash sends a body down the careful path: spelling every `"data"` as `"d\\u0061ta"` must change nothing.

    Same batch bit for bit, or the same error (its line and column aside, which
    the 5 more characters shift).  Duplicate keys included: the last one counts.
    """
    body, width = case
    assume(b'"data"' in body)  # not in UTF-16
    careful = body.replace(b'"data"', b'"d\\u0061ta"')
    assert outcome(careful, width) == outcome(body, width)


@fuzz(200)
@given(case=misnested_bodies())
def test_fast_and_careful_paths_agree_when_rows_are_nested_wrongly(case):
    body, width = case
    assert outcome(body.replace(b'"data"', b'"d\\u0061ta"'), width) == outcome(body, width)


@fuzz(200)
@given(case=duplicate_key_bodies())
def test_fast_and_careful_paths_agree_on_duplicate_keys(case):
    """Of duplicate keys the last one counts, whichever path reads the body and however the keys are spelt."""
    body, width = case
    assert outcome(body.replace(b'"data"', b'"d\\u0061ta"'), width) == outcome(body, width)


@fuzz(300)
@given(case=valid_bodies())
def test_fast_and_careful_paths_agree_on_valid_documents(case):
    text, width = case
    careful = text.replace('"data"', '"d\\u0061ta"')
    assert outcome(careful.encode(), width) == outcome(text.encode(), width)


@fuzz(200)
@given(case=valid_bodies(plain_numbers=True))
def test_plain_bodies_take_the_fast_path_and_hold_the_numbers_sent(case):
    """Finite float32 and int64 values: the fast path answers, with the values any JSON parser reads, as float32;
    where a value is 2**24 or more (an integer float32 may not hold exactly) it may leave the body to the careful
    path, which refuses an integer float32 cannot hold exactly and reads the rest as the fast path would."""
    text, width = case
    body = text.encode()
    fast = fast_rows(body, width, MAX_ROWS)
    data = json.loads(text)["data"]
    with np.errstate(over="ignore"):
        expected = np.array(data, dtype=np.float32)
    inexact = [v for row in data for v in row if type(v) is int and int(np.float32(v)) != v]
    if inexact:
        assert fast is None
        with pytest.raises(BadRequest, match=f"is an integer that FP32 cannot hold exactly: {inexact[0]} "):
            json_rows(body, width, MAX_ROWS)
        return
    if fast is None:
        assert (np.abs(expected) >= 2**24).any(), "a plain well-formed body must not fall back to the careful path"
        fast = json_rows(body, width, MAX_ROWS)
    assert fast.tobytes() == expected.tobytes()
    assert json_rows(body, width, MAX_ROWS).tobytes() == expected.tobytes()
    assert json_rows(text.replace('"data"', '"d\\u0061ta"').encode(), width, MAX_ROWS).tobytes() == fast.tobytes()


# ---------------------------------------------------------------------------------------------------------------
# application/octet-stream (raw.CODEC)


@fuzz(200)
@given(body=st.binary(max_size=64), width=WIDTHS)
def test_raw_any_bytes_give_a_batch_or_a_client_error(body, width):
    assert_batch_or_client_error(raw_rows, body, width)


@fuzz(300)
@given(case=raw_bodies())
def test_raw_rows_are_accepted_exactly_when_whole_finite_and_within_the_limit(case):
    body, width = case
    batch = assert_batch_or_client_error(raw_rows, body, width)
    whole = len(body) % (4 * width) == 0
    values = np.frombuffer(body[: len(body) - len(body) % 4], "<f4")
    valid = whole and 1 <= len(values) // width <= MAX_ROWS and np.isfinite(values).all()
    assert (batch is not None) == valid
    if batch is not None:
        assert batch.tobytes() == values.tobytes()


# ---------------------------------------------------------------------------------------------------------------
# application/x-npy (npy.CODEC)


@fuzz(200)
@given(body=st.binary(max_size=200), width=WIDTHS)
def test_npy_any_bytes_give_a_batch_or_a_client_error(body, width):
    assert_batch_or_client_error(npy_rows, body, width)


@fuzz(400)
@given(case=npy_bodies())
def test_npy_any_header_gives_a_batch_or_a_client_error(case):
    """An accepted .npy body holds what numpy's own loader reads from it, as float32."""
    body, width = case
    batch = assert_batch_or_client_error(npy_rows, body, width)
    if batch is not None:
        with np.errstate(over="ignore"):
            expected = np.load(io.BytesIO(body), allow_pickle=False).astype(np.float32)
        assert batch.tobytes() == expected.tobytes()  # both in C order


@pytest.mark.parametrize("header", NASTY_HEADERS.values(), ids=NASTY_HEADERS.keys())
def test_npy_headers_that_upset_numpys_parser_are_a_bad_request(header):
    """numpy evaluates the header as a Python literal; what that raises on a hostile header is still a 400."""
    body = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin-1")
    with pytest.raises(BadRequest, match=r"body is not a \.npy array"):
        npy_rows(body, WIDTH, MAX_ROWS)


# ---------------------------------------------------------------------------------------------------------------
# Byte strings (a model of one string input): values that start like images, in every form that carries bytes

STRING_MODEL = tables.interface(tables.spec("image_bytes", "BYTES", ()), tables.spec("mean", "FP32", ()))


@fuzz(300)
@given(case=byte_string_requests())
def test_byte_strings_give_their_bytes_or_a_client_error(case):
    """Whatever the values (image headers declaring anything, cut, lying lengths): the rows' bytes as sent, or a
    400/413 with a message; the image checks of protocols/image/embedded.py never raise anything else."""
    body, content_type, route, headers = case
    got = tables.receive(
        body,
        STRING_MODEL,
        content_type=content_type,
        path=tables.OIP_PATH if route else None,
        headers=headers,
        max_rows=MAX_ROWS,
    )
    if isinstance(got, tables.Refused):
        event(f"refused: {got.error.__name__}")
        assert got.error in (BadRequest, PayloadTooLarge) and got.message, got
        return
    event("decoded")
    (array,) = got.arrays
    assert array.dtype == object and 1 <= len(array) <= MAX_ROWS
    assert all(type(value) is bytes for value in array.flat)

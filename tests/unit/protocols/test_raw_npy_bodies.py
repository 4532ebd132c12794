"""Binary bodies: raw little-endian float32 (application/octet-stream) and .npy (application/x-npy)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import Interface, TensorSpec
from tfscoring.protocols import npy as npy_codec
from tfscoring.protocols import raw
from tfscoring.protocols.limits import Limits

WIDTH = 784
SPEC = TensorSpec("network/X", "network/X:0", np.dtype("float32"), (WIDTH,))
MODEL = Interface("m", "1", (SPEC,), (TensorSpec("y", "y:0", np.dtype("float32"), (10,)),))


def decode_raw(body: bytes, max_rows: int) -> np.ndarray:
    return raw.CODEC.decode(body, MODEL, Limits(max_rows=max_rows)).arrays[0]


def decode_npy(body: bytes, max_rows: int) -> np.ndarray:
    return npy_codec.CODEC.decode(body, MODEL, Limits(max_rows=max_rows)).arrays[0]


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_raw_float32_rows_become_the_batch():
    rows = np.random.default_rng(0).random((3, WIDTH), dtype=np.float32)
    assert np.array_equal(decode_raw(rows.astype("<f4").tobytes(), max_rows=3), rows)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is empty; expected N x 784 float32 values, little-endian"),
        (b"\0" * (4 * WIDTH + 4), "body is 3140 bytes, not a whole number of rows: one row is 784 float32 values"),
        (np.full((1, WIDTH), np.nan, "<f4").tobytes(), "row 0, column 0 is not a finite FP32 value"),
    ],
)
def test_raw_bodies_that_are_not_whole_finite_rows_are_refused(body, message):
    with pytest.raises(BadRequest, match=message):
        decode_raw(body, max_rows=5)


def test_raw_rows_over_the_limit_are_payload_too_large():
    with pytest.raises(PayloadTooLarge, match=r"body has 3 rows; the limit is 2 rows per request \(MAX_REQUEST_ROWS\)"):
        decode_raw(np.zeros((3, WIDTH), "<f4").tobytes(), max_rows=2)


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", "u1", "<i8"])
def test_npy_arrays_of_any_real_type_and_byte_order_become_float32(dtype):
    rows = (np.arange(2 * WIDTH) % 200).reshape(2, WIDTH).astype(dtype)
    batch = decode_npy(npy(rows), max_rows=2)
    assert batch.dtype == np.float32
    assert np.array_equal(batch, rows.astype(np.float32))


def test_npy_in_fortran_order_keeps_its_rows():
    rows = np.asfortranarray(np.arange(3 * WIDTH, dtype=np.float32).reshape(3, WIDTH))
    assert np.array_equal(decode_npy(npy(rows), max_rows=3), rows)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not numpy", "body is not a .npy array"),
        (npy(np.zeros(WIDTH, np.float32)), r"shape \(784,\); expected \(N, 784\)"),
        (npy(np.zeros((1, 10), np.float32)), r"shape \(1, 10\); expected \(N, 784\)"),
        (npy(np.array([["a"] * WIDTH])), "dtype <U1; send real numbers"),
        (npy(np.zeros((2, WIDTH), np.float32))[:-4], "needs 6272 bytes of data, got 6268"),
        (npy(np.full((1, WIDTH), 1e300)), "row 0, column 0 is not a finite FP32 value"),
    ],
)
def test_npy_bodies_that_are_not_a_finite_n_by_784_array_are_refused(body, message):
    with pytest.raises(BadRequest, match=message):
        decode_npy(body, max_rows=5)


def test_an_npy_header_claiming_too_many_rows_is_refused_before_any_data_is_read():
    header = npy(np.zeros((1, WIDTH), np.float32)).replace(b"(1, 784)", b"(9999999999, 784)")
    with pytest.raises(PayloadTooLarge, match=r"9999999999 rows; the limit is 5 rows per request \(MAX_REQUEST_ROWS\)"):
        decode_npy(header, max_rows=5)


def test_an_npy_header_numpy_cannot_evaluate_is_refused_in_words_without_memory_addresses():
    # Found by tests/http/test_fuzz_api.py: numpy's literal_eval error named an object by its address, so the
    # message changed from process to process.
    header = npy(np.zeros((1, WIDTH), np.float32)).replace(b"'<f4'", b"dtype")
    with pytest.raises(BadRequest) as refused:
        decode_npy(header, max_rows=5)
    assert refused.value.message.startswith("body is not a .npy array")
    assert "malformed node or string" in refused.value.message
    assert " at 0x" not in refused.value.message

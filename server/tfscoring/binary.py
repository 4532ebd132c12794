"""Binary request bodies, for clients that want speed: no text to parse at all.

- `application/octet-stream`: raw little-endian float32 values, row after row,
  N x width of them (numpy: `rows.astype("<f4").tobytes()`).
- `application/x-npy`: one array in NumPy's .npy format (`np.save`), of shape
  (N, width) and any real number type; it is converted to float32.

Both are validated like JSON bodies: whole rows, 1 to MAX_REQUEST_ROWS of them,
every value finite.
"""

from __future__ import annotations

import io
import re

import numpy as np
from numpy.lib import format as npy_format

from tfscoring.errors import BadRequest, PayloadTooLarge

RAW = "application/octet-stream"
NPY = "application/x-npy"
_FLOAT32_LE = np.dtype("<f4")


def decode_raw(body: bytes, width: int, max_rows: int) -> np.ndarray:
    row_bytes = width * _FLOAT32_LE.itemsize
    if not body:
        raise BadRequest(f"body is empty; expected N x {width} little-endian float32 values ({RAW})")
    if len(body) % row_bytes:
        raise BadRequest(
            f"body is {len(body)} bytes, not a whole number of rows: one row is {width} float32 values "
            f"= {row_bytes} bytes ({RAW})"
        )
    batch = np.frombuffer(body, _FLOAT32_LE).reshape(-1, width)
    return _checked(batch.astype(np.float32, copy=False), max_rows)


def decode_npy(body: bytes, width: int, max_rows: int) -> np.ndarray:
    # The header is read and checked first: numpy's read_array would allocate whatever shape it claims.
    stream = io.BytesIO(body)
    try:
        version = npy_format.read_magic(stream)
        read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported; np.save writes 1.0")
        shape, fortran_order, dtype = read_header(stream)
    except TimeoutError:
        raise  # the server's SCORING_TIMEOUT_MS alarm (an OSError), not a bad header
    except Exception as err:  # bad magic, bad header: numpy evaluates it as a Python literal, which raises
        # ValueError, TypeError ({[]: 1}), MemoryError (nested too deep) or tokenize.TokenError (unclosed brackets)
        raise BadRequest(f"body is not a .npy array ({NPY}): {_first_line(err)}") from None
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise BadRequest(f".npy array has dtype {dtype}; send real numbers, ideally float32")
    if len(shape) != 2 or {type(n) for n in shape} != {int} or shape[1] != width or shape[0] < 1:  # (True, 784) too
        raise BadRequest(f".npy array has shape {shape}; expected (N, {width}) with N >= 1")
    if shape[0] > max_rows:
        raise PayloadTooLarge(f".npy array has {shape[0]} rows; the limit is {max_rows} rows per request")
    data = body[stream.tell() :]
    if len(data) != shape[0] * width * dtype.itemsize:
        raise BadRequest(
            f".npy array of shape {shape} needs {shape[0] * width * dtype.itemsize} bytes of data, got {len(data)}"
        )
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, refused below
        return _checked(array.astype(np.float32), max_rows)


def _checked(batch: np.ndarray, max_rows: int) -> np.ndarray:
    if len(batch) > max_rows:
        raise PayloadTooLarge(f"body has {len(batch)} rows; the limit is {max_rows} rows per request")
    finite = np.isfinite(batch)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise BadRequest(f"row {i}, column {j} is not a finite float32 value (NaN, infinity or out of range)")
    return batch


def _first_line(err: BaseException) -> str:
    """The error's first line, without the memory addresses Python's repr of an object puts in it
    (ast.literal_eval: "malformed node or string on line 1: <ast.Name object at 0x7f...>")."""
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return _ADDRESS.sub("", line)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

"""Binary request bodies, for clients that want speed: no text to parse at all (one-input models).

- `application/octet-stream`: the input's values raw, little-endian, of its own dtype (float32 for the
  how-to's model), row after row (numpy: `rows.astype("<f4").tobytes()`).
- `application/x-npy`: one array in NumPy's .npy format (`np.save`), of shape (N, *row shape) or
  (N, values per row), of a number type the input can take; it is converted to the input's dtype.

Both are validated like JSON bodies: whole rows, 1 to MAX_REQUEST_ROWS of them, every value fitting the
input (finite, for floats).
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
from numpy.lib import format as npy_format

from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import TensorSpec
from tfscoring.protocols import tensors

RAW = "application/octet-stream"
NPY = "application/x-npy"


def decode_raw(body: bytes, spec: TensorSpec, max_rows: int) -> np.ndarray:
    dtype = spec.dtype.newbyteorder("<")
    if not spec.fixed:
        raise BadRequest(f"the input {spec.name!r} has a free dimension {spec.shown()}; send it as .npy ({NPY})")
    row_bytes = spec.row_size * dtype.itemsize
    what = f"{spec.row_size} {spec.dtype.name} values"
    if not body:
        raise BadRequest(f"body is empty; expected N x {what}, little-endian ({RAW})")
    if len(body) % row_bytes:
        raise BadRequest(
            f"body is {len(body)} bytes, not a whole number of rows: one row is {what} = {row_bytes} bytes ({RAW})"
        )
    batch = np.frombuffer(body, dtype).reshape(-1, *spec.shape)
    return _checked(batch, spec, max_rows)


def decode_npy(body: bytes, spec: TensorSpec, max_rows: int) -> np.ndarray:
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
        raise BadRequest(f".npy array has dtype {dtype}; send real numbers, ideally {spec.dtype.name}")
    flat = (spec.row_size,) if spec.fixed else None
    if (
        {type(n) for n in shape} != {int}  # (True, 784) too
        or len(shape) < 1
        or shape[0] < 1
        or not (_fits(shape[1:], spec.shape) or shape[1:] == flat)
    ):
        raise BadRequest(f".npy array has shape {shape}; expected {spec.shown()} with N >= 1")
    if shape[0] > max_rows:
        raise PayloadTooLarge(f".npy array has {shape[0]} rows; the limit is {max_rows} rows per request")
    data = body[stream.tell() :]
    size = math.prod(shape) * dtype.itemsize  # Python ints: numpy's product wraps around in 64 bits
    if len(data) != size:
        raise BadRequest(f".npy array of shape {shape} needs {size} bytes of data, got {len(data)}")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")
    return _checked(array.reshape(shape[0], *spec.shape) if shape[1:] == flat else array, spec, max_rows)


def _fits(shape: tuple, wanted: tuple[int, ...]) -> bool:
    return len(shape) == len(wanted) and all(w < 0 or n == w for n, w in zip(shape, wanted, strict=True))


def _checked(batch: np.ndarray, spec: TensorSpec, max_rows: int) -> np.ndarray:
    if len(batch) > max_rows:
        raise PayloadTooLarge(f"body has {len(batch)} rows; the limit is {max_rows} rows per request")
    return tensors.convert(batch, spec, "body")


def _first_line(err: BaseException) -> str:
    """The error's first line, without the memory addresses Python's repr of an object puts in it
    (ast.literal_eval: "malformed node or string on line 1: <ast.Name object at 0x7f...>")."""
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return _ADDRESS.sub("", line)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

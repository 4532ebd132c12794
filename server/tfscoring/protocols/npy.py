"""`application/x-npy` bodies: one array in NumPy's .npy format (`np.save`), for one-input models.

Of shape (N, *row shape) or (N, values per row), of a number type the input can take: it is converted to the
input's dtype, validated like JSON bodies (1 to MAX_REQUEST_ROWS rows, every value fitting the input, finite for
floats).  The header is read and checked before any data: numpy's read_array would allocate whatever shape it
claims.  Answered as the how-to's form.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
from numpy.lib import format as npy_format

from tfscoring.errors import BadRequest
from tfscoring.interface import TensorSpec
from tfscoring.protocols import strings, tensors
from tfscoring.protocols.arraybody import ArrayBodyCodec
from tfscoring.protocols.limits import Limits

CONTENT_TYPE = "application/x-npy"


class NpyCodec(ArrayBodyCodec):
    name = "npy"
    content_type = CONTENT_TYPE

    def read(self, body: bytes, spec: TensorSpec, limits: Limits) -> np.ndarray:
        if spec.strings:  # .npy holds byte strings only padded to one width, which loses trailing zero bytes
            raise strings.refuse_datatype(spec, "a .npy body")
        return _array(body, spec, limits)

    def takes(self, spec: TensorSpec) -> bool:
        return not spec.strings

    def describe(self, spec: TensorSpec) -> str:
        shape = "(" + ", ".join(["N", *("any" if n < 0 else str(n) for n in spec.shape)]) + ")"
        if spec.fixed and len(spec.shape) != 1:
            shape += f" or (N, {spec.row_size})"
        takes = {"b": "bool", "i": "any integer", "u": "any integer"}.get(spec.dtype.kind, "any real number")
        description = f"One array in NumPy's .npy format (np.save), of shape {shape} and {takes} dtype; converted to "
        description += f"{spec.dtype.name}."
        return description


CODEC = NpyCodec()


def _array(body: bytes, spec: TensorSpec, limits: Limits) -> np.ndarray:
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
        raise BadRequest(f"body is not a .npy array ({CONTENT_TYPE}): {_first_line(err)}") from None
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
    limits.check_rows(shape[0], ".npy array")
    data = body[stream.tell() :]
    size = math.prod(shape) * dtype.itemsize  # Python ints: numpy's product wraps around in 64 bits
    if len(data) != size:
        raise BadRequest(f".npy array of shape {shape} needs {size} bytes of data, got {len(data)}")
    values = np.frombuffer(data, dtype)
    tensors.check_bool_bytes(values, "body")
    array = values.reshape(shape, order="F" if fortran_order else "C")
    return tensors.convert(array.reshape(shape[0], *spec.shape) if shape[1:] == flat else array, spec, "body")


def _fits(shape: tuple, wanted: tuple[int, ...]) -> bool:
    return len(shape) == len(wanted) and all(w < 0 or n == w for n, w in zip(shape, wanted, strict=True))


def _first_line(err: BaseException) -> str:
    """The error's first line, without the memory addresses Python's repr of an object puts in it
    (ast.literal_eval: "malformed node or string on line 1: <ast.Name object at 0x7f...>")."""
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return _ADDRESS.sub("", line)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

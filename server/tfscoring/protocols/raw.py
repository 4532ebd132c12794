"""`application/octet-stream` bodies, for clients that want speed: no text to parse at all (one-input models).

The input's values raw, little-endian, of its own dtype (float32 for the how-to's model), row after row (numpy:
`rows.astype("<f4").tobytes()`); validated like JSON bodies: whole rows, 1 to MAX_REQUEST_ROWS of them, every
value fitting the input (finite, for floats).  For a string input (BYTES) of one value a row, the whole body is one
row's bytes.  Answered as the how-to's form.
"""

from __future__ import annotations

import numpy as np

from tfscoring.errors import BadRequest
from tfscoring.interface import TensorSpec
from tfscoring.protocols import strings, tensors
from tfscoring.protocols.arraybody import ArrayBodyCodec
from tfscoring.protocols.limits import Limits

CONTENT_TYPE = "application/octet-stream"


class RawCodec(ArrayBodyCodec):
    name = "raw"
    content_type = CONTENT_TYPE

    def read(self, body: bytes, spec: TensorSpec, limits: Limits) -> np.ndarray:
        if spec.strings:
            if not body:
                raise BadRequest(
                    f"body is empty; for the string input {spec.name!r} the whole body is one row's bytes "
                    f"({CONTENT_TYPE}): send an empty string in JSON"
                )
            return strings.one_row(body, spec, f"an {CONTENT_TYPE} body")
        return _array(body, spec, limits)

    def describe(self, spec: TensorSpec) -> str:
        if spec.strings:
            return "The bytes of one row: the whole body is the value of the string input."
        dtype = spec.dtype.newbyteorder("<") if spec.dtype.itemsize > 1 else spec.dtype
        description = (
            f"Raw little-endian {spec.dtype.name} values, N x {spec.row_size} of them, row after row (numpy: "
            f"rows.astype('{dtype.str}').tobytes())."
            if spec.fixed
            else "Not for this input, which has a free dimension: send .npy."
        )
        return description


CODEC = RawCodec()


def _array(body: bytes, spec: TensorSpec, limits: Limits) -> np.ndarray:
    dtype = spec.dtype.newbyteorder("<")
    if not spec.fixed:
        raise BadRequest(
            f"the input {spec.name!r} has a free dimension {spec.shown()}; send it as .npy (application/x-npy)"
        )
    row_bytes = spec.row_size * dtype.itemsize
    what = f"{spec.row_size} {spec.dtype.name} values"
    if not body:
        raise BadRequest(f"body is empty; expected N x {what}, little-endian ({CONTENT_TYPE})")
    if len(body) % row_bytes:
        raise BadRequest(
            f"body is {len(body)} bytes, not a whole number of rows: one row is {what} = {row_bytes} bytes "
            f"({CONTENT_TYPE})"
        )
    batch = np.frombuffer(body, dtype).reshape(-1, *spec.shape)
    limits.check_rows(len(batch), "body")
    tensors.check_bool_bytes(batch, "body")
    return tensors.convert(batch, spec, "body")

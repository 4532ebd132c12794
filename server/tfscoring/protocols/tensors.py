"""One input's array from a request, validated against the input: values, dtype, rank and each row's shape.

Every JSON form hands its values, and the Open Inference Protocol's binary extension the bytes of a binary tensor,
to a TensorReader (`from_json`, `from_flat`, `from_bytes`), which returns an array of the input's own dtype and
shape (N, *row shape), or a BadRequest / PayloadTooLarge whose message names the input and the row.

A float32 input of one dimension (the how-to's rows) goes through decode.to_batch, the path tuned for it.
Elsewhere numpy builds the array in C, and only a request that fails is walked in Python to say where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tfscoring.errors import BadRequest
from tfscoring.interface import DTYPES, TensorSpec
from tfscoring.protocols import decode, strings
from tfscoring.protocols.limits import Limits

_INTEGER_KINDS = "iu"


@dataclass(frozen=True)
class TensorReader:
    """Reads one request's tensors within `limits`.  `booleans`: whether the body holds true or false at all; where
    it does not, no value is looked at for one (numpy alone would read them as 1 and 0 into a number input)."""

    limits: Limits
    booleans: bool = True

    def from_json(self, value: object, spec: TensorSpec, field: str, example: str | None = None) -> np.ndarray:
        """The array of `spec` from a parsed JSON list: one item per row, nested to the row's shape, or a fixed
        row's values flat (row-major).  `example`: a request of the form, which the how-to's kind of rows (float32,
        one dimension) show where `value` is no list of them (default: the how-to's)."""
        if spec.dtype == np.float32 and len(spec.shape) == 1 and spec.fixed:
            example = example or decode.expected_shape(spec.shape[0])
            return decode.to_batch(value, spec, self.limits, field, example)
        if spec.strings:
            return strings.from_json(value, spec, field, self.limits)
        if not isinstance(value, list) or not value:
            raise BadRequest(f"{field} must be a non-empty list of rows of shape {spec.shown()}, got {_json(value)}")
        self.limits.check_rows(len(value), field)
        integers = spec.dtype if spec.dtype.kind in _INTEGER_KINDS else None
        array = _array(value, field, len(spec.shape) + 1, integers, f"the input {spec.name!r} ({spec.datatype})")
        if spec.dtype.kind == "f" and array.dtype.kind == "f":  # JSON integers among floats were read as float64
            decode.check_json_integers(value, array, spec, lambda at: f"{field} {_where(at)}")
        if len(spec.shape) > 1 and spec.fixed and array.shape[1:] == (spec.row_size,):
            array = array.reshape(len(array), *spec.shape)  # flat rows
        _check_shape(array, spec, field)
        if self.booleans and spec.dtype.kind != "b" and array.dtype.kind != "b":
            _refuse_booleans(value, spec, field)
        return convert(array, spec, field, json=True)

    def from_flat(self, data: list, shape: list[int], declared: str, spec: TensorSpec, field: str) -> np.ndarray:
        """The array of `spec` from the Open Inference Protocol's data, flat in row-major order (or nested to
        `shape`), whose values must be of the `declared` datatype."""
        rows = self._declared_rows(shape, spec, field)
        if spec.strings:
            return strings.from_flat(data, shape, rows, spec, field)
        batch_shape = (rows, *(shape[1:] if spec.shape else ()))  # Triton's [N, 1] for one value a row: (N,)
        integers = DTYPES[declared] if declared.startswith(("INT", "UINT")) else None
        what = f"its datatype {declared}"
        array = _array(data, field, len(shape), integers, what, batch_shape) if data else np.zeros(0)
        if array.ndim > 1:  # nested to the shape: the same values
            if list(array.shape) != shape:
                raise BadRequest(f"{field} has data nested as {list(array.shape)}; its shape is {shape}")
        elif array.size != math.prod(shape):
            raise BadRequest(f"{field} has {array.size} values; its shape {shape} needs {math.prod(shape)}")
        array = array.reshape(batch_shape)  # flat data too: messages tell a value's row and column, not its flat index
        if (declared == "BOOL") != (array.dtype.kind == "b"):
            raise BadRequest(f"{field} has datatype {declared} but its data holds {_kind(array)}")
        if self.booleans and declared != "BOOL" and _first_boolean(data) is not None:
            raise BadRequest(f"{field} holds true or false among its numbers; its datatype {declared} takes numbers")
        if declared.startswith(("INT", "UINT")):
            _check_integers(array, DTYPES[declared], field, what, json=True)
        elif declared.startswith("FP"):
            _check_float(array, DTYPES[declared], declared, field)
        if spec.dtype.kind == "f" and array.dtype.kind == "f":  # JSON integers among floats were read as float64
            decode.check_json_integers(data, array, spec, lambda at: f"{field} {_where(at)}")
        return convert(array, spec, field, json=True)

    def from_bytes(self, data: bytes, shape: list[int], declared: str, spec: TensorSpec, field: str) -> np.ndarray:
        """The array of `spec` from a binary tensor (the Open Inference Protocol's binary data extension): the
        values of the `declared` datatype, little-endian, row-major."""
        rows = self._declared_rows(shape, spec, field)
        if spec.strings:
            return strings.from_lengths(data, shape, rows, spec, field)
        dtype = DTYPES[declared].newbyteorder("<")
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise BadRequest(
                f"{field} has {len(data)} bytes of binary data; its shape {shape} of {declared} needs "
                f"{math.prod(shape) * dtype.itemsize}"
            )
        array = np.frombuffer(data, dtype)
        check_bool_bytes(array, field)
        return convert(array.reshape(rows, *(shape[1:] if spec.shape else ())), spec, field)

    def _declared_rows(self, shape: object, spec: TensorSpec, field: str) -> int:
        """The declared shape's count of rows, once the shape fits the input: [N, *row shape], or [N, 1] for an
        input of one value per row (Triton's clients and perf_analyzer give every tensor a dimension per row)."""
        expected = "[" + ", ".join(["N", *("any" if n < 0 else str(n) for n in spec.shape)]) + "]"
        if not spec.shape and isinstance(shape, list) and len(shape) == 2 and shape[1] == 1:
            shape = shape[:1]
        if (
            not isinstance(shape, list)
            or len(shape) != len(spec.shape) + 1
            or not all(type(n) is int and n >= 0 for n in shape)
            or shape[0] < 1
            or any(want >= 0 and got != want for got, want in zip(shape[1:], spec.shape, strict=True))
        ):
            raise BadRequest(
                f"{field} has shape {decode.shown(shape)}; the input {spec.name!r} takes {expected} with N >= 1"
            )
        self.limits.check_rows(shape[0], field)
        return shape[0]


def _check_float(array: np.ndarray, dtype: np.dtype, declared: str, field: str) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(array.astype(dtype))
    if not finite.all():
        raise BadRequest(f"{field} {_where(np.argwhere(~finite)[0])} is not a finite {declared} value")


def check_datatype(declared: object, spec: TensorSpec, field: str) -> str:
    """An Open Inference Protocol datatype the input can take: any number type for a float input (the values
    are converted), an integer type for an integer input, BOOL for a boolean one, BYTES for a string one."""
    if not isinstance(declared, str):
        raise BadRequest(f'{field} has no "datatype" string; the input\'s is "{spec.datatype}"')
    if declared not in DTYPES:
        raise BadRequest(
            f'{field} has datatype {decode.shown(declared)}; the model\'s input {spec.name!r} is "{spec.datatype}"'
        )
    kind, wanted = DTYPES[declared].kind, spec.dtype.kind
    fits = (
        (kind == wanted and kind in "bO")  # booleans for a boolean input, byte strings for a string input
        or (wanted == "f" and kind in "iuf")
        or (wanted in _INTEGER_KINDS and kind in "iu")
    )
    if not fits:
        raise BadRequest(f"{field} has datatype {declared}; the model's input {spec.name!r} is {spec.datatype}")
    return declared


def check_bool_bytes(array: np.ndarray, field: str) -> None:
    """Booleans read from bytes (a binary body, a binary tensor) are bytes of 0 and 1: numpy keeps any other byte
    as it is, a boolean that is neither true nor false to the model."""
    if array.dtype.kind == "b" and array.view(np.uint8).max(initial=0) > 1:
        raise BadRequest(f"{field} has BOOL bytes other than 0 and 1")


def convert(array: np.ndarray, spec: TensorSpec, field: str, json: bool = False) -> np.ndarray:
    """The array in the input's dtype, or a 400 where a value does not fit it.  `json`: its values were JSON
    numbers (advice on large integers differs)."""
    wanted = spec.dtype
    if wanted.kind == "b":
        if array.dtype.kind != "b":
            raise BadRequest(f"{field} holds {_kind(array)}; the input {spec.name!r} takes true or false (BOOL)")
        return np.ascontiguousarray(array, bool)
    if array.dtype.kind == "b":
        raise BadRequest(f"{field} holds true or false; the input {spec.name!r} takes numbers ({spec.datatype})")
    if wanted.kind in _INTEGER_KINDS:
        _check_integers(array, wanted, field, f"the input {spec.name!r} ({spec.datatype})", json)
        return np.ascontiguousarray(array, wanted)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond the dtype's range becomes inf, refused below
        converted = np.ascontiguousarray(array, wanted)
    finite = np.isfinite(converted)
    if not finite.all():
        where = _where(np.argwhere(~finite)[0])
        raise BadRequest(f"{field} {where} is not a finite {spec.datatype} value (NaN, infinity or out of range)")
    if array.dtype.kind in _INTEGER_KINDS and not _always_exact(array.dtype, wanted):
        _check_exact(array, converted, spec, field)
    return converted


def _always_exact(integers: np.dtype, floats: np.dtype) -> bool:
    """Whether every integer of that dtype is a float of this one (uint8 to FP32: yes; int64 to FP64: no)."""
    magnitude_bits = np.iinfo(integers).bits - (integers.kind == "i")
    return magnitude_bits <= np.finfo(floats).nmant + 1


def _check_exact(array: np.ndarray, converted: np.ndarray, spec: TensorSpec, field: str) -> None:
    """Integers converted to a float input must be held exactly: compared back in integer arithmetic (float64
    would round 2**53 + 1 before comparing), a float at or beyond 2**63 (2**64 unsigned) being none of them.
    In chunks of _EXACT_CHUNK values, so that the comparison's temporaries stay small whatever the array."""
    wide, limit = (np.dtype(np.int64), 2.0**63) if array.dtype.kind == "i" else (np.dtype(np.uint64), 2.0**64)
    values, floats = array.reshape(-1), converted.reshape(-1)
    for start in range(0, values.size, _EXACT_CHUNK):
        sent, held = values[start : start + _EXACT_CHUNK], floats[start : start + _EXACT_CHUNK]
        with np.errstate(invalid="ignore", over="ignore"):
            beyond = held >= limit
            back = np.where(beyond, 0, held).astype(wide)
        inexact = beyond | (back != sent.astype(wide))
        if inexact.any():
            at = np.unravel_index(start + int(np.argmax(inexact)), array.shape)
            value = int(array[at])
            raise BadRequest(
                f"{field} {_where(np.array(at))} is an integer that {spec.datatype} cannot hold exactly: {value} (it "
                f"would be {int(converted[at])}); the input {spec.name!r} is {spec.datatype}"
            )


_EXACT_CHUNK = 1 << 18


def _array(
    value: list,
    field: str,
    levels: int,
    integer_dtype: np.dtype | None = None,
    what: str = "",
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """The JSON list as a numpy array of numbers or booleans, or a 400 saying which item is not one, or which
    list is nested deeper than `levels` lists (the batch's and the row's dimensions); `integer_dtype`: the integer
    type the values must fit (`what`, in messages), where they must; `shape`: the shape whose positions messages
    tell, where the list is flat data of it (the Open Inference Protocol's)."""
    try:
        array = np.array(value)
    except (ValueError, OverflowError):  # lists of different lengths ("inhomogeneous"), integers beyond 64 bits
        array = None
    if array is None or array.dtype.kind not in "biuf":
        found = _first_non_number(value, levels)
        if found is None:
            raise BadRequest(f"{field} holds lists of different lengths; its rows must be nested to one shape")
        path, item = found
        if isinstance(item, list):
            raise BadRequest(
                f"{field} at {path} is a list nested deeper than the input's rank allows: its values are nested "
                f"{levels} lists deep at most"
            )
        if type(item) is int:
            raise BadRequest(f"{field} at {path} is an integer beyond 64 bits ({item})")
        raise BadRequest(f"{field} at {path} is {_json(item)}; every value must be a number")
    if array.dtype.kind == "f" and array.size and (np.abs(array) >= 2**53).any():
        # numpy makes float64 of integers of int64 and of uint64 together ([0, 2**63 + 1]); where every value is
        # an integer (not so for 2**53 + 1.0, a float), they are exact as uint64, or some is outside an integer
        # input's range (int64's and uint64's together: [-1, 2**63]).
        items = np.array(value, dtype=object).ravel()
        if not any(type(item) is float for item in items):
            if array.min() >= 0:
                return np.array(value, dtype=np.uint64)
            if integer_dtype is not None:
                info = np.iinfo(integer_dtype)
                k, item = next((k, v) for k, v in enumerate(items) if not info.min <= v <= info.max)
                flat = shape is not None and array.ndim == 1 and math.prod(shape) == array.size
                where = _where(np.unravel_index(k, shape if flat else array.shape))
                raise BadRequest(f"{field} {where} is {item}, outside {what}'s range {info.min} to {info.max}")
    return array


def _first_non_number(value: list, levels: int) -> tuple[str, object] | None:
    """Where a nested list first holds something other than a number or a boolean that fits 64 bits, or a list
    deeper than `levels` lists (returned as the item); walked with a stack of at most `levels`, not recursion."""
    stack = [(iter(enumerate(value)), "")]
    while stack:
        items, path = stack[-1]
        step = next(items, None)
        if step is None:
            stack.pop()
            continue
        i, item = step
        if isinstance(item, list):
            if len(stack) >= levels:
                return f"{path}[{i}]", item
            stack.append((iter(enumerate(item)), f"{path}[{i}]"))
        elif not (type(item) is float or type(item) is bool or (type(item) is int and -(2**63) <= item < 2**64)):
            return f"{path}[{i}]", item
    return None


def _check_shape(array: np.ndarray, spec: TensorSpec, field: str) -> None:
    rank = len(spec.shape) + 1
    if array.ndim == rank and all(
        want < 0 or got == want for got, want in zip(array.shape[1:], spec.shape, strict=True)
    ):
        return
    wanted = "one value per row" if not spec.shape else "rows of shape (" + spec.shown()[4:]
    flat = f", or rows of {spec.row_size} values flat" if spec.fixed and len(spec.shape) > 1 else ""
    if array.ndim > rank:
        raise BadRequest(
            f"{field} is nested {array.ndim} lists deep, deeper than the input's rank allows: the input {spec.name!r} "
            f"takes {wanted}{flat}: a batch of shape {spec.shown()}"
        )
    got = "values" if array.ndim == 1 else f"rows of shape {tuple(array.shape[1:])}"
    raise BadRequest(
        f"{field} has {got}; the input {spec.name!r} takes {wanted}{flat}: a batch of shape {spec.shown()}"
    )


def _first_boolean(value: list) -> int | None:
    """The flat index of the first true or false in a regular nested list (numpy reads them as 1 and 0)."""
    return next((i for i, item in enumerate(np.array(value, dtype=object).ravel()) if type(item) is bool), None)


def _refuse_booleans(value: list, spec: TensorSpec, field: str) -> None:
    found = _first_boolean(value)
    if found is not None:
        where = _where(np.unravel_index(found, np.shape(value)))
        raise BadRequest(f"{field} {where} is a boolean; the input {spec.name!r} takes numbers ({spec.datatype})")


def _check_integers(array: np.ndarray, dtype: np.dtype, field: str, what: str, json: bool) -> None:
    info = np.iinfo(dtype)
    if array.dtype.kind == "f":
        fractional = array != np.floor(array)
        if fractional.any() or not np.isfinite(array).all():
            where = _where(np.argwhere(fractional | ~np.isfinite(array))[0])
            raise BadRequest(f"{field} {where} is not an integer; {what} takes integers")
        # Beyond 64 bits first: orjson reads such an integer as a float (2**64 and -2**63 are exact in float64).
        outside = (array < -(2**63)) | (array >= 2**64)
        if outside.any():
            at = np.argwhere(outside)[0]
            raise BadRequest(
                f"{field} {_where(at)} is {float(array[tuple(at)])!r}, outside {what}'s range {info.min} to {info.max}"
            )
        # A float64 is exact only up to 2**53: a larger one may already be another integer.  In JSON, integers beside
        # a number written with a fraction (or as 1e3) were read as float64; a binary body sent floats.
        inexact = np.abs(array) >= 2**53
        if inexact.any():
            at = np.argwhere(inexact)[0]
            if json:
                raise BadRequest(
                    f"{field} {_where(at)} is an integer beyond 2**53 written among numbers with a fraction or "
                    "exponent, which cannot be read exactly; write every value of this input as a plain integer"
                )
            raise BadRequest(
                f"{field} {_where(at)} is a float beyond 2**53 ({float(array[tuple(at)])!r}), which need not be the "
                f"integer meant; send integers: {what} takes integers"
            )
    if array.size:
        low, high = array.min(), array.max()
        # Compared as Python ints: in float64, the int64 maximum rounds up to 2**63 and would pass.
        if int(low) < info.min or int(high) > info.max:
            bad = int(low) if int(low) < info.min else int(high)
            raise BadRequest(f"{field} holds {bad}, outside {what}'s range {info.min} to {info.max}")


_where = decode.position


def _kind(array: np.ndarray) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers with fractions"}.get(
        array.dtype.kind, "other values"
    )


def _json(value: object) -> str:
    return decode.json_type(value)

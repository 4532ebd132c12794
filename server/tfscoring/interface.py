"""The model's interface as clients see it: named input and output tensors, each with a dtype and a row shape.

Read from the graph by tf/load.py (its serving signature, or the tensor settings); every request form's codec in
protocols/, the metadata answer and the published schema (protocols/swagger.py) are built from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The Open Inference Protocol's name of each numpy dtype a tensor may have (tf/load.py refuses others).  BYTES: a
# byte string per value (TensorFlow's DT_STRING), held as Python bytes in an object array, which TensorFlow takes
# as a feed and answers as a fetch.
BYTES = np.dtype(object)
DATATYPES = {
    np.dtype(t): name
    for t, name in [
        (np.bool_, "BOOL"), (np.float16, "FP16"), (np.float32, "FP32"), (np.float64, "FP64"),
        (np.int8, "INT8"), (np.int16, "INT16"), (np.int32, "INT32"), (np.int64, "INT64"),
        (np.uint8, "UINT8"), (np.uint16, "UINT16"), (np.uint32, "UINT32"), (np.uint64, "UINT64"),
        (BYTES, "BYTES"),
    ]
}  # fmt: skip
DTYPES = {name: dtype for dtype, name in DATATYPES.items()}
# One array per input (or output), in the interface's order, rows first: what the decoders give the batcher, the
# batcher the model, and the model back.
Batch = tuple[np.ndarray, ...]
# The model's predict: one array per input in, one per output out, one output row per input row.
Predict = Callable[[Batch], Batch]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: what clients call it, the graph tensor behind it, and one row of it."""

    name: str  # the signature's key, or the tensor's op name
    tensor: str  # the graph tensor, e.g. "network/X:0"
    dtype: np.dtype
    shape: tuple[int, ...]  # one row's shape (the batch dimension left out); -1 where the graph leaves it free

    @property
    def datatype(self) -> str:
        return DATATYPES[self.dtype]

    @property
    def aliases(self) -> tuple[str, ...]:
        """The names a request may use: its own, the tensor's op name and the tensor's full name."""
        op = self.tensor.rsplit(":", 1)[0]
        return tuple(dict.fromkeys((self.name, op, self.tensor)))

    @property
    def strings(self) -> bool:
        """Byte strings (BYTES): values of any length, which no row shape bounds."""
        return self.dtype == BYTES

    @property
    def fixed(self) -> bool:
        """Every dimension of a row is known: the row's size is too."""
        return -1 not in self.shape

    @property
    def row_size(self) -> int:
        """Values in one row (fixed shapes only)."""
        return math.prod(self.shape)

    def shown(self) -> str:
        """The shape of a batch of this tensor as messages write it, e.g. (N, 28, 28, 1)."""
        return "(" + ", ".join(["N", *("any" if n < 0 else str(n) for n in self.shape)]) + ")"


@dataclass(frozen=True)
class Interface:
    model_name: str
    model_version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    signature_key: str | None = None  # the meta-graph's serving signature, where the interface comes from one
    data_answer: str = "class_ids"  # what the how-to's {"data": ...} form answers (DATA_ANSWER)
    platform: str = "tensorflow_graphdef"  # Triton's name of the model's format: tensorflow_savedmodel for a SavedModel

    def input_named(self, name: object) -> TensorSpec | None:
        return next((spec for spec in self.inputs if name in spec.aliases), None)

    def output_named(self, name: object) -> TensorSpec | None:
        return next((spec for spec in self.outputs if name in spec.aliases), None)

    @property
    def howto_width(self) -> int | None:
        """The row width where the model takes the how-to's rows (one float32 input of shape (N, width))."""
        if len(self.inputs) == 1 and self.inputs[0].dtype == np.float32 and len(self.inputs[0].shape) == 1:
            width = self.inputs[0].shape[0]
            return width if width > 0 else None
        return None

    @property
    def bounded_json(self) -> bool:
        """Every input has a fixed row shape: a JSON body's count of values is bounded before it is parsed."""
        return all(spec.fixed for spec in self.inputs)

    def input_list(self) -> str:
        return ", ".join(f"{spec.name!r} {spec.datatype} {spec.shown()}" for spec in self.inputs)

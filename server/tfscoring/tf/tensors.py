"""The tensors a loaded graph serves, whatever its format: chosen from the settings or the serving signature, found
in the graph, and checked to be ones this server can batch (rows first, a dtype clients can send).

Every format's loader (checkpoint.py, savedmodel.py, frozen.py) names its tensors through `served_tensors`, and
load.py finds and checks them here, so that a tensor is refused in the same words whatever the format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow.compat.v1 as tf

from tfscoring import log
from tfscoring.config import Settings
from tfscoring.errors import StartupError
from tfscoring.interface import DATATYPES, TensorSpec
from tfscoring.tf.signature import Signature

# What a byte string (DT_STRING) is in numpy: an object array of bytes, served where the interface has a name for it.
STRINGS = np.dtype(object)
Named = tuple[str, str, str]  # (name for clients, graph tensor, what errors call it)


@dataclass(frozen=True)
class Served:
    key: str | None  # the serving signature's key, where the tensors come from one
    inputs: list[Named]
    outputs: list[Named]


def from_setting(settings: Settings, setting: str, spelt: Callable[[str], str] = str) -> list[Named]:
    """The tensors a tensor setting names (one or several, comma-separated, each as `spelt` reads it), called by their
    op names, or by their full names where two come from one op (top-k's values and indices)."""
    names = [spelt(name.strip()) for name in getattr(settings, setting).split(",") if name.strip()]
    require(bool(names), f"{setting.upper()} names no tensor")
    ops = [name.rsplit(":", 1)[0] for name in names]
    return [(op if ops.count(op) == 1 else name, name, setting.upper()) for op, name in zip(ops, names, strict=True)]


def served_tensors(
    settings: Settings, read_signature: Callable[[], Signature | None], where: str, spelt: Callable[[str], str] = str
) -> Served:
    """The inputs and outputs to serve: each of INPUT_TENSOR and OUTPUT_TENSOR where it is set, else the serving
    signature's (read only where a side needs it), else the settings' defaults (the how-to's, whose meta-graph
    declares no signature).  Clients call a signature's tensors by its keys, others by op name."""
    given = settings.given_tensors
    served = None if len(given) == 2 else read_signature()
    if served is None:
        return Served(
            None, from_setting(settings, "input_tensor", spelt), from_setting(settings, "output_tensor", spelt)
        )
    sides = {}
    for side, tensors, setting in (
        ("inputs", served.inputs, "input_tensor"),
        ("outputs", served.outputs, "output_tensor"),
    ):
        if setting in given:
            sides[side] = from_setting(settings, setting, spelt)
        else:
            require(bool(tensors), f"the serving signature {served.key!r} of {where} has no {side}")
            label = side[:-1]
            sides[side] = [(key, name, f"signature {label} {key!r}") for key, name in tensors.items()]
    log.info(
        "serving signature %r: inputs %s, outputs %s",
        served.key,
        ", ".join(t for _, t, _ in sides["inputs"]),
        ", ".join(t for _, t, _ in sides["outputs"]),
    )
    return Served(served.key, sides["inputs"], sides["outputs"])


def tensor(graph: tf.Graph, name: str, variable: str, where: object) -> tf.Tensor:
    """The graph's tensor of that name (StartupError naming the setting or signature key it came from)."""
    try:
        return graph.get_tensor_by_name(name)
    except (KeyError, ValueError):
        raise StartupError(f"tensor {name!r} ({variable}) is not in the graph of {where}") from None


def spec(tensor: tf.Tensor, name: str, label: str, side: str) -> TensorSpec:
    """The tensor as clients see it, once it is one this server can batch: rows first, numbers or booleans (and byte
    strings, where the interface has a name for them)."""
    label = f"{label} {tensor.name}"
    require(tensor.shape.rank is not None, f"{label} has an unknown shape; export it with a static rank")
    require(
        tensor.shape.rank >= 1,
        f"{label} is a scalar (shape ()); this server batches rows: every {side} needs a batch dimension",
    )
    require(
        _size(tensor, 0) is None,
        f"{label} has a fixed batch size of {_size(tensor, 0)} (shape {tensor.shape}); this server batches rows: "
        "export the graph with a free batch dimension (None)",
    )
    dtype = _numpy_dtype(tensor.dtype)
    kinds = "numbers, booleans and byte strings" if STRINGS in DATATYPES else "numbers and booleans"
    require(dtype in DATATYPES, f"{label} has dtype {tensor.dtype.name}; this server takes and answers {kinds}")
    shape = tuple(-1 if _size(tensor, axis) is None else _size(tensor, axis) for axis in range(1, tensor.shape.rank))
    return TensorSpec(name, tensor.name, dtype, shape)


def _numpy_dtype(dtype: tf.DType) -> np.dtype | None:
    if dtype == tf.string:
        return STRINGS
    return np.dtype(dtype.as_numpy_dtype) if dtype.is_numpy_compatible else None


def _size(tensor: tf.Tensor, axis: int) -> int | None:
    """A static dimension as an int, None where it is free: under TF1 shape behaviour (which any module calling
    tf.disable_v2_behavior() turns on for the whole process, as the how-to's score.py does) a dimension is a
    Dimension object, never None itself."""
    return tf.dimension_value(tensor.shape[axis])


def require(condition: bool, message: str) -> None:
    if not condition:
        raise StartupError(message)

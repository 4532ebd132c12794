"""A frozen GraphDef (`*.pb`: freeze_graph's, convert_variables_to_constants', the Object Detection API's
frozen_inference_graph.pb): weights held as constants, no signature, so INPUT_TENSOR and OUTPUT_TENSOR name the
tensors to serve.

It is imported with no name scope (`name=""`), so its tensors keep the names it was saved with.  A tool that shows a
graph after import_graph_def's default scope (TensorBoard, Netron on a re-exported graph) writes them `import/...`:
a name given so, and absent from the graph, is read without that prefix.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow.compat.v1 as tf
from tensorflow.core.framework import graph_pb2

from tfscoring.config import Settings
from tfscoring.errors import StartupError
from tfscoring.tf import ops
from tfscoring.tf.imported import Imported
from tfscoring.tf.messages import first_line
from tfscoring.tf.tensors import served_tensors

IMPORT_SCOPE = "import/"  # import_graph_def's default name scope
SHOWN = 5  # candidate tensors a message names
# Ops whose outputs are not a model's answer even where nothing reads them.
NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Assert", "SaveV2", "RestoreV2"}


def load(path: Path, settings: Settings, session: tf.Session) -> Imported:
    """Import the frozen graph into the session's graph (the default graph), with no name scope."""
    graph_def = _read(path)
    where = f"frozen graph {path}"
    ops.require_registered(graph_def, where)
    missing = [name.upper() for name in ("input_tensor", "output_tensor") if name not in settings.given_tensors]
    if missing:
        raise StartupError(
            f"{where} declares no inputs or outputs: set {' and '.join(missing)} (placeholders: "
            f"{_listed(_placeholders(graph_def))}; likely outputs: {_listed(_likely_outputs(graph_def))})"
        )
    for node in graph_def.node:
        node.device = ""  # run where this worker is pinned, not where the model was frozen
    try:
        tf.import_graph_def(graph_def, name="")
    except Exception as err:  # TF raises ValueError and others for a graph it cannot import
        raise StartupError(f"cannot import {where}: {first_line(err)}") from None
    nodes = {node.name for node in graph_def.node}
    served = served_tensors(settings, lambda: None, str(path), spelt=lambda name: _unscoped(name, nodes))
    return Imported(served, path)


def _read(path: Path) -> graph_pb2.GraphDef:
    graph_def = graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as err:  # protobuf raises DecodeError and others for a corrupt file
        raise StartupError(f"cannot read frozen graph {path}: {first_line(err)}") from None
    if not graph_def.node:  # a file of other bytes may parse as an empty graph
        raise StartupError(f"cannot read frozen graph {path}: it holds no graph (no nodes)")
    return graph_def


def _unscoped(name: str, nodes: set[str]) -> str:
    """The tensor name as the graph has it: `import/x:0` is read as `x:0` where the graph has x and no import/x, and
    `x:0` as `import/x:0` where the graph has import/x and no x (a graph saved again after an import_graph_def)."""
    op = name.rsplit(":", 1)[0]
    if name.startswith(IMPORT_SCOPE) and op not in nodes and op[len(IMPORT_SCOPE) :] in nodes:
        return name[len(IMPORT_SCOPE) :]
    if op not in nodes and IMPORT_SCOPE + op in nodes:
        return IMPORT_SCOPE + name
    return name


def _placeholders(graph_def: graph_pb2.GraphDef) -> list[str]:
    return [f"{node.name}:0" for node in graph_def.node if node.op in ("Placeholder", "PlaceholderWithDefault")]


def _likely_outputs(graph_def: graph_pb2.GraphDef) -> list[str]:
    """The nodes no other node reads, but those that never answer (constants, no-ops): a frozen graph's heads."""
    read = {name.lstrip("^").rsplit(":", 1)[0] for node in graph_def.node for name in node.input}
    return [f"{node.name}:0" for node in graph_def.node if node.name not in read and node.op not in NOT_OUTPUTS]


def _listed(names: list[str]) -> str:
    if not names:
        return "none"
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")

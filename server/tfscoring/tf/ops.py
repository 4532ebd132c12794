"""Whether this TensorFlow can run a graph: every op it uses registered.

A graph exported by an older TensorFlow may use ops that are gone (tf.contrib's, removed in TF 2) or that a library
of its own registered (custom ops).  TensorFlow says so only when the graph is imported, in a message about the
"binary running on" this host; this names the ops first, in one line.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import op_def_registry

from tfscoring.errors import StartupError

SHOWN = 5  # ops a message names


def require_registered(graph_def: graph_pb2.GraphDef, where: str) -> None:
    """StartupError naming the ops of `graph_def` (its functions' included) that this TensorFlow does not have."""
    functions = graph_def.library.function
    defined = {function.signature.name for function in functions}  # a call to a graph function is a node too
    used = {node.op for node in graph_def.node} | {node.op for f in functions for node in f.node_def}
    missing = sorted(op for op in used - defined if op_def_registry.get(op) is None)
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else "")
        raise StartupError(
            f"{where} uses {'an op' if len(missing) == 1 else 'ops'} that TensorFlow {tf.__version__} does not "
            f"register: {shown} (a tf.contrib op, gone since TF 2, or a custom op): export the model without "
            f"{'it' if len(missing) == 1 else 'them'}"
        )

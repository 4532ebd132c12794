"""A TF1 meta-graph checkpoint (`<prefix>.meta`, `.index`, `.data-*`: the how-to's, any tf.train.Saver's): its graph
imported, its tensors named (the settings', else its serving signature's), its variables restored after the tensors
are checked."""

from __future__ import annotations

from pathlib import Path

import tensorflow.compat.v1 as tf

from tfscoring.config import Settings
from tfscoring.errors import StartupError
from tfscoring.tf import ops, signature
from tfscoring.tf.imported import Imported
from tfscoring.tf.messages import first_line
from tfscoring.tf.tensors import served_tensors


def load(prefix: Path, settings: Settings, session: tf.Session) -> Imported:
    """Import the checkpoint's meta-graph into the session's graph (the default graph); restoring its variables is
    the Imported's `restore`."""
    meta = prefix.with_name(prefix.name + ".meta")
    meta_graph = signature.read_meta_graph(meta)
    ops.require_registered(meta_graph.graph_def, f"meta-graph {meta}")
    try:
        # clear_devices: run where this worker is pinned, not where the model was trained.
        saver = tf.train.import_meta_graph(meta_graph, clear_devices=True)
    except Exception as err:  # protobuf and TF raise many types for a corrupt file
        raise StartupError(f"cannot import meta-graph {meta}: {first_line(err)}") from None
    served = served_tensors(
        settings, lambda: signature.choose(meta_graph.signature_def, f"meta-graph {meta}", settings), str(meta)
    )

    def restore() -> None:
        try:
            saver.restore(session, str(prefix))
        except (tf.errors.OpError, ValueError) as err:
            raise StartupError(f"cannot restore checkpoint {prefix}: {first_line(err)}") from None

    return Imported(served, meta, restore)

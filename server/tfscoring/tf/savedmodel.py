"""A SavedModel: TF1's (SavedModelBuilder, simple_save, an Estimator's export) and TF2's (tf.saved_model.save of a
tf.Module with tf.function signatures, Keras 3's model.export()) alike, loaded as TensorFlow's migration guide loads
them into a TF1 session: `tf.compat.v1.saved_model.load(session, tags, folder)` imports the meta-graph of that tag
set into the session's graph and restores its variables (and runs its init op, for TF2's resources and tables).

The meta-graph is read first, to say in one line what does not fit: a tag set it does not hold (the ones it holds
named), an op this TensorFlow lacks, a signature it does not declare (the ones it declares named).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import tensorflow.compat.v1 as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from tfscoring.config import Settings
from tfscoring.errors import StartupError
from tfscoring.tf import ops, signature
from tfscoring.tf.imported import Imported
from tfscoring.tf.messages import first_line
from tfscoring.tf.tensors import served_tensors


def load(folder: Path, settings: Settings, session: tf.Session) -> Imported:
    """Load the SavedModel's meta-graph of SAVED_MODEL_TAGS into the session, its variables restored."""
    tags = settings.saved_model_tag_set
    meta_graph = _meta_graph(folder, tags)
    where = f"SavedModel {folder}"
    ops.require_registered(meta_graph.graph_def, where)

    def read_signature() -> signature.Signature:  # where a side is not set
        chosen = signature.choose(meta_graph.signature_def, where, settings)
        if chosen is None:
            raise StartupError(
                f"{where} declares no signature: set INPUT_TENSOR and OUTPUT_TENSOR to the tensors to serve"
            )
        return chosen

    served = served_tensors(settings, read_signature, str(folder))
    try:
        with _deprecation_silenced():  # "use tf.saved_model.load instead": this is the TF1 session's way
            # clear_devices: run where this worker is pinned, not where the model was exported.
            tf.saved_model.load(session, tags, str(folder), clear_devices=True)
    except Exception as err:  # protobuf and TF raise many types for a corrupt file
        raise StartupError(f"cannot load SavedModel {folder}: {first_line(err)}") from None
    return Imported(served, folder)


def _meta_graph(folder: Path, tags: list[str]) -> meta_graph_pb2.MetaGraphDef:
    """The SavedModel's meta-graph of exactly that tag set (StartupError: unreadable, or no such tag set)."""
    saved = saved_model_pb2.SavedModel()
    file = folder / "saved_model.pb"
    try:
        if file.is_file():
            saved.ParseFromString(file.read_bytes())
        else:
            file = folder / "saved_model.pbtxt"
            text_format.Parse(file.read_text(), saved)
    except Exception as err:  # protobuf raises DecodeError, ParseError and others for a corrupt file
        raise StartupError(f"cannot read SavedModel {file}: {first_line(err)}") from None
    if not saved.meta_graphs:  # an empty or truncated file may parse as an empty SavedModel
        raise StartupError(f"cannot read SavedModel {file}: it holds no meta-graph")
    held = [sorted(graph.meta_info_def.tags) for graph in saved.meta_graphs]
    for graph, graph_tags in zip(saved.meta_graphs, held, strict=True):
        if graph_tags == tags:
            return graph
    shown = "; ".join(",".join(t) or "(no tags)" for t in held) or "none"
    raise StartupError(
        f"SavedModel {folder} has no meta-graph tagged {','.join(tags)} (SAVED_MODEL_TAGS); its tag sets: {shown}"
    )


def _deprecation_silenced() -> contextlib.AbstractContextManager:
    try:
        from tensorflow.python.util import deprecation

        return deprecation.silence()
    except (ImportError, AttributeError):  # private: where a TensorFlow no longer has it, the warning shows
        return contextlib.nullcontext()

"""The model's interface as its meta-graph declares it: the serving signature (`signature_def`).

A meta-graph exported with a signature (a checkpoint's .meta, each meta-graph of a SavedModel) names its inputs and
outputs by key, each bound to a tensor with a dtype and a shape.  The signature served is the one SIGNATURE_NAME
names (`serving_default` by default), or, where that default is absent, the only one.  A meta-graph without
signatures (the how-to's) is served through the INPUT_TENSOR and OUTPUT_TENSOR settings instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tensorflow.core.protobuf import meta_graph_pb2

from tfscoring.config import Settings
from tfscoring.errors import StartupError

SERVING_DEFAULT = "serving_default"  # TF Serving's key for the signature a client gets without naming one


@dataclass(frozen=True)
class Signature:
    key: str
    inputs: dict[str, str]  # input key -> tensor name, e.g. {"images": "input/images:0"}
    outputs: dict[str, str]


def read_meta_graph(meta: Path) -> meta_graph_pb2.MetaGraphDef:
    """The meta-graph file, parsed (StartupError: it cannot be)."""
    graph = meta_graph_pb2.MetaGraphDef()
    try:
        graph.ParseFromString(meta.read_bytes())
    except Exception as err:  # protobuf raises DecodeError and others for a corrupt file
        raise StartupError(f"cannot read meta-graph {meta}: {err}") from None
    return graph


def choose(
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef], where: str, settings: Settings
) -> Signature | None:
    """The signature SIGNATURE_NAME names in a meta-graph (`where` says which, for messages), or None when it declares
    none.  Where SIGNATURE_NAME is not set and its default is absent, the only signature is served."""
    name, named = settings.signature_name, "signature_name" in settings.model_fields_set
    keys = sorted(key for key in signature_defs if not key.startswith("__"))  # TF 2's __saved_model_init_op: no model
    if named and name not in keys:
        raise StartupError(
            f"signature {name!r} (SIGNATURE_NAME) is not in {where}; its signatures: {', '.join(keys) or 'none'}"
        )
    if not keys:
        return None
    if name in keys:
        key = name
    elif len(keys) == 1:
        key = keys[0]
    else:
        raise StartupError(
            f"{where} has {len(keys)} signatures ({', '.join(keys)}) and none is {name!r}; set SIGNATURE_NAME to the "
            "one to serve, or INPUT_TENSOR and OUTPUT_TENSOR to the tensors to serve"
        )
    signature = signature_defs[key]
    return Signature(
        key,
        {name: info.name for name, info in sorted(signature.inputs.items())},
        {name: info.name for name, info in sorted(signature.outputs.items())},
    )

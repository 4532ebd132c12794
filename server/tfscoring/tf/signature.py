"""The model's interface as its meta-graph declares it: the serving signature (`signature_def`).

A meta-graph exported with a signature names its inputs and outputs by key, each
bound to a tensor with a dtype and a shape.  The signature served is the one keyed
`serving_default`, or the only one.  A meta-graph without signatures (the how-to's)
is served through the INPUT_TENSOR and OUTPUT_TENSOR settings instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tensorflow.core.protobuf import meta_graph_pb2

from tfscoring.errors import StartupError

SERVING_DEFAULT = "serving_default"  # TF Serving's key for the signature a client gets without naming one


@dataclass(frozen=True)
class Signature:
    key: str
    inputs: dict[str, str]  # input key -> tensor name, e.g. {"images": "input/images:0"}
    outputs: dict[str, str]


def read(meta: Path) -> Signature | None:
    """The serving signature of the meta-graph file, or None when it declares none."""
    graph = meta_graph_pb2.MetaGraphDef()
    try:
        graph.ParseFromString(meta.read_bytes())
    except Exception as err:  # protobuf raises DecodeError and others for a corrupt file
        raise StartupError(f"cannot read meta-graph {meta}: {err}") from None
    keys = sorted(graph.signature_def)
    if not keys:
        return None
    if SERVING_DEFAULT in keys:
        key = SERVING_DEFAULT
    elif len(keys) == 1:
        key = keys[0]
    else:
        raise StartupError(
            f"meta-graph {meta} has {len(keys)} signatures ({', '.join(keys)}) and none is {SERVING_DEFAULT!r}; "
            "set INPUT_TENSOR and OUTPUT_TENSOR to the tensors to serve"
        )
    chosen = graph.signature_def[key]
    return Signature(
        key,
        {name: info.name for name, info in sorted(chosen.inputs.items())},
        {name: info.name for name, info in sorted(chosen.outputs.items())},
    )

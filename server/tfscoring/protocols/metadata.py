"""GET /score (and the Open Inference Protocol's model path): the model's interface in the protocol's model-metadata
form, -1 in a shape for any size."""

from __future__ import annotations

from tfscoring.interface import Interface, TensorSpec
from tfscoring.protocols.codec import Answer, json_answer


def metadata(interface: Interface) -> Answer:
    return json_answer(document(interface))


def document(interface: Interface) -> dict:
    return {
        "name": interface.model_name,
        "versions": [interface.model_version],
        "platform": interface.platform,
        # An input of one value per row says [-1, 1], as Triton does (and perf_analyzer needs); it takes [N] too.
        "inputs": [_tensor(spec, spec.shape or (1,)) for spec in interface.inputs],
        "outputs": [_tensor(spec, spec.shape) for spec in interface.outputs],
    }


def schema(interface: Interface) -> dict:
    """The answer's JSON schema, for /swagger.json."""

    def tensors(specs: tuple[TensorSpec, ...]) -> dict:
        return {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": {"type": "string", "enum": [s.name for s in specs]},
                    "datatype": {"type": "string", "enum": list(dict.fromkeys(s.datatype for s in specs))},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
                },
            },
        }

    return {
        "type": "object",
        "description": "The model's interface in the Open Inference Protocol's model-metadata form.",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string", "enum": [interface.model_name]},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": tensors(interface.inputs),
            "outputs": tensors(interface.outputs),
        },
        "example": document(interface),
    }


def _tensor(spec: TensorSpec, row_shape: tuple[int, ...]) -> dict:
    return {"name": spec.name, "datatype": spec.datatype, "shape": [-1, *row_shape]}

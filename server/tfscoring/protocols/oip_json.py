"""The Open Inference Protocol v2 (KServe, Triton, MLServer), its JSON form.

`{"id", "inputs": [{"name", "shape", "datatype", "data"}], "outputs": [{"name"}]}` -> `{"model_name",
"model_version", "id", "outputs": [{"name", "shape", "datatype", "data"}]}`, data flat in row-major order or
nested to the shape.  Outputs asked for with `binary_data` (Triton's binary tensor data extension) are answered
as bytes after the JSON, whose length the Inference-Header-Content-Length header says; requests may send binary
tensors so too (oip_binary.py).  The form of the protocol's own path, /v2/models/<name>/infer, and of a JSON body
at POST /score whose "inputs" is a list of tensors.
"""

from __future__ import annotations

import numpy as np

from tfscoring.errors import BadRequest
from tfscoring.interface import BYTES, DATATYPES, Batch, Interface
from tfscoring.protocols import decode, schemas, strings, tensors
from tfscoring.protocols.codec import JSON_CONTENT_TYPE, Answer, Decoded, Schema, dumps
from tfscoring.protocols.jsonforms import JsonBody, JsonCodec, check_same_rows, is_tensor_list, names

HEADER_LENGTH = "Inference-Header-Content-Length"  # Triton's binary extension: the JSON part's length


class OipCodec(JsonCodec):
    name = "oip_json"
    claimed_by = '"inputs" as a list of tensors (the Open Inference Protocol)'
    depth = 4  # its document, the "inputs" list, a tensor object and its "data" (the rows)

    def claims(self, document: dict) -> bool:
        return is_tensor_list(document.get("inputs"))

    def example(self, interface: Interface) -> str:
        first = interface.inputs[0]
        shape = ", ".join(["1", *(str(max(n, 1)) for n in first.shape)])
        return (
            f'{{"inputs": [{{"name": "{first.name}", "shape": [{shape}], "datatype": "{first.datatype}", '
            '"data": [...]}]}'
        )

    def read(self, body: JsonBody, interface: Interface) -> Decoded:
        document, binary = body.document, body.binary
        inputs = document.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            first = interface.inputs[0]
            raise BadRequest(
                f'"inputs" must be a non-empty list of tensors, e.g. [{{"name": "{first.name}", "shape": [1, ...], '
                f'"datatype": "{first.datatype}", "data": [...]}}]'
            )
        request_id = document.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise BadRequest(f'"id" must be a string, got {decode.json_type(request_id)}')
        found: dict[str, np.ndarray] = {}
        offset = 0
        for i, tensor in enumerate(inputs):
            if not isinstance(tensor, dict):
                raise BadRequest(f"input tensor {i} is {decode.json_type(tensor)}, not an object")
            name = tensor.get("name")
            spec = interface.input_named(name)
            if spec is None:
                raise BadRequest(
                    f"input {decode.shown(name)} is not the model's; its inputs: {names(interface.inputs)}"
                )
            if spec.name in found:
                raise BadRequest(f"input {spec.name!r} is sent twice")
            where = f"input {decode.shown(name)}"
            declared = tensors.check_datatype(tensor.get("datatype"), spec, where)
            size = _binary_size(tensor, where)
            if size is not None:
                if offset + size > len(binary):
                    raise BadRequest(f"{where} has binary_data_size {size}, past the end of the body's binary data")
                data = binary[offset : offset + size]
                found[spec.name] = body.tensors.from_bytes(data, tensor.get("shape"), declared, spec, where)
                offset += size
            else:
                data = tensor.get("data")
                if not isinstance(data, list):
                    raise BadRequest(f'{where} has no "data" list of values (nor binary_data_size)')
                found[spec.name] = body.tensors.from_flat(data, tensor.get("shape"), declared, spec, where)
        if offset != len(binary):
            raise BadRequest(f"the body has {len(binary) - offset} bytes of binary data that no input claims")
        missing = [spec.name for spec in interface.inputs if spec.name not in found]
        if missing:
            raise BadRequest(
                f"request lacks the input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
            )
        arrays = tuple(found[spec.name] for spec in interface.inputs)
        check_same_rows(arrays, interface)
        wanted, binary_out = _requested_outputs(document, interface)
        return Decoded(arrays, self, request_id, wanted, binary_out)

    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        chosen = decoded.outputs if decoded.outputs is not None else range(len(outputs))
        tensors_out, blobs = [], []
        for index in chosen:
            spec, values = interface.outputs[index], outputs[index]
            tensor = {"name": spec.name, "shape": list(values.shape), "datatype": DATATYPES[values.dtype]}
            if index in decoded.binary:
                blob = _binary(values)
                tensor["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                tensor["data"] = strings.flat_answer(values) if values.dtype == BYTES else values.ravel()
            tensors_out.append(tensor)
        answer = {"model_name": interface.model_name, "model_version": interface.model_version, "outputs": tensors_out}
        if decoded.id is not None:
            answer["id"] = decoded.id
        header = dumps(answer)
        if not blobs:
            return Answer(header, JSON_CONTENT_TYPE)
        headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
        return Answer(header + b"".join(blobs), headers)

    def schema(self, interface: Interface) -> Schema:
        inputs, outputs = interface.inputs, interface.outputs
        request = {
            "type": "object",
            "description": "The Open Inference Protocol's request (v2, as KServe, Triton and MLServer): one tensor per "
            "input, shape [N, ...row shape], data flat in row-major order or nested to the shape"
            + schemas.aliases(interface),
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string", "description": "Echoed in the answer."},
                "inputs": {"type": "array", "minItems": len(inputs), "maxItems": len(inputs), "items": _tensor(inputs)},
                "outputs": {
                    "type": "array",
                    "description": "The outputs to answer (default: all).",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string", "enum": [s.name for s in outputs]}},
                    },
                },
            },
        }
        answer = {
            "type": "object",
            "description": "The Open Inference Protocol's answer: one tensor per output (those asked for), data flat "
            "in row-major order.",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"type": "string", "enum": [interface.model_name]},
                "model_version": {"type": "string", "enum": [interface.model_version]},
                "id": {"type": "string", "description": "The request's id, where it had one."},
                "outputs": {"type": "array", "minItems": 1, "items": _tensor(outputs, True)},
            },
        }
        return Schema({"InferenceRequest": request}, {"InferenceResponse": answer})


CODEC = OipCodec()


def _binary(values: np.ndarray) -> bytes:
    """An output as binary data: little-endian, row-major; byte strings each a 4-byte length and its bytes."""
    if values.dtype == BYTES:
        return strings.length_prefixed(values)
    return np.ascontiguousarray(values, values.dtype.newbyteorder("<")).tobytes()


def _binary_size(tensor: dict, where: str) -> int | None:
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise BadRequest(f'{where} has "parameters" that is not an object')
    size = parameters.get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise BadRequest(f"{where} has binary_data_size {decode.shown(size)}; it must be a byte count")
    return size


def _requested_outputs(document: dict, interface: Interface) -> tuple[tuple[int, ...] | None, frozenset[int]]:
    """The outputs a request asks for (all when it names none) and which of them it wants as binary data."""
    parameters = document.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise BadRequest('"parameters" must be an object')
    all_binary = parameters.get("binary_data_output") is True
    asked = document.get("outputs")
    if not asked:  # absent or empty: every output, as Triton answers
        every = tuple(range(len(interface.outputs)))
        return None, frozenset(every if all_binary else ())
    if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
        raise BadRequest('"outputs" must be a list of objects naming outputs, e.g. [{"name": "..."}]')
    wanted, binary = [], set()
    for output in asked:
        spec = interface.output_named(output.get("name"))
        if spec is None:
            raise BadRequest(
                f"output {decode.shown(output.get('name'))} is not the model's; its outputs: {names(interface.outputs)}"
            )
        index = interface.outputs.index(spec)
        if index not in wanted:
            wanted.append(index)
        options = output.get("parameters")
        if options is None:
            options = {}
        if not isinstance(options, dict):  # an empty list too, as the request's and the inputs' "parameters"
            raise BadRequest(f'output {spec.name!r} has "parameters" that is not an object')
        if options.get("binary_data", all_binary) is True:
            binary.add(index)
    return tuple(wanted), frozenset(binary)


def _tensor(specs, answer: bool = False) -> dict:
    """A tensor of one of `specs`: data flat in row-major order (or nested, in requests)."""
    values = list({repr(v): v for v in (schemas.value(s.dtype, answer) for s in specs)}.values())
    items = schemas.either("A value", values if answer else [*values, {"type": "array", "description": "nested rows"}])
    datatypes = [s.datatype for s in specs] if answer else [name for s in specs for name in schemas.takes(s)]
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "enum": [s.name for s in specs]},
            "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": list(dict.fromkeys(datatypes))},
            "data": {"type": "array", "items": items},
        },
    }

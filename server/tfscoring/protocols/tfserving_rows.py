"""TF Serving's row form (REST predict API, g3doc/api_rest.md): `{"instances": [...]}` -> `{"predictions": [...]}`.

An instance is one row: the input's value, or an object keyed by input names (always, for several inputs).  One
output answers its values, several an object keyed by output names for each row.  A byte string (a string input's
value, a string output's) is `{"b64": "<base64>"}` or text (strings.py).
"""

from __future__ import annotations

from tfscoring.errors import BadRequest
from tfscoring.interface import Batch, Interface
from tfscoring.protocols import decode, schemas, strings
from tfscoring.protocols.codec import Answer, Decoded, Schema, answer_outputs, json_answer
from tfscoring.protocols.jsonforms import JsonBody, JsonCodec, check_names, names, value_of


class RowsCodec(JsonCodec):
    name = "tfserving_rows"
    claimed_by = '"instances" (TF Serving\'s row form)'
    depth = 3  # its document, "instances" (the rows) and an instance naming the inputs

    def claims(self, document: dict) -> bool:
        return "instances" in document

    def read(self, body: JsonBody, interface: Interface) -> Decoded:
        if "inputs" in body.document:
            raise BadRequest('body has both "instances" and "inputs"; TF Serving\'s forms take one or the other')
        instances = body.document.get("instances")
        if not isinstance(instances, list) or not instances:
            raise BadRequest(
                f'"instances" must be a non-empty list of inputs, one per row, got {decode.json_type(instances)}'
            )
        if len(interface.inputs) == 1 and not all(_names_inputs(instance, interface) for instance in instances):
            return Decoded((body.tensors.from_json(instances, interface.inputs[0], '"instances"'),), self)
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise BadRequest(
                    f"instance {i} is {decode.json_type(instance)}; with {len(interface.inputs)} inputs each "
                    f"instance is an object naming them: {names(interface.inputs)}"
                )
            check_names(instance, interface, f"instance {i}")
        body.tensors.limits.check_rows(len(instances), '"instances"')
        arrays = tuple(
            body.tensors.from_json(
                [value_of(instance, spec) for instance in instances], spec, f'input {spec.name!r} of "instances"'
            )
            for spec in interface.inputs
        )
        return Decoded(arrays, self)

    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        outputs = answer_outputs(interface.outputs, outputs)
        if len(outputs) == 1:
            return json_answer({"predictions": outputs[0]})
        specs = interface.outputs
        rows = range(len(outputs[0]))
        return json_answer({"predictions": [{s.name: o[i] for s, o in zip(specs, outputs, strict=True)} for i in rows]})

    def schema(self, interface: Interface) -> Schema:
        inputs, outputs = interface.inputs, interface.outputs
        instance = schemas.named(inputs, schemas.row)
        if len(inputs) == 1:
            alternatives = [schemas.row(inputs[0]), instance]
            instance = schemas.either("The input's row, or an object naming the input", alternatives)
        request = {
            "type": "object",
            "description": "TF Serving's row form: one instance per row"
            + (" (an object keyed by input names)" if len(inputs) > 1 else "")
            + schemas.aliases(interface),
            "required": ["instances"],
            "properties": {
                "instances": {"type": "array", "minItems": 1, "items": instance},
                **schemas.signature(interface),
            },
        }
        single = len(outputs) == 1
        prediction = (
            schemas.nested(outputs[0], True)
            if single
            else schemas.named(outputs, lambda spec: schemas.nested(spec, True), True)
        )
        answer = {
            "type": "object",
            "description": "The answer of TF Serving's row form: one prediction per row"
            + ("" if single else ", an object keyed by output names"),
            "required": ["predictions"],
            "properties": {"predictions": {"type": "array", "items": prediction}},
        }
        return Schema({"PredictRequest": request}, {"PredictResponse": answer})


CODEC = RowsCodec()


def _names_inputs(instance: object, interface: Interface) -> bool:
    """An instance that is an object keyed by input names; for a string input, a byte string's {"b64": ...} is a
    value (TF Serving's rule), not an input named "b64" (and one with other keys too, a value refused as such)."""
    if not isinstance(instance, dict):
        return False
    if not interface.inputs[0].strings or strings.B64 not in instance:
        return True
    return not strings.is_b64(instance) and interface.input_named(strings.B64) is not None

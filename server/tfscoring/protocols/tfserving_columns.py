"""TF Serving's columnar form (REST predict API, g3doc/api_rest.md): `{"inputs": value or {name: value}}` ->
`{"outputs": value or {name: value}}`.

A value holds all the rows of one input; a model of one input takes it alone, several inputs an object keyed by
input names.  One output answers its values, several an object keyed by output names.  A list of tensors under
"inputs" is the Open Inference Protocol's request (oip_json.py), not this form.
"""

from __future__ import annotations

from tfscoring.interface import Batch, Interface
from tfscoring.protocols import schemas, strings
from tfscoring.protocols.codec import Answer, Decoded, Schema, answer_outputs, example, json_answer, only_input
from tfscoring.protocols.jsonforms import (
    JsonBody,
    JsonCodec,
    check_names,
    check_same_rows,
    is_tensor_list,
    named_outputs,
    value_of,
)


class ColumnsCodec(JsonCodec):
    name = "tfserving_columns"
    claimed_by = '"inputs" (TF Serving\'s columnar form)'
    depth = 3  # its document, "inputs" naming the inputs and each input's rows

    def claims(self, document: dict) -> bool:
        return "inputs" in document and not is_tensor_list(document["inputs"])  # that is the Open Inference Protocol

    def example(self, interface: Interface) -> str:
        if interface.howto_width:
            return f'{{"inputs": [[{interface.howto_width} numbers], ...]}}'
        return example(interface)  # the inputs by name, in this form

    def read(self, body: JsonBody, interface: Interface) -> Decoded:
        inputs = body.document.get("inputs")
        request_example = self.example(interface)  # shown where an input's rows are no list
        if not isinstance(inputs, dict) or (interface.inputs[0].strings and strings.is_b64(inputs)):
            spec = only_input(interface, 'the columnar form {"inputs": value}')
            return Decoded((body.tensors.from_json(inputs, spec, '"inputs"', request_example),), self)
        check_names(inputs, interface, '"inputs"')
        arrays = tuple(
            body.tensors.from_json(value_of(inputs, spec), spec, f"input {spec.name!r}", request_example)
            for spec in interface.inputs
        )
        check_same_rows(arrays, interface)
        return Decoded(arrays, self)

    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        outputs = answer_outputs(interface.outputs, outputs)
        return json_answer({"outputs": outputs[0] if len(outputs) == 1 else named_outputs(interface.outputs, outputs)})

    def schema(self, interface: Interface) -> Schema:
        inputs, outputs = interface.inputs, interface.outputs
        columns = schemas.named(inputs, schemas.rows)
        if len(inputs) == 1:
            columns = schemas.either(
                "The input's rows, or an object naming the input", [schemas.rows(inputs[0]), columns]
            )
        request = {
            "type": "object",
            "description": "TF Serving's columnar form: each input's rows"
            + (" in an object keyed by input names" if len(inputs) > 1 else "")
            + schemas.aliases(interface),
            "required": ["inputs"],
            "properties": {"inputs": columns, **schemas.signature(interface)},
        }
        single = len(outputs) == 1
        columns_out = schemas.answer_rows(outputs[0]) if single else schemas.named(outputs, schemas.answer_rows, True)
        answer = {
            "type": "object",
            "description": "The answer of TF Serving's columnar form: "
            + ("the output's rows" if single else "each output's rows in an object keyed by output names"),
            "required": ["outputs"],
            "properties": {"outputs": columns_out},
        }
        return Schema({"ColumnarRequest": request}, {"ColumnarResponse": answer})


CODEC = ColumnsCodec()

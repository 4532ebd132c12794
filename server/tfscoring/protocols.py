"""The JSON request forms POST /score takes, and the answer each one expects.

- the how-to's `{"data": [...]}` (one-input models): rows nested to the input's shape, or flat; answered
  with class ids (argmax of a one-output model's scores, DATA_ANSWER=class_ids) or the outputs;
- TF Serving's REST predict API (g3doc/api_rest.md): row form `{"instances": [...]}` ->
  `{"predictions": [...]}`, an instance being the input's value, or an object keyed by input names
  (several inputs: always); columnar form `{"inputs": value or {name: value}}` -> `{"outputs": value or
  {name: value}}`; one output answers its values, several an object keyed by output names;
- the Open Inference Protocol v2 (KServe, Triton, MLServer): `{"id", "inputs": [{"name", "shape",
  "datatype", "data"}], "outputs": [{"name"}]}` -> `{"model_name", "model_version", "id", "outputs":
  [{"name", "shape", "datatype", "data"}]}`, data flat in row-major order or nested to the shape, and
  Triton's binary tensor data extension (a JSON header of Inference-Header-Content-Length bytes, then
  each binary tensor's bytes), both ways.

Every input is validated on its own (tensors.py) and all of them must have the same number of rows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import orjson
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring import decode, tensors
from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import DATATYPES, Batch, Interface, TensorSpec

HEADER_LENGTH = "Inference-Header-Content-Length"  # Triton's binary extension: the JSON part's length


class Form(enum.Enum):
    HOWTO = "data"
    ROW = "instances"
    COLUMNAR = "inputs"
    OIP = "open inference protocol"


@dataclass
class Request:
    """A decoded request: each input's rows, and how to answer."""

    rows: Batch  # one array per input of the interface, in its order
    form: Form
    id: str | None = None  # the Open Inference Protocol's request id, echoed
    outputs: tuple[int, ...] | None = None  # the outputs asked for (indices), None: all
    binary: frozenset[int] = field(default_factory=frozenset)  # outputs to answer as binary data


_TENSOR_KEYS = {"name", "shape", "datatype"}  # an Open Inference Protocol input tensor has these
_JSON = {"Content-Type": "application/json"}


def decode_json(
    body: bytes, interface: Interface, max_rows: int, header_length: str | None = None, oip_only: bool = False
) -> Request:
    """The request in any JSON form.  `header_length`: the Inference-Header-Content-Length header, where sent;
    `oip_only`: the request came to an Open Inference Protocol path, so that is its form."""
    binary = b""
    if header_length is not None:
        body, binary = _split_binary(body, header_length)
    width = interface.howto_width
    if width and not binary and not oip_only:
        rows = decode.fast_rows(body, width, max_rows)  # counts the values first, as below
        if rows is not None:
            return Request((rows,), Form.HOWTO)
    else:
        _check_value_count(body, interface, max_rows)
    document = decode.parse_object(body, _oip_example(interface) if oip_only else _example(interface))
    booleans = b"true" in body or b"false" in body  # only then is a boolean among numbers worth looking for
    if oip_only or binary:
        return _oip(document, interface, max_rows, binary, booleans)
    _check_signature_name(document, interface)
    if "data" in document:
        return Request(_data(document["data"], interface, max_rows, booleans), Form.HOWTO)
    if "instances" in document and "inputs" in document:
        raise BadRequest('body has both "instances" and "inputs"; TF Serving\'s forms take one or the other')
    if "instances" in document:
        return Request(_instances(document["instances"], interface, max_rows, booleans), Form.ROW)
    if "inputs" in document:
        inputs = document["inputs"]
        if isinstance(inputs, list) and inputs and all(isinstance(i, dict) and _TENSOR_KEYS & i.keys() for i in inputs):
            return _oip(document, interface, max_rows, b"", booleans)
        return Request(_columnar(inputs, interface, max_rows, booleans), Form.COLUMNAR)
    raise BadRequest(
        'body has none of "data" (the how-to\'s form), "instances" or "inputs" (TF Serving\'s row and columnar '
        'forms) or "inputs" as a list of tensors (the Open Inference Protocol); e.g. ' + _example(interface)
    )


def answer(request: Request, outputs: Batch, interface: Interface) -> AMLResponse:
    """The answer in the form the request came in."""
    specs = interface.outputs
    if request.form is Form.HOWTO:
        if len(outputs) == 1 and interface.data_answer == "class_ids":
            body = _class_ids(outputs[0])
        else:
            body = outputs[0] if len(outputs) == 1 else _named(specs, outputs)
    elif request.form is Form.ROW:
        if len(outputs) == 1:
            body = {"predictions": outputs[0]}
        else:
            body = {"predictions": [{s.name: o[i] for s, o in zip(specs, outputs, strict=True)} for i in range(
                len(outputs[0]))]}  # fmt: skip
    elif request.form is Form.COLUMNAR:
        body = {"outputs": outputs[0] if len(outputs) == 1 else _named(specs, outputs)}
    else:
        return _oip_answer(request, outputs, interface)
    return AMLResponse(_dumps(body), 200, _JSON)


def metadata(interface: Interface) -> AMLResponse:
    """GET /score: the model's interface in the Open Inference Protocol's model-metadata form (-1: any size)."""
    return AMLResponse(_dumps(metadata_document(interface)), 200, _JSON)


def metadata_document(interface: Interface) -> dict:
    return {
        "name": interface.model_name,
        "versions": [interface.model_version],
        "platform": "tensorflow_graphdef",
        # An input of one value per row says [-1, 1], as Triton does (and perf_analyzer needs); it takes [N] too.
        "inputs": [_tensor_metadata(spec, spec.shape or (1,)) for spec in interface.inputs],
        "outputs": [_tensor_metadata(spec, spec.shape) for spec in interface.outputs],
    }


def _tensor_metadata(spec: TensorSpec, row_shape: tuple[int, ...]) -> dict:
    return {"name": spec.name, "datatype": spec.datatype, "shape": [-1, *row_shape]}


def _class_ids(scores: np.ndarray) -> np.ndarray:
    """The how-to's answer: the argmax of each row's scores; an output of one value per row as it is."""
    if scores.ndim == 2 and scores.shape[1] > 1 and scores.dtype.kind == "f":
        return scores.argmax(axis=1)
    if scores.ndim == 2 and scores.shape[1] == 1:
        return scores[:, 0]
    return scores


def _named(specs: tuple[TensorSpec, ...], outputs: Batch) -> dict:
    return {spec.name: output for spec, output in zip(specs, outputs, strict=True)}


def _dumps(body: object) -> bytes:
    # numpy arrays straight to JSON; NaN and infinities (which a model may answer) become null.
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY, default=_to_list)


def _to_list(value: object) -> object:
    if isinstance(value, (np.ndarray, np.generic)):  # e.g. a non-contiguous array, which orjson leaves to this
        return value.tolist()
    raise TypeError


def _example(interface: Interface) -> str:
    if interface.howto_width:
        return decode.expected_shape(interface.howto_width)
    names = ", ".join(f'"{spec.name}": [{_rows_of(spec)}]' for spec in interface.inputs)
    return f'{{"inputs": {{{names}}}}}'


def _oip_example(interface: Interface) -> str:
    first = interface.inputs[0]
    shape = ", ".join(["1", *(str(max(n, 1)) for n in first.shape)])
    return (
        f'{{"inputs": [{{"name": "{first.name}", "shape": [{shape}], "datatype": "{first.datatype}", "data": [...]}}]}}'
    )


def _rows_of(spec: TensorSpec) -> str:
    return f"rows of shape ({spec.shown()[4:]}" if spec.shape else "one value per row"


def _check_value_count(body: bytes, interface: Interface, max_rows: int) -> None:
    """As decode.fast_rows does for the how-to's rows: refuse, before parsing (which takes some 40 bytes per
    value), a body holding far more values than a request of fixed-shape inputs can (twice a full one)."""
    if interface.bounded_json:
        most = 2 * max_rows * sum(max(spec.row_size, 1) for spec in interface.inputs)
        if body.count(b",") > most:
            raise PayloadTooLarge(
                f"body holds more than {most} values; a request takes at most {max_rows} rows (MAX_REQUEST_ROWS) of "
                + interface.input_list()
            )


def _check_signature_name(document: dict, interface: Interface) -> None:
    """TF Serving's `signature_name`: the one signature served (serving_default where the graph has none)."""
    name = document.get("signature_name")
    served = interface.signature_key or "serving_default"
    if name is not None and name != served:
        raise BadRequest(f"signature_name {name!r} is not served; this server serves {served!r}")


def only_input(interface: Interface, form: str) -> TensorSpec:
    """The input of a one-input model, for a form that has no names; a 400 for a model with several."""
    if len(interface.inputs) != 1:
        raise BadRequest(
            f"{form} is for a model with one input; this model has {len(interface.inputs)} "
            f"({interface.input_list()}): name each, e.g. {_example(interface)}"
        )
    return interface.inputs[0]


def _data(data: object, interface: Interface, max_rows: int, booleans: bool) -> Batch:
    spec = only_input(interface, 'the how-to\'s {"data": ...} form')
    return (tensors.from_json(data, spec, max_rows, '"data"', booleans),)


def _instances(instances: object, interface: Interface, max_rows: int, booleans: bool) -> Batch:
    if not isinstance(instances, list) or not instances:
        raise BadRequest(
            f'"instances" must be a non-empty list of inputs, one per row, got {decode.json_type(instances)}'
        )
    if len(interface.inputs) == 1 and not all(isinstance(instance, dict) for instance in instances):
        return (tensors.from_json(instances, interface.inputs[0], max_rows, "instances", booleans),)
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise BadRequest(
                f"instance {i} is {decode.json_type(instance)}; with {len(interface.inputs)} inputs each instance "
                f"is an object naming them: {_names(interface.inputs)}"
            )
        _check_names(instance, interface, f"instance {i}")
    if len(instances) > max_rows:
        raise PayloadTooLarge(f'"instances" has {len(instances)} rows; the limit is {max_rows} rows per request')
    rows = []
    for spec in interface.inputs:
        values = [_value_of(instance, spec) for instance in instances]
        rows.append(tensors.from_json(values, spec, max_rows, f"input {spec.name!r} of instances", booleans))
    return tuple(rows)


def _columnar(inputs: object, interface: Interface, max_rows: int, booleans: bool) -> Batch:
    if not isinstance(inputs, dict):
        spec = only_input(interface, 'the columnar form {"inputs": value}')
        return (tensors.from_json(inputs, spec, max_rows, '"inputs"', booleans),)
    _check_names(inputs, interface, '"inputs"')
    rows = tuple(
        tensors.from_json(_value_of(inputs, spec), spec, max_rows, f"input {spec.name!r}", booleans)
        for spec in interface.inputs
    )
    _same_rows(rows, interface)
    return rows


def _check_names(named: dict, interface: Interface, where: str) -> None:
    """An object keyed by input names (any of each input's aliases) names each input once and nothing else."""
    found = {}
    for key in named:
        spec = interface.input_named(key)
        if spec is None:
            raise BadRequest(
                f"{where} names {key!r}, which is not an input of the model; its inputs: {_names(interface.inputs)}"
            )
        if spec.name in found:
            raise BadRequest(f"{where} names the input {spec.name!r} twice ({found[spec.name]!r} and {key!r})")
        found[spec.name] = key
    missing = [spec.name for spec in interface.inputs if spec.name not in found]
    if missing:
        raise BadRequest(f"{where} lacks the input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")


def _value_of(named: dict, spec: TensorSpec) -> object:
    return next(value for key, value in named.items() if key in spec.aliases)


def _names(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(repr(spec.name) for spec in specs)


def _same_rows(rows: Batch, interface: Interface) -> None:
    counts = {spec.name: len(array) for spec, array in zip(interface.inputs, rows, strict=True)}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{name!r} {count}" for name, count in counts.items())
        raise BadRequest(f"the inputs have different numbers of rows ({shown}); each row needs a value of every input")


def _split_binary(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} is {header_length!r}; it must be the length in bytes of the JSON at the start of the "
            f"body ({len(body)} bytes)"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _oip(document: dict, interface: Interface, max_rows: int, binary: bytes, booleans: bool) -> Request:
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
            raise BadRequest(f"input {name!r} is not the model's; its inputs: {_names(interface.inputs)}")
        if spec.name in found:
            raise BadRequest(f"input {spec.name!r} is sent twice")
        where = f"input {name!r}"
        declared = tensors.check_datatype(tensor.get("datatype"), spec, where)
        size = _binary_size(tensor, where)
        if size is not None:
            if offset + size > len(binary):
                raise BadRequest(f"{where} has binary_data_size {size}, past the end of the body's binary data")
            rows = tensors.from_bytes(binary[offset : offset + size], tensor.get("shape"), declared, spec, max_rows,
                                      where)  # fmt: skip
            offset += size
        else:
            data = tensor.get("data")
            if not isinstance(data, list):
                raise BadRequest(f'{where} has no "data" list of values (nor binary_data_size)')
            rows = tensors.from_flat(data, tensor.get("shape"), declared, spec, max_rows, where, booleans)
        found[spec.name] = rows
    if offset != len(binary):
        raise BadRequest(f"the body has {len(binary) - offset} bytes of binary data that no input claims")
    missing = [spec.name for spec in interface.inputs if spec.name not in found]
    if missing:
        raise BadRequest(f"request lacks the input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    rows = tuple(found[spec.name] for spec in interface.inputs)
    _same_rows(rows, interface)
    wanted, binary_out = _requested_outputs(document, interface)
    return Request(rows, Form.OIP, request_id, wanted, binary_out)


def _binary_size(tensor: dict, where: str) -> int | None:
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise BadRequest(f'{where} has "parameters" that is not an object')
    size = parameters.get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise BadRequest(f"{where} has binary_data_size {size!r}; it must be a byte count")
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
                f"output {output.get('name')!r} is not the model's; its outputs: {_names(interface.outputs)}"
            )
        index = interface.outputs.index(spec)
        if index not in wanted:
            wanted.append(index)
        options = output.get("parameters") or {}
        if not isinstance(options, dict):
            raise BadRequest(f'output {spec.name!r} has "parameters" that is not an object')
        if options.get("binary_data", all_binary) is True:
            binary.add(index)
    return tuple(wanted), frozenset(binary)


def _oip_answer(request: Request, outputs: Batch, interface: Interface) -> AMLResponse:
    chosen = request.outputs if request.outputs is not None else range(len(outputs))
    tensors_out, blobs = [], []
    for index in chosen:
        spec, values = interface.outputs[index], outputs[index]
        tensor = {"name": spec.name, "shape": list(values.shape), "datatype": DATATYPES[values.dtype]}
        if index in request.binary:
            blob = np.ascontiguousarray(values, values.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = values.ravel()
        tensors_out.append(tensor)
    body = {"model_name": interface.model_name, "model_version": interface.model_version, "outputs": tensors_out}
    if request.id is not None:
        body["id"] = request.id
    header = _dumps(body)
    if not blobs:
        return AMLResponse(header, 200, _JSON)
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return AMLResponse(header + b"".join(blobs), 200, headers)

"""The JSON request forms POST /score takes besides the how-to's, and the answer each one expects.

- the how-to's `{"data": [[...], ...]}`: class ids (decode.py parses it, fast path included);
- TF Serving's REST predict API, row form `{"instances": [...]}` -> `{"predictions": [...]}` and
  columnar form `{"inputs": ...}` -> `{"outputs": ...}` (g3doc/api_rest.md): an instance is the
  input's value, or an object naming the input; the answers are the output's values;
- the Open Inference Protocol v2 (KServe, Triton, MLServer): `{"inputs": [{"name", "shape",
  "datatype", "data"}]}` -> `{"model_name", "model_version", "outputs": [{"name", "shape",
  "datatype", "data"}]}`, data flat in row-major order or nested to the shape.

The model served has one input of shape (N, width) and one output (model.py), named by its
signature's keys, or else by its tensors' op names; a request may name the input by either or
by the tensor's full name.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import orjson
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring import decode
from tfscoring.errors import BadRequest, PayloadTooLarge


class Form(enum.Enum):
    HOWTO = "data"
    ROW = "instances"
    COLUMNAR = "inputs"
    OIP = "open inference protocol"


@dataclass(frozen=True)
class Interface:
    """What clients call the model and its one input and output."""

    model_name: str
    model_version: str
    input_names: tuple[str, ...]  # the first is the name answers use; any of them is accepted
    output_name: str
    width: int
    output_shape: tuple[int, ...] = ()  # one output row's shape, e.g. (10,)
    output_datatype: str = "FP32"


# Open Inference Protocol datatypes a float32 input can take without losing meaning.
_NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
# The Open Inference Protocol's name of each numpy dtype an output may have (model.py refuses others).
DATATYPES = {
    np.dtype(t): name
    for t, name in [
        (np.bool_, "BOOL"), (np.float16, "FP16"), (np.float32, "FP32"), (np.float64, "FP64"),
        (np.int8, "INT8"), (np.int16, "INT16"), (np.int32, "INT32"), (np.int64, "INT64"),
        (np.uint8, "UINT8"), (np.uint16, "UINT16"), (np.uint32, "UINT32"), (np.uint64, "UINT64"),
    ]
}  # fmt: skip
_TENSOR_KEYS = {"name", "shape", "datatype"}  # an Open Inference Protocol input tensor has these
_JSON = {"Content-Type": "application/json"}


def decode_json(body: bytes, interface: Interface, max_rows: int) -> tuple[np.ndarray, Form, object]:
    """Rows of any JSON form, the form, and the request's `id` (Open Inference Protocol) to echo."""
    rows = decode.fast_rows(body, interface.width, max_rows)
    if rows is not None:
        return rows, Form.HOWTO, None
    document = decode.parse_object(body, interface.width)
    if "data" in document:
        return decode.to_batch(document["data"], interface.width, max_rows), Form.HOWTO, None
    if "instances" in document and "inputs" in document:
        raise BadRequest('body has both "instances" and "inputs"; TF Serving\'s forms take one or the other')
    if "instances" in document:
        return _instances(document["instances"], interface, max_rows), Form.ROW, None
    if "inputs" in document:
        inputs = document["inputs"]
        if isinstance(inputs, list) and inputs and all(isinstance(i, dict) and _TENSOR_KEYS & i.keys() for i in inputs):
            return _oip_inputs(inputs, interface, max_rows), Form.OIP, document.get("id")
        return _columnar(inputs, interface, max_rows), Form.COLUMNAR, None
    raise BadRequest(
        'body has none of "data" (the how-to\'s form), "instances" or "inputs" (TF Serving\'s row and columnar '
        'forms) or "inputs" as a list of tensors (the Open Inference Protocol); e.g. '
        + decode.expected_shape(interface.width)
    )


def answer(form: Form, outputs: np.ndarray, interface: Interface, request_id: object = None) -> AMLResponse:
    """The answer in the form the request came in."""
    if form is Form.HOWTO:  # class ids from scores, as the how-to; an output of one value per row as it is
        if outputs.ndim == 2 and outputs.shape[1] > 1 and outputs.dtype.kind == "f":
            body = outputs.argmax(axis=1)
        elif outputs.ndim == 2 and outputs.shape[1] == 1:
            body = outputs[:, 0]
        else:
            body = outputs
    elif form is Form.ROW:
        body = {"predictions": outputs}
    elif form is Form.COLUMNAR:
        body = {"outputs": outputs}
    else:
        body = {
            "model_name": interface.model_name,
            "model_version": interface.model_version,
            "outputs": [
                {
                    "name": interface.output_name,
                    "shape": list(outputs.shape),
                    "datatype": DATATYPES[outputs.dtype],
                    "data": outputs.ravel(),
                }
            ],
        }
        if request_id is not None:
            body["id"] = request_id
    return AMLResponse(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), 200, _JSON)


def metadata(interface: Interface) -> AMLResponse:
    """GET /score: the model's interface in the Open Inference Protocol's model-metadata form (-1: any rows)."""
    body = {
        "name": interface.model_name,
        "versions": [interface.model_version],
        "platform": "tensorflow_graphdef",
        "inputs": [{"name": interface.input_names[0], "datatype": "FP32", "shape": [-1, interface.width]}],
        "outputs": [
            {
                "name": interface.output_name,
                "datatype": interface.output_datatype,
                "shape": [-1, *interface.output_shape],
            }
        ],
    }
    return AMLResponse(orjson.dumps(body), 200, _JSON)


def _instances(instances: object, interface: Interface, max_rows: int) -> np.ndarray:
    if not isinstance(instances, list) or not instances:
        raise BadRequest(
            f'"instances" must be a non-empty list of inputs, one per row, got {decode.json_type(instances)}'
        )
    if all(isinstance(instance, dict) for instance in instances):  # each instance names its input(s)
        instances = [_named(instance, interface, f"instance {i}") for i, instance in enumerate(instances)]
    return decode.to_batch(instances, interface.width, max_rows, field="instances")


def _columnar(inputs: object, interface: Interface, max_rows: int) -> np.ndarray:
    if isinstance(inputs, dict):
        inputs = _named(inputs, interface, '"inputs"')
    return decode.to_batch(inputs, interface.width, max_rows, field="inputs")


def _named(value: dict, interface: Interface, where: str) -> object:
    """The value of the model's one input in an object keyed by input names."""
    unknown = sorted(set(value) - set(interface.input_names))
    if unknown or len(value) != 1:
        raise BadRequest(f"{where} names inputs {sorted(value)}; the model has one input, {interface.input_names[0]!r}")
    return next(iter(value.values()))


def _oip_inputs(inputs: list[dict], interface: Interface, max_rows: int) -> np.ndarray:
    if len(inputs) != 1:
        raise BadRequest(f"request has {len(inputs)} input tensors; the model has one, {interface.input_names[0]!r}")
    tensor = inputs[0]
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if name not in interface.input_names:
        raise BadRequest(f"input {name!r} is not the model's; its input is {interface.input_names[0]!r}")
    if datatype is None:
        raise BadRequest(f'input {name!r} has no "datatype"; e.g. "FP32"')
    if not isinstance(datatype, str) or datatype not in _NUMERIC:
        raise BadRequest(f'input {name!r} has datatype {datatype!r}; the model takes numbers ("FP32", "INT64", ...)')
    width = interface.width
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(type(n) is int for n in shape)
        or shape[0] < 1
        or shape[1] != width
    ):
        raise BadRequest(f"input {name!r} has shape {shape!r}; expected [N, {width}] with N >= 1")
    if shape[0] > max_rows:
        raise PayloadTooLarge(f"input {name!r} has {shape[0]} rows; the limit is {max_rows} rows per request")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise BadRequest(f'input {name!r} has no "data" list of {shape[0] * width} numbers')
    if data and isinstance(data[0], list):  # nested to the shape: the rows themselves
        if len(data) != shape[0]:
            raise BadRequest(f"input {name!r} has {len(data)} rows of data; its shape {shape} says {shape[0]}")
        return decode.to_batch(data, width, max_rows, field=f"input {name!r}")
    if len(data) != math.prod(shape):
        raise BadRequest(f"input {name!r} has {len(data)} values; its shape {shape} needs {math.prod(shape)}")
    return decode.to_batch([data[i : i + width] for i in range(0, len(data), width)], width, max_rows,
                           field=f"input {name!r}")  # fmt: skip

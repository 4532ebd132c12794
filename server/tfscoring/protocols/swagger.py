"""GET /swagger.json: the API's documents, generated at start-up from the model's interface.

documents() builds the OpenAPI 3.0 document from a skeleton of what does not depend on the model (paths,
headers, error answers, the API key) and JSON-schema fragments built from the interface's TensorSpecs (the
request forms of protocols.py, their answers, GET /score's model metadata).  The Swagger 2.0 document is
converted from it; 2.0 has no anyOf and no nullable (x-nullable instead), so there the request is its
first form (the how-to's, where the model has one input) with the other forms' keys, an alternative inside
a request its first one, and the answer any JSON.  The 3.1 document is the 3.0 one under its version, with
`nullable` written as 3.1 writes it (a "null" type).

install() makes azmlinfsrv serve them instead of swagger{version}.json files.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import partial

import numpy as np

from tfscoring import log
from tfscoring.interface import DATATYPES, Interface, TensorSpec
from tfscoring.protocols import forms as protocols
from tfscoring.protocols import images

REF = "#/components/schemas/"
_RAW = "application/octet-stream"
_NPY = "application/x-npy"
_ERROR = {"content": {"application/json": {"schema": {"$ref": REF + "ErrorResponse"}}}}
_SERVER_ERROR = {"content": {"application/json": {"schema": {"$ref": REF + "ServerError"}}}}
_STATIC_SCHEMAS = {
    "ErrorResponse": {
        "type": "object",
        "description": "A refused request: what is wrong, for the client to fix.",
        "required": ["error"],
        "properties": {"error": {"type": "string", "minLength": 1}},
    },
    "ServerError": {
        "type": "object",
        "description": 'An error of the inference server ({"message": ...}) or of score.py ({"error": ..., '
        '"request_id": ...}).',
        "properties": {"message": {"type": "string"}, "error": {"type": "string"}, "request_id": {"type": "string"}},
    },
}


def documents(interface: Interface) -> dict[str, dict]:
    """{"2": the Swagger 2.0 document, "3": the OpenAPI 3.0 one, "3.1": the OpenAPI 3.1 one} of the API."""
    requests, answers = _request_schemas(interface), _answer_schemas(interface)
    v3 = _openapi3(interface, {**requests, **answers, **_STATIC_SCHEMAS})
    v2_schemas = {name: _each_schema(schema, _swagger2_request) for name, schema in requests.items()}
    v2_schemas["ScoreRequest"] = _merged(requests["ScoreRequest"], v2_schemas)
    v2_schemas |= {name: _each_schema(schema, _swagger2_answer) for name, schema in answers.items()}
    v31 = v3 | {"openapi": "3.1.0"}
    v31["components"] = v3["components"] | {
        "schemas": {name: _each_schema(schema, _openapi31) for name, schema in v3["components"]["schemas"].items()}
    }
    docs = {"2": _swagger2(v3, v2_schemas | _STATIC_SCHEMAS), "3": v3, "3.1": v31}
    return json.loads(json.dumps(docs))  # plain JSON values, no part shared between documents or with this module


def install(docs: dict[str, dict]) -> None:
    """Have azmlinfsrv answer GET /swagger.json (?version=2, 3 or 3.1) with `docs` (see documents()).

    azmlinfsrv builds a document only from inference-schema's decorators, which cannot describe a @rawhttp
    run(); otherwise it serves swagger{version}.json files found in AML_APP_ROOT.  After the entry script's
    init() returns, each worker builds its `Swagger` (aml_blueprint.AMLInferenceBlueprint.setup), whose
    builders, one per version and registered in `Swagger._builder_classes`, call `_read_user_swagger()` and
    generate a document only where it returns none.  init() runs first, so replacing that method on every
    builder class serves these documents for each version and its aliases ("2.0", "3.0"); no file is read.
    A version `docs` lacks keeps azmlinfsrv's own reader.
    """
    from azureml_inference_server_http.server.swagger import Swagger

    builders = Swagger._builder_classes
    # Each class's own reader as azmlinfsrv wrote it (Swagger2Builder's looks for swagger.json first), read
    # before any is replaced: Swagger31Builder inherits Swagger3Builder's.
    originals = [getattr(b._read_user_swagger, "__wrapped__", b._read_user_swagger) for b in builders]
    for builder, original in zip(builders, originals, strict=True):
        builder._read_user_swagger = _reader(docs.get(builder.__version__), original)
    missing = sorted(docs.keys() - {builder.__version__ for builder in builders})
    if missing:
        log.warning("azmlinfsrv has no /swagger.json version %s: the documents for it are not served", missing)


def _reader(doc: dict | None, original: Callable) -> Callable:
    def read_user_swagger(builder) -> dict | None:
        if doc is None:  # a version without a document: azmlinfsrv's own way
            return original(builder)
        return copy.deepcopy(doc)  # each worker's Swagger gets its own: nothing it does changes `doc`

    read_user_swagger.__wrapped__ = original  # a later install() replaces this one, not wraps it
    return read_user_swagger


# The model-specific schemas.


def _value(dtype: np.dtype, answer: bool = False) -> dict:
    """One value of a tensor; in answers a float may be null (orjson writes NaN and infinities so)."""
    if dtype.kind == "b":
        return {"type": "boolean"}
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if answer:
        return {"type": "number", "nullable": True}
    limit = float(np.finfo(dtype).max)
    return {"type": "number", "minimum": -limit, "maximum": limit}


def _nested(spec: TensorSpec, answer: bool = False) -> dict:
    """One row of a tensor: arrays nested to its row shape (any length where the graph leaves it free)."""
    schema = _value(spec.dtype, answer)
    for n in reversed(spec.shape):
        schema = {"type": "array", "items": schema} | ({"minItems": n, "maxItems": n} if n >= 0 else {})
    return schema


def _row(spec: TensorSpec) -> dict:
    """One row of an input in a request: nested to its row shape, or (a fixed shape) its values flat."""
    if len(spec.shape) == 1 or not spec.fixed:
        return _nested(spec)
    flat = {"type": "array", "minItems": spec.row_size, "maxItems": spec.row_size, "items": _value(spec.dtype)}
    if spec.shape:
        how = f"One row: nested to the row shape {list(spec.shape)}, or its {spec.row_size} values flat"
    else:
        how = "One value, or that value alone in a list"
    return _either(how, [_nested(spec), flat])


def _rows(spec: TensorSpec) -> dict:
    return {"type": "array", "minItems": 1, "items": _row(spec)}


def _answer_rows(spec: TensorSpec) -> dict:
    return {"type": "array", "items": _nested(spec, True)}


def _named(specs: tuple[TensorSpec, ...], schema: Callable[[TensorSpec], dict], answer: bool = False) -> dict:
    """An object holding a value per tensor, keyed by their names."""
    named = {"type": "object", "required": [s.name for s in specs], "properties": {s.name: schema(s) for s in specs}}
    return named if answer else named | {"additionalProperties": False}


def _either(description: str, alternatives: list[dict]) -> dict:
    return {"description": description, "anyOf": alternatives} if len(alternatives) > 1 else alternatives[0]


def _takes(spec: TensorSpec) -> list[str]:
    """The Open Inference Protocol datatypes an input takes: its own first; a float input any number type, an
    integer input any integer type (the values must fit)."""
    kinds = {"b": "b", "i": "iu", "u": "iu"}.get(spec.dtype.kind, "iuf")
    return [spec.datatype, *(name for dtype, name in DATATYPES.items() if dtype.kind in kinds)]


def _tensor(specs: tuple[TensorSpec, ...], answer: bool = False) -> dict:
    """An Open Inference Protocol tensor of one of `specs`: data flat in row-major order (or nested, in requests)."""
    values = list({repr(v): v for v in (_value(s.dtype, answer) for s in specs)}.values())
    items = _either("A value", values if answer else [*values, {"type": "array", "description": "nested rows"}])
    datatypes = [s.datatype for s in specs] if answer else [name for s in specs for name in _takes(s)]
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


def _class_count(interface: Interface) -> int | None:
    """The classes where the how-to's form answers class ids: argmax of one float output of shape (N, k), k > 1."""
    outputs = interface.outputs
    if interface.data_answer != "class_ids" or len(outputs) != 1:
        return None
    (spec,) = outputs
    return spec.shape[0] if spec.dtype.kind == "f" and len(spec.shape) == 1 and spec.shape[0] > 1 else None


def _shown(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name!r} {s.datatype} {s.shown()}" for s in specs)


def _request_schemas(interface: Interface) -> dict[str, dict]:
    inputs = interface.inputs
    aliases = f"; an input may also be named by its graph tensor's op name or full name (e.g. {inputs[0].tensor!r})."
    signature = {
        "signature_name": {
            "type": "string",
            "description": "TF Serving's signature; only the one served.",
            "enum": [interface.signature_key or "serving_default"],
        }
    }
    schemas = {}
    if len(inputs) == 1:  # the how-to's form, for a model of one input
        (spec,) = inputs
        kind = {"b": "booleans", "i": "integers", "u": "integers"}.get(spec.dtype.kind, "finite numbers")
        size = f"{spec.row_size} {kind}" if spec.fixed else kind
        shape = "" if len(spec.shape) == 1 else f", nested to the row shape {list(spec.shape)}"
        shape += " or flat" if spec.fixed and len(spec.shape) != 1 else ""
        schemas["ServiceInput"] = {
            "type": "object",
            "description": "The how-to's request. Other fields are ignored; of duplicate keys the last one counts.",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "array",
                    "description": f"Rows to score, each one row of input {spec.name!r} ({spec.datatype}).",
                    "minItems": 1,
                    "items": {"$ref": REF + "Row"},
                },
                **signature,
            },
        }
        schemas["Row"] = {"description": f"One row: {size} (read as {spec.dtype.name}){shape}.", **_row(spec)}
        instance = _either("The input's row, or an object naming the input", [_row(spec), _named(inputs, _row)])
        columnar = _either("The input's rows, or an object naming the input", [_rows(spec), _named(inputs, _rows)])
    else:
        instance, columnar = _named(inputs, _row), _named(inputs, _rows)
    schemas["PredictRequest"] = {
        "type": "object",
        "description": "TF Serving's row form: one instance per row"
        + (" (an object keyed by input names)" if len(inputs) > 1 else "")
        + aliases,
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "minItems": 1, "items": instance}, **signature},
    }
    schemas["ColumnarRequest"] = {
        "type": "object",
        "description": "TF Serving's columnar form: each input's rows"
        + (" in an object keyed by input names" if len(inputs) > 1 else "")
        + aliases,
        "required": ["inputs"],
        "properties": {"inputs": columnar, **signature},
    }
    schemas["InferenceRequest"] = {
        "type": "object",
        "description": "The Open Inference Protocol's request (v2, as KServe, Triton and MLServer): one tensor per "
        "input, shape [N, ...row shape], data flat in row-major order or nested to the shape" + aliases,
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
                    "properties": {"name": {"type": "string", "enum": [s.name for s in interface.outputs]}},
                },
            },
        },
    }
    forms = ("ServiceInput", "PredictRequest", "ColumnarRequest", "InferenceRequest")
    schemas["ScoreRequest"] = {
        "description": f"A request in one of these forms, for the model's inputs {_shown(inputs)}.",
        "anyOf": [{"$ref": REF + name} for name in forms if name in schemas],
    }
    return schemas


def _howto_answer(interface: Interface) -> dict:
    """What the how-to's form (and a binary body) answers: with DATA_ANSWER=class_ids, a one-output model's
    class ids (the argmax of float scores of shape (N, k)) or, for an output of shape (N, 1), its values;
    otherwise the output's rows, or each output's in an object keyed by output names."""
    outputs = interface.outputs
    if len(outputs) > 1:
        return {"description": "Each output's rows, keyed by output names.", **_named(outputs, _answer_rows, True)}
    (spec,) = outputs
    rows = {"description": f"The output {spec.name!r} of each row.", **_answer_rows(spec)}
    if interface.data_answer != "class_ids" or len(spec.shape) != 1 or spec.shape[0] == 0:
        return rows
    ids = {
        "type": "array",
        "description": "The class id of each row; null where its scores tell none (not finite, or a tie at the top).",
        "items": {"type": "integer", "minimum": 0, "nullable": True},
    }
    values = {
        "type": "array",
        "description": f"The value of {spec.name!r} for each row.",
        "items": _value(spec.dtype, True),
    }
    if spec.shape[0] == 1:
        return values
    if spec.shape[0] > 1:
        ids["items"]["maximum"] = spec.shape[0] - 1
        return ids if spec.dtype.kind == "f" else rows
    # A free width: class ids where the scores have several columns, the values where they have one.
    return _either("By the output's width", [ids if spec.dtype.kind == "f" else rows, values])


def _answer_schemas(interface: Interface) -> dict[str, dict]:
    outputs = interface.outputs
    single = len(outputs) == 1
    schemas = {}
    if len(interface.inputs) == 1:  # the answer of the how-to's form and of binary bodies
        schemas["ServiceOutput"] = _howto_answer(interface)
    schemas["PredictResponse"] = {
        "type": "object",
        "description": "The answer of TF Serving's row form: one prediction per row"
        + ("" if single else ", an object keyed by output names"),
        "required": ["predictions"],
        "properties": {
            "predictions": {
                "type": "array",
                "items": _nested(outputs[0], True) if single else _named(outputs, partial(_nested, answer=True), True),
            }
        },
    }
    schemas["ColumnarResponse"] = {
        "type": "object",
        "description": "The answer of TF Serving's columnar form: "
        + ("the output's rows" if single else "each output's rows in an object keyed by output names"),
        "required": ["outputs"],
        "properties": {"outputs": _answer_rows(outputs[0]) if single else _named(outputs, _answer_rows, True)},
    }
    schemas["InferenceResponse"] = {
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
    answers = ("ServiceOutput", "PredictResponse", "ColumnarResponse", "InferenceResponse")
    schemas["ScoreResponse"] = {
        "description": "The answer, in the form of the request.",
        "anyOf": [{"$ref": REF + name} for name in answers if name in schemas],
    }
    schemas["ModelMetadata"] = _metadata(interface)
    return schemas


def _metadata(interface: Interface) -> dict:
    """GET /score's answer: the Open Inference Protocol's model metadata (-1 in a shape: any size)."""

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
        "example": protocols.metadata_document(interface),
    }


# The documents.


def _openapi3(interface: Interface, schemas: dict[str, dict]) -> dict:
    inputs = interface.inputs
    classes = _class_count(interface)
    answer = f"class id 0-{classes - 1}" if classes else _shown(interface.outputs)
    rows = f"rows of {_shown(inputs)}"
    content = {"application/json": {"schema": {"$ref": REF + "ScoreRequest"}}}
    binary = ""
    if len(inputs) == 1:  # binary bodies: the one input's rows, answered as the how-to's form
        (spec,) = inputs
        dtype = spec.dtype.newbyteorder("<") if spec.dtype.itemsize > 1 else spec.dtype
        raw = (
            f"Raw little-endian {spec.dtype.name} values, N x {spec.row_size} of them, row after row (numpy: "
            f"rows.astype('{dtype.str}').tobytes())."
            if spec.fixed
            else "Not for this input, which has a free dimension: send .npy."
        )
        shape = "(" + ", ".join(["N", *("any" if n < 0 else str(n) for n in spec.shape)]) + ")"
        if spec.fixed and len(spec.shape) != 1:
            shape += f" or (N, {spec.row_size})"
        takes = {"b": "bool", "i": "any integer", "u": "any integer"}.get(spec.dtype.kind, "any real number")
        npy = f"One array in NumPy's .npy format (np.save), of shape {shape} and {takes} dtype; converted to "
        npy += f"{spec.dtype.name}."
        content[_RAW] = {"schema": {"type": "string", "format": "binary", "description": raw}}
        content[_NPY] = {"schema": {"type": "string", "format": "binary", "description": npy}}
        binary = f"; {_RAW} and {_NPY} select the binary formats, answered as the how-to's form"
        if images.takes_images(spec):
            picture = "One image, one row: converted, resized to the input's shape and scaled by IMAGE_SCALE."
            for content_type in images.CONTENT_TYPES:
                content[content_type] = {"schema": {"type": "string", "format": "binary", "description": picture}}
            binary += " (and images, " + ", ".join(images.CONTENT_TYPES) + ")"
    score = {
        "operationId": "RunMLService",
        "description": f"Score {rows}. A JSON body is read whatever its Content-Type (none, text/plain and curl's "
        f"application/x-www-form-urlencoded too){binary}. With SCORING_API_KEY set, the request needs "
        "`Authorization: Bearer <key>` (401 otherwise); without it no key is needed.",
        "security": [{"Bearer": []}, {}],
        "requestBody": {
            "description": f"1 to MAX_REQUEST_ROWS (default 4096) {rows}, at most MAX_REQUEST_BYTES (default 64 MiB).",
            "required": True,
            "content": content,
        },
        "responses": {
            "200": {
                "description": "The answer, one per row in the order of the rows, in the form of the request.",
                "content": {"application/json": {"schema": {"$ref": REF + "ScoreResponse"}}},
            },
            "400": {
                "description": f"The body is not a request of 1 or more {rows}: the error says what is wrong and "
                "where (row, column, or line and column of the JSON).",
                **_ERROR,
            },
            "401": {
                "description": "SCORING_API_KEY is set and the request does not carry `Authorization: Bearer <key>`.",
                "headers": {"WWW-Authenticate": {"description": 'Bearer realm="score"', "schema": {"type": "string"}}},
                **_ERROR,
            },
            "413": {"description": "More than MAX_REQUEST_ROWS rows, or a body over MAX_REQUEST_BYTES.", **_ERROR},
            "503": {
                "description": "Overloaded: the worker's batch queue is full (MAX_QUEUE_ROWS) or the request waited "
                "MAX_QUEUE_WAIT_MS in it. Retry after the time given.",
                "headers": {
                    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
                },
                **_ERROR,
            },
            "default": {
                "description": 'Answered by the inference server itself ({"message": ...}: 431 for an x-request-id '
                'over 100 characters, 500 for a scoring timeout) or, for a bug, by score.py ({"error": ..., '
                '"request_id": ...} with 500).',
                **_SERVER_ERROR,
            },
        },
    }
    metadata = {
        "operationId": "GetModelMetadata",
        "description": "The model's interface: its name, version, inputs and outputs with their datatypes and "
        "shapes (-1: any size, the rows first). No API key needed.",
        "security": [],
        "responses": {
            "200": {
                "description": "The model's metadata.",
                "content": {"application/json": {"schema": {"$ref": REF + "ModelMetadata"}}},
            },
            "default": {"description": "The inference server failed.", **_SERVER_ERROR},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "tfscoring",
            "description": f"The model {interface.model_name!r} version {interface.model_version!r} ({rows} -> "
            f"{answer}), served by azmlinfsrv with a hardened score.py. Every refused request gets a 4xx and a JSON "
            'body {"error": "..."} saying what is wrong.',
            "version": "1.0",
        },
        "security": [{"Bearer": []}, {}],
        "paths": {
            "/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Health probe: answers 'Healthy' once the workers have loaded the model. No API "
                    "key needed.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The service is up.",
                            "content": {"text/html": {"schema": {"type": "string", "example": "Healthy"}}},
                        },
                        "default": {"description": "The inference server failed.", **_SERVER_ERROR},
                    },
                }
            },
            "/score": {"get": metadata, "post": score},
            "/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "This specification: Swagger 2.0 (version=2, the default), OpenAPI 3.0 "
                    "(version=3) or OpenAPI 3.1 (version=3.1). No API key needed.",
                    "security": [],
                    "parameters": [
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "enum": [2, 3]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The specification.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "default": {"description": "An unknown version (404).", **_SERVER_ERROR},
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "Bearer": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "Only when the service sets SCORING_API_KEY (Azure ML on AKS checks its own keys "
                    "in front): `Bearer <key>`.",
                }
            },
        },
    }


def _swagger2(v3: dict, definitions: dict[str, dict]) -> dict:
    """The 3.0 document in Swagger 2.0's terms, with `definitions` for its schemas."""
    paths = {path: {method: _operation2(op) for method, op in ops.items()} for path, ops in v3["paths"].items()}
    doc = {
        "swagger": "2.0",
        "info": v3["info"],
        "schemes": ["http", "https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": v3["components"]["securitySchemes"],
        "security": v3["security"],
        "paths": paths,
        "definitions": definitions,
    }
    return _rereferenced(doc)


def _operation2(op: dict) -> dict:
    converted = {key: value for key, value in op.items() if key not in ("parameters", "requestBody", "responses")}
    parameters = [{**{k: v for k, v in p.items() if k != "schema"}, **p["schema"]} for p in op.get("parameters", [])]
    body = op.get("requestBody")
    if body:
        converted["consumes"] = list(body["content"])
        binary = [
            f"As {media}: {value['schema']['description']}"
            for media, value in body["content"].items()
            if media != "application/json"
        ]
        description = " ".join([body["description"], "As JSON: the schema below.", *binary])
        schema = body["content"]["application/json"]["schema"]
        parameters.append({"name": "serviceInputPayload", "in": "body", "required": True, "description": description})
        parameters[-1]["schema"] = schema
    if parameters:
        converted["parameters"] = parameters
    produces = list(dict.fromkeys(m for r in op["responses"].values() for m in r.get("content", {})))
    if produces != ["application/json"]:
        converted["produces"] = produces
    converted["responses"] = {code: _response2(response) for code, response in op["responses"].items()}
    return converted


def _response2(response: dict) -> dict:
    converted = {"description": response["description"]}
    if response.get("content"):
        converted["schema"] = next(iter(response["content"].values()))["schema"]
    if "headers" in response:
        converted["headers"] = {
            name: {"description": header["description"], **header["schema"]}
            for name, header in response["headers"].items()
        }
    return converted


def _rereferenced(node: object) -> object:
    if isinstance(node, dict):
        return {
            key: value.replace(REF, "#/definitions/") if key == "$ref" else _rereferenced(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rereferenced(value) for value in node]
    return node


def _each_schema(schema: dict, convert: Callable[[dict], dict]) -> dict:
    """`convert` applied to a copy of the schema and of every schema inside it, innermost first."""
    schema = dict(schema)
    if isinstance(schema.get("items"), dict):
        schema["items"] = _each_schema(schema["items"], convert)
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _each_schema(schema["additionalProperties"], convert)
    if "properties" in schema:
        schema["properties"] = {name: _each_schema(s, convert) for name, s in schema["properties"].items()}
    if "anyOf" in schema:
        schema["anyOf"] = [_each_schema(s, convert) for s in schema["anyOf"]]
    return convert(schema)


def _swagger2_request(schema: dict) -> dict:
    """A request's alternatives in Swagger 2.0 (no anyOf): the first one, the others told in the description."""
    if "anyOf" in schema:
        first, *_ = schema.pop("anyOf")
        schema = {**first, **schema}
    return schema


def _swagger2_answer(schema: dict) -> dict:
    """An answer's alternatives in Swagger 2.0 (no anyOf): any JSON, told in the description; x-nullable."""
    schema.pop("anyOf", None)
    if schema.pop("nullable", False):
        schema["x-nullable"] = True
    return schema


def _openapi31(schema: dict) -> dict:
    if schema.pop("nullable", False):
        schema["type"] = [schema["type"], "null"]
    return schema


def _merged(request: dict, schemas: dict[str, dict]) -> dict:
    """The request forms as one object for Swagger 2.0: the first form, with the others' properties too (of
    those named twice, the first)."""
    forms = [schemas[alternative["$ref"].removeprefix(REF)] for alternative in request["anyOf"]]
    properties = {}
    for form in forms:
        for name, schema in form["properties"].items():
            properties.setdefault(name, schema)
    description = request["description"] + " Swagger 2.0 cannot describe alternatives: see version=3."
    return {"type": "object", "description": description, "required": forms[0]["required"], "properties": properties}

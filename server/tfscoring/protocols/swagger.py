"""GET /swagger.json: the API's documents, generated at start-up from the model's interface.

documents() builds the OpenAPI 3.0 document from a skeleton of what does not depend on the model (paths,
headers, error answers, the API key) and the schemas each request form's codec gives for the model
(Codec.schema: its JSON request and answer, or the Body of a content type of its own and of its answer where
that is not JSON; registry.codecs() in order), GET /score's model metadata besides.  The Swagger 2.0 document is
converted from it; 2.0 has no anyOf and no nullable (x-nullable instead), so there the request is its first form
(the how-to's, where the model has one input) with the other forms' keys, an alternative inside a request its first
one, and the answer any JSON.
The 3.1 document is the 3.0 one under its version, with `nullable` written as 3.1 writes it (a "null" type).

install() makes azmlinfsrv serve them instead of swagger{version}.json files.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

from tfscoring import log
from tfscoring.interface import Interface
from tfscoring.protocols import howto, metadata, registry
from tfscoring.protocols.codec import Body
from tfscoring.protocols.limits import Limits
from tfscoring.protocols.schemas import REF, shown

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
    requests, answers, bodies, answer_bodies = _codec_schemas(interface)
    v3 = _openapi3(interface, {**requests, **answers, **_STATIC_SCHEMAS}, bodies, answer_bodies)
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


# The model-specific schemas: each form's, from its codec.


def _codec_schemas(
    interface: Interface,
) -> tuple[dict[str, dict], dict[str, dict], dict[str, Body], dict[str, Body]]:
    """The JSON requests' schemas, ScoreRequest (any of the forms), the answers' schemas, ScoreResponse and the
    model metadata; and the bodies of a content type of their own, of requests and of answers, by content type."""
    requests, answers, content, answer_content = {}, {}, {}, {}
    forms, answered = [], []
    for codec in registry.codecs():
        schema = codec.schema(interface)
        if schema is None:
            continue
        if schema.request:
            forms.append(next(iter(schema.request)))
            requests |= schema.request
        if schema.answer:
            answered.append(next(iter(schema.answer)))
            answers |= schema.answer
        content |= schema.content
        answer_content |= schema.answer_content
    requests["ScoreRequest"] = {
        "description": f"A request in one of these forms, for the model's inputs {shown(interface.inputs)}.",
        "anyOf": [{"$ref": REF + name} for name in forms],
    }
    answers["ScoreResponse"] = {
        "description": "The answer, in the form of the request.",
        "anyOf": [{"$ref": REF + name} for name in answered],
    }
    answers["ModelMetadata"] = metadata.schema(interface)
    return requests, answers, content, answer_content


# The documents.


def _selected(bodies: dict[str, Body]) -> str:
    """What POST /score's description says of the bodies of a content type of their own: the first kind's content
    types, what they select and how they are answered; each other kind in parentheses, with how it is answered
    where that differs (e.g. "; application/octet-stream and application/x-npy select the binary formats, answered
    as the how-to's form (and images, image/png, image/jpeg)")."""
    kinds: dict[tuple[str, str], list[str]] = {}
    for media, body in bodies.items():
        kinds.setdefault((body.selects, body.answered_as), []).append(media)
    if not kinds:
        return ""
    ((selects, answered_as), first), *others = kinds.items()
    said = f"; {' and '.join(first)} select {selects}, answered as {answered_as}"
    for (selects_too, answered_too), media in others:
        how = "" if answered_too == answered_as else f", answered as {answered_too}"
        said += f" (and {selects_too}, {', '.join(media)}{how})"
    return said


def _openapi3(
    interface: Interface, schemas: dict[str, dict], bodies: dict[str, Body], answer_bodies: dict[str, Body]
) -> dict:
    """`bodies`: each content type with a codec of its own (raw, .npy, images); `answer_bodies`: each content type
    other than JSON that an answer comes in."""
    classes = howto.class_count(interface)
    answer = f"class id 0-{classes - 1}" if classes else shown(interface.outputs)
    rows = f"rows of {shown(interface.inputs)}"
    json_request = {"schema": {"$ref": REF + "ScoreRequest"}}
    content = {"application/json": json_request, **{media: body.media_type() for media, body in bodies.items()}}
    json_answer = {"schema": {"$ref": REF + "ScoreResponse"}}
    answered = {"application/json": json_answer, **{media: body.media_type() for media, body in answer_bodies.items()}}
    binary = _selected(bodies)
    score = {
        "operationId": "RunMLService",
        "description": f"Score {rows}. A JSON body is read whatever its Content-Type (none, text/plain and curl's "
        f"application/x-www-form-urlencoded too){binary}. With SCORING_API_KEY set, the request needs "
        "`Authorization: Bearer <key>` (401 otherwise); without it no key is needed.",
        "security": [{"Bearer": []}, {}],
        "requestBody": {
            "description": f"1 to MAX_REQUEST_ROWS (default {Limits().max_rows}) {rows}, at most MAX_REQUEST_BYTES "
            "(default 64 MiB).",
            "required": True,
            "content": content,
        },
        "responses": {
            "200": {
                "description": "The answer, one per row in the order of the rows, in the form of the request.",
                "content": answered,
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

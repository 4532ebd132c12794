"""The /swagger.json documents generated from the model's interface (tfscoring/protocols/swagger.py), without a server.

The documents are checked against the OpenAPI meta-schemas schemathesis validates with, and schemathesis
generates requests from them, in a child process: on import schemathesis patches Hypothesis for the whole
interpreter (see test_swagger.py).  Request and answer bodies are checked with jsonschema_rs, the validator
schemathesis brings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jsonschema_rs
import numpy as np
import pytest
from azureml_inference_server_http.server.swagger import Swagger

from tfscoring.interface import Interface, TensorSpec
from tfscoring.protocols import swagger

FLOAT32_MAX = 3.4028234663852886e38
INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}

HOWTO = Interface(
    "tf-dnn-mnist",
    "1",
    (TensorSpec("network/X", "network/X:0", np.dtype("float32"), (784,)),),
    (TensorSpec("network/output/MatMul", "network/output/MatMul:0", np.dtype("float32"), (10,)),),
)
TWO = Interface(
    "two",
    "3",
    (
        TensorSpec("image", "image:0", np.dtype("float32"), (28, 28, 1)),
        TensorSpec("offset", "offset:0", np.dtype("int64"), ()),
    ),
    (
        TensorSpec("probabilities", "head/probs:0", np.dtype("float32"), (10,)),
        TensorSpec("label", "head/label:0", np.dtype("int64"), ()),
    ),
    signature_key="serving_default",
)
# Others the documents must describe validly: free dimensions, booleans, bytes, one value per row.
OTHERS = [
    Interface(
        "free",
        "2",
        (TensorSpec("tokens", "tokens:0", np.dtype("int32"), (-1,)),),
        (TensorSpec("scores", "scores:0", np.dtype("float16"), (-1,)),),
    ),
    Interface(
        "flags",
        "1",
        (TensorSpec("flags", "flags:0", np.dtype("bool"), (4, 2)),),
        (TensorSpec("yes", "yes:0", np.dtype("bool"), (1,)),),
        data_answer="outputs",
    ),
    Interface(
        "pixels",
        "7",
        (TensorSpec("pixels", "pixels:0", np.dtype("uint8"), (28, 28)),),
        (TensorSpec("value", "value:0", np.dtype("float64"), ()), TensorSpec("ids", "ids:0", np.dtype("uint64"), (3,))),
    ),
    Interface(
        "scalar",
        "1",
        (TensorSpec("x", "x:0", np.dtype("float64"), ()),),
        (TensorSpec("y", "y:0", np.dtype("int8"), (1,)),),
    ),
]


def schemas(doc: dict) -> dict:
    return doc["definitions"] if "swagger" in doc else doc["components"]["schemas"]


def validator(doc: dict, name: str) -> jsonschema_rs.Validator:
    """A JSON-schema validator of one of the document's schemas (3.1: JSON Schema 2020-12; 2.0, 3.0: draft 4)."""
    prefix = "#/definitions/" if "swagger" in doc else "#/components/schemas/"
    root = {"$ref": prefix + name, **{key: doc[key] for key in ("definitions", "components") if key in doc}}
    if doc.get("openapi") == "3.1.0":
        return jsonschema_rs.Draft202012Validator(root)
    return jsonschema_rs.Draft4Validator(root)


def client_body(rows: int = 3) -> dict:
    """A request as client/score_client.py sends it: {"data": rows.tolist()} of float32 pixel values."""
    pixels = np.random.default_rng(0).random((rows, 784), dtype=np.float32)
    return json.loads(json.dumps({"data": pixels.tolist()}))


def as_3_1(node: object) -> object:
    """A 3.0 document's JSON as OpenAPI 3.1 writes it: `nullable` as a "null" type."""
    if isinstance(node, dict):
        node = {key: as_3_1(value) for key, value in node.items()}
        if node.pop("nullable", False):
            node["type"] = [node["type"], "null"]
        return node
    if isinstance(node, list):
        return [as_3_1(value) for value in node]
    return node


@pytest.mark.parametrize("interface", [HOWTO, TWO, *OTHERS], ids=lambda i: i.model_name)
def test_three_versions_of_plain_json(interface):
    docs = swagger.documents(interface)
    assert docs.keys() == {"2", "3", "3.1"}
    assert docs["2"]["swagger"] == "2.0" and docs["3"]["openapi"] == "3.0.3"
    assert json.loads(json.dumps(docs)) == docs  # what azmlinfsrv's json.dumps answers
    assert docs["3.1"] == as_3_1({**docs["3"], "openapi": "3.1.0"})
    for doc in docs.values():
        assert {"/", "/score", "/swagger.json"} == doc["paths"].keys()
        assert doc["paths"]["/score"].keys() == {"get", "post"}
        assert {"200", "400", "401", "413", "503", "default"} == doc["paths"]["/score"]["post"]["responses"].keys()
        assert schemas(doc)["ErrorResponse"]["required"] == ["error"]


@pytest.mark.parametrize("version", ["2", "3", "3.1"])
def test_the_howto_model_takes_rows_of_784_numbers_and_answers_class_ids(version):
    doc = swagger.documents(HOWTO)[version]
    found = schemas(doc)
    assert found["ServiceInput"]["required"] == ["data"]
    assert found["ServiceInput"]["properties"]["data"]["minItems"] == 1
    assert found["Row"]["minItems"] == found["Row"]["maxItems"] == 784
    assert found["Row"]["items"] == {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    nullable = {"2": {"x-nullable": True}, "3": {"nullable": True}}.get(version, {})  # 3.1: a "null" type
    items = found["ServiceOutput"]["items"]
    assert items == {
        "type": ["integer", "null"] if version == "3.1" else "integer",
        "minimum": 0,
        "maximum": 9,
        **nullable,
    }
    score = doc["paths"]["/score"]["post"]
    media_types = score["consumes"] if version == "2" else score["requestBody"]["content"].keys()
    binary = {"application/octet-stream", "application/x-npy", "image/png", "image/jpeg", "image/webp"}  # 784 = 28²
    assert set(media_types) == {"application/json", *binary}
    tensor = found["InferenceRequest"]["properties"]["inputs"]["items"]["properties"]
    assert tensor["name"]["enum"] == ["network/X"]
    assert tensor["datatype"]["enum"][0] == "FP32" and "BOOL" not in tensor["datatype"]["enum"]
    answer = found["InferenceResponse"]["properties"]
    assert answer["model_name"]["enum"] == ["tf-dnn-mnist"] and answer["model_version"]["enum"] == ["1"]
    assert answer["outputs"]["items"]["properties"]["name"]["enum"] == ["network/output/MatMul"]
    assert found["ModelMetadata"]["example"] == {
        "name": "tf-dnn-mnist",
        "versions": ["1"],
        "platform": "tensorflow_graphdef",
        "inputs": [{"name": "network/X", "datatype": "FP32", "shape": [-1, 784]}],
        "outputs": [{"name": "network/output/MatMul", "datatype": "FP32", "shape": [-1, 10]}],
    }


@pytest.mark.parametrize("version", ["2", "3", "3.1"])
def test_the_howto_request_schema_accepts_a_client_body_and_rejects_wrong_ones(version):
    request = validator(swagger.documents(HOWTO)[version], "ScoreRequest")
    body = client_body()
    assert request.is_valid(body)
    assert request.is_valid({"data": [[0] * 784]})
    row = body["data"][0]
    for wrong in [
        {"data": []},
        {"data": [row[:-1]]},
        {"data": [[*row, 0.5]]},
        {"data": [[str(v) for v in row]]},
        {"data": [[*row[:-1], 1e39]]},  # beyond float32
        {"data": [[*row[:-1], True]]},
        {"data": row},
        {"rows": [row]},
        [row],
    ]:
        assert not request.is_valid(wrong), str(wrong)[:80]
    if version != "2":  # Swagger 2.0 has no alternatives: the how-to's form, with the others' keys
        assert request.is_valid({"instances": [row, {"network/X": row}]})
        assert request.is_valid({"inputs": [row], "signature_name": "serving_default"})
        assert request.is_valid({"inputs": {"network/X": [row]}})
        oip = {"id": "a", "inputs": [{"name": "network/X", "shape": [1, 784], "datatype": "FP32", "data": row}]}
        assert request.is_valid(oip)
        assert not request.is_valid({"inputs": [{**oip["inputs"][0], "name": "network/Y"}]})
        assert not request.is_valid({"inputs": [{**oip["inputs"][0], "datatype": "BOOL"}]})
        assert not request.is_valid({"instances": [{"network/Y": row}]})
        assert not request.is_valid({"inputs": [row], "signature_name": "other"})


def test_the_howto_answers_validate_and_floats_may_be_null():
    doc = swagger.documents(HOWTO)["3.1"]
    answer = validator(doc, "ScoreResponse")
    assert answer.is_valid([3, 7, 0, 9])
    assert not answer.is_valid([10]) and not answer.is_valid([-1]) and not answer.is_valid([1.5])
    assert answer.is_valid({"predictions": [[0.1] * 10, [None] * 10]})  # orjson writes NaN as null
    assert not answer.is_valid({"predictions": [[0.1] * 9]})
    assert answer.is_valid({"outputs": [[0.1] * 10]})
    oip = {"name": "network/output/MatMul", "shape": [1, 10], "datatype": "FP32", "data": [0.5] * 10}
    assert answer.is_valid({"model_name": "tf-dnn-mnist", "model_version": "1", "id": "a", "outputs": [oip]})
    assert not answer.is_valid({"model_name": "other", "model_version": "1", "outputs": [oip]})
    metadata = validator(doc, "ModelMetadata")
    assert metadata.is_valid(schemas(doc)["ModelMetadata"]["example"])
    assert not metadata.is_valid({"name": "tf-dnn-mnist"})


@pytest.mark.parametrize("version", ["2", "3", "3.1"])
def test_a_two_input_model_has_named_instances_and_no_data_form(version):
    doc = swagger.documents(TWO)[version]
    found = schemas(doc)
    assert not {"ServiceInput", "Row", "ServiceOutput"} & found.keys()
    score = doc["paths"]["/score"]["post"]
    assert (score["consumes"] if version == "2" else list(score["requestBody"]["content"])) == ["application/json"]
    instance = found["PredictRequest"]["properties"]["instances"]["items"]
    assert instance["required"] == ["image", "offset"] and instance["additionalProperties"] is False
    image = instance["properties"]["image"]
    nested = image["anyOf"][0] if version != "2" else image  # 2.0: the first alternative, nested rows
    assert nested["minItems"] == 28 and nested["items"]["minItems"] == 28 and nested["items"]["items"]["maxItems"] == 1
    assert nested["items"]["items"]["items"] == {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    offset = instance["properties"]["offset"]
    assert INT64.items() <= (offset["anyOf"][0] if version != "2" else offset).items()
    assert found["ColumnarRequest"]["properties"]["inputs"]["required"] == ["image", "offset"]
    tensor = found["InferenceRequest"]["properties"]["inputs"]["items"]["properties"]
    assert tensor["name"]["enum"] == ["image", "offset"]
    assert {"FP32", "INT64"} <= set(tensor["datatype"]["enum"])
    assert found["InferenceRequest"]["properties"]["inputs"]["minItems"] == 2
    prediction = found["PredictResponse"]["properties"]["predictions"]["items"]
    assert prediction["required"] == ["probabilities", "label"]
    assert prediction["properties"]["probabilities"]["maxItems"] == 10
    assert prediction["properties"]["label"] == INT64
    assert found["ColumnarResponse"]["properties"]["outputs"]["required"] == ["probabilities", "label"]
    names = found["InferenceResponse"]["properties"]["outputs"]["items"]["properties"]["name"]["enum"]
    assert names == ["probabilities", "label"]
    example = found["ModelMetadata"]["example"]
    assert [t["shape"] for t in example["inputs"]] == [[-1, 28, 28, 1], [-1, 1]]  # as GET /score says it
    assert [t["datatype"] for t in example["outputs"]] == ["FP32", "INT64"]


def test_a_two_input_model_s_bodies():
    doc = swagger.documents(TWO)["3.1"]
    request, answer = validator(doc, "ScoreRequest"), validator(doc, "ScoreResponse")
    image = np.zeros((28, 28, 1)).tolist()
    flat = [0.5] * 784
    assert request.is_valid({"instances": [{"image": image, "offset": 3}, {"image": flat, "offset": [-1]}]})
    assert request.is_valid({"inputs": {"image": [image, flat], "offset": [1, 2]}, "signature_name": "serving_default"})
    oip = [
        {"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": flat},
        {"name": "offset", "shape": [1], "datatype": "INT64", "data": [3]},
    ]
    assert request.is_valid({"inputs": oip, "outputs": [{"name": "label"}]})
    for wrong in [
        {"data": [flat]},
        {"instances": [image]},
        {"instances": [{"image": image}]},
        {"instances": [{"image": image, "offset": 1.5}]},
        {"instances": [{"image": image, "offset": 2**63}]},
        {"instances": [{"image": image, "offset": 1, "other": 2}]},
        {"instances": [{"image": flat[:-1], "offset": 1}]},
        {"inputs": [image]},
        {"inputs": oip[:1]},
        {"inputs": oip, "outputs": [{"name": "other"}]},
    ]:
        assert not request.is_valid(wrong), str(wrong)[:80]
    assert answer.is_valid({"predictions": [{"probabilities": [0.1] * 10, "label": 3}]})
    assert answer.is_valid({"outputs": {"probabilities": [[0.1] * 10], "label": [3]}})
    assert not answer.is_valid({"predictions": [[0.1] * 10]})
    assert not answer.is_valid([3])  # no how-to's answer without its form


def test_what_the_data_form_answers():
    def answer(interface: Interface) -> dict:
        return schemas(swagger.documents(interface)["3"])["ServiceOutput"]

    outputs = Interface(HOWTO.model_name, "1", HOWTO.inputs, HOWTO.outputs, data_answer="outputs")
    assert answer(outputs)["items"] == {
        "type": "array",
        "items": {"type": "number", "nullable": True},
        "minItems": 10,
        "maxItems": 10,
    }
    one = TensorSpec("p", "p:0", np.dtype("float32"), (1,))
    assert answer(Interface("m", "1", HOWTO.inputs, (one,)))["items"] == {"type": "number", "nullable": True}
    assert answer(Interface("m", "1", HOWTO.inputs, (one,), data_answer="outputs"))["items"]["maxItems"] == 1
    ints = TensorSpec("k", "k:0", np.dtype("int32"), (3,))
    assert answer(Interface("m", "1", HOWTO.inputs, (ints,)))["items"]["maxItems"] == 3  # no argmax of integers
    several = answer(OTHERS[2])
    assert several["required"] == ["value", "ids"] and several["properties"]["ids"]["items"]["maxItems"] == 3


def test_every_document_is_valid_openapi_and_schemathesis_generates_requests_from_it(tmp_path):
    """In a child process: schemathesis's meta-schema validators, then its loader and request strategies."""
    docs = {i.model_name: swagger.documents(i) for i in [HOWTO, TWO, *OTHERS]}
    (tmp_path / "docs.json").write_text(json.dumps(docs))
    script = textwrap.dedent(
        """
        import copy, json, sys
        from hypothesis import HealthCheck, given, settings
        import schemathesis
        from schemathesis.specs.openapi import definitions

        VALIDATORS = {"2": definitions.SWAGGER_20_VALIDATOR, "3": definitions.OPENAPI_30_VALIDATOR,
                      "3.1": definitions.OPENAPI_31_VALIDATOR}
        for model, docs in json.load(open(sys.argv[1])).items():
            for version, doc in docs.items():
                errors = [str(e)[:500] for e in VALIDATORS[version].iter_errors(doc)]
                assert not errors, (model, version, errors)
                schema = schemathesis.openapi.from_dict(doc)
                schema.validate()
                operation = schema["/score"]["POST"]
                bodies = []

                @given(operation.as_strategy())
                @settings(max_examples=10, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                def draw(case):
                    bodies.append(case.body)

                draw()
                assert bodies, (model, version)
                print(model, version, "valid;", len(bodies), "request bodies")
        # The validators do refuse what OpenAPI does not allow: anyOf in Swagger 2.0, a 3.0 type list.
        broken = copy.deepcopy(docs["2"])
        broken["definitions"]["ScoreResponse"]["anyOf"] = [{"type": "string"}]
        assert not VALIDATORS["2"].is_valid(broken)
        broken = copy.deepcopy(docs["3"])
        broken["components"]["schemas"]["Row"]["type"] = ["array", "null"]
        assert not VALIDATORS["3"].is_valid(broken)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "docs.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert run.stdout.count("valid;") == 3 * len(docs)


@pytest.fixture
def builders():
    """azmlinfsrv's swagger builder classes, each with its own _read_user_swagger as before the test."""
    saved = {cls: cls.__dict__.get("_read_user_swagger") for cls in Swagger._builder_classes}
    yield Swagger._builder_classes
    for cls, method in saved.items():
        if method is not None:
            cls._read_user_swagger = method
        elif "_read_user_swagger" in cls.__dict__:
            delattr(cls, "_read_user_swagger")


def test_install_makes_azmlinfsrv_serve_the_documents_for_each_version_it_answers(builders, tmp_path):
    # Files azmlinfsrv would serve otherwise, in AML_APP_ROOT.
    for name in ("swagger.json", "swagger2.json", "swagger3.json", "swagger3.1.json"):
        (tmp_path / name).write_text(json.dumps({"file": name}))
    docs = swagger.documents(HOWTO)
    swagger.install(docs)
    # As aml_blueprint.AMLInferenceBlueprint.setup() builds it after init(); routes.get_swagger_specification
    # answers GET /swagger.json with get_swagger(request.args.get("version") or "2").
    served = Swagger(str(tmp_path), str(tmp_path), user_script=None)
    assert {"2", "2.0", "3", "3.0", "3.1"} <= Swagger._valid_versions
    for version, wanted in [("2", "2"), ("2.0", "2"), ("3", "3"), ("3.0", "3"), ("3.1", "3.1")]:
        assert served.get_swagger(version) == docs[wanted]
    served.get_swagger("3")["info"]["title"] = "changed"  # each worker's Swagger holds its own copy
    assert Swagger(str(tmp_path), str(tmp_path), None).get_swagger("3")["info"]["title"] == "tfscoring"


def test_install_leaves_a_version_it_has_no_document_for_as_it_was(builders, tmp_path):
    (tmp_path / "swagger3.1.json").write_text(json.dumps({"openapi": "3.1.0", "file": True}))
    docs = swagger.documents(HOWTO)
    swagger.install(docs)
    swagger.install({"2": docs["2"], "3": docs["3"]})  # replaces the first install, 3.1 included
    served = Swagger(str(tmp_path), str(tmp_path), user_script=None)
    assert served.get_swagger("2") == docs["2"] and served.get_swagger("3") == docs["3"]
    assert served.get_swagger("3.1") == {"openapi": "3.1.0", "file": True}

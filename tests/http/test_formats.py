"""Every format teams hold, served through the front door (serve.py: nginx, azmlinfsrv) with no setting but, for a
frozen graph, its tensor names: a TF1 SavedModel (SavedModelBuilder), a TF2 SavedModel (a tf.Module's tf.function
signature), a frozen GraphDef named as TensorBoard shows it (`import/...`), and a versioned model folder whose
versions differ in format (1/: a meta-graph checkpoint, 2/: a Keras 3 export), where version 2 answers.  Each answer
is TensorFlow's own, as it built the model (tests/formats.py)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

from tests import formats
from tests.support import FrontDoorProcess, post

ENV = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 4", "MAX_BATCH_ROWS": "8", "MAX_REQUEST_ROWS": "64"}


@dataclass(frozen=True)
class Case:
    name: str  # the model's name: the folder above the version
    version: str
    kind: str  # what answers: tests/formats.py's kind
    inputs: list[dict]
    outputs: list[dict]  # as GET /score lists them
    env: dict[str, str] = field(default_factory=dict)

    @property
    def platform(self) -> str:  # Triton's names: a SavedModel's, else a graph's
        return "tensorflow_savedmodel" if "saved_model" in self.kind or "export" in self.kind else "tensorflow_graphdef"


X = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
SCORES_AND_LABEL = [
    {"name": "label", "datatype": "INT64", "shape": [-1]},
    {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
]
CASES = {
    "tf1-saved-model": Case("tf1-classifier", "1", "tf1_saved_model", X, SCORES_AND_LABEL),
    "tf2-saved-model": Case("tf2-classifier", "1", "tf2_saved_model", X, SCORES_AND_LABEL),
    "frozen-graph": Case(
        "frozen-classifier",
        "1",
        "frozen_graph",
        [{"name": "input/x", "datatype": "FP32", "shape": [-1, 4]}],
        [
            {"name": "head/scores", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "head/label", "datatype": "INT64", "shape": [-1]},
        ],
        {"INPUT_TENSOR": "import/input/x:0", "OUTPUT_TENSOR": "import/head/scores:0,import/head/label:0"},
    ),
    "versioned": Case(
        "classifier", "2", "keras_export", X, [{"name": "output_0", "datatype": "FP32", "shape": [-1, 3]}]
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    kinds = ["tf1_saved_model", "tf2_saved_model", "frozen_graph", "checkpoint", "keras_export"]
    return formats.build(tmp_path_factory.mktemp("formats"), kinds)


def model_dir(built: Path, case: Case, into: Path) -> Path:
    """The folder to serve: <name>/<version>/ (Azure ML's registered layout), or, for the versioned case, the
    <name>/ folder holding 1/ (a checkpoint) and 2/ (a Keras export)."""
    if case.version == "2":
        shutil.copytree(built / "checkpoint", into / case.name / "1")
        shutil.copytree(built / case.kind, into / case.name / "2")
        return into / case.name
    return Path(shutil.copytree(built / case.kind, into / case.name / case.version))


@pytest.fixture(scope="module", params=list(CASES))
def served(request, built, tmp_path_factory) -> tuple[FrontDoorProcess, Case]:
    case = CASES[request.param]
    folder = model_dir(built, case, tmp_path_factory.mktemp("models"))
    with FrontDoorProcess(folder, tmp_path_factory.mktemp(request.param), {**ENV, **case.env}) as server:
        yield server, case


def close(answer, expected: np.ndarray) -> bool:
    if expected.dtype.kind in "iu":
        return np.asarray(answer).tolist() == expected.tolist()
    return np.allclose(np.asarray(answer, np.float32), expected, rtol=1e-5, atol=1e-6)


def expected(built: Path, case: Case, output: str) -> np.ndarray:
    return formats.reference(built, case.kind)[output.rsplit("/", 1)[-1]]


def test_the_interface_and_version_are_the_served_models(served):
    server, case = served
    metadata = requests.get(server.score_url, timeout=10).json()
    assert (metadata["name"], metadata["versions"]) == (case.name, [case.version])
    assert (metadata["inputs"], metadata["outputs"]) == (case.inputs, case.outputs)
    v2 = requests.get(f"{server.url}/v2/models/{case.name}", timeout=10).json()
    assert (v2["name"], v2["versions"], v2["platform"]) == (case.name, [case.version], case.platform)
    assert metadata["platform"] == case.platform
    ready = requests.get(f"{server.url}/v2/models/{case.name}/versions/{case.version}/ready", timeout=10)
    assert ready.status_code == 200


def test_open_inference_protocol_answers_tensorflows_outputs(served, built):
    server, case = served
    x = formats.reference(built, case.kind)["x"]
    tensors = [{"name": case.inputs[0]["name"], "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]
    answer = post(f"{server.url}/v2/models/{case.name}/infer", json.dumps({"inputs": tensors}).encode())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"]) == (case.name, case.version)
    assert [o["name"] for o in body["outputs"]] == [o["name"] for o in case.outputs]
    for output in body["outputs"]:
        want = expected(built, case, output["name"])
        assert output["shape"] == list(want.shape)
        assert close(np.reshape(output["data"], want.shape), want), output["name"]


def test_tf_serving_rows_answer_tensorflows_outputs(served, built):
    server, case = served
    x = formats.reference(built, case.kind)["x"]
    answer = post(server.score_url, json.dumps({"instances": x.tolist()}).encode())
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == len(x)
    if len(case.outputs) == 1:  # one output: each row's value itself
        assert close(predictions, expected(built, case, case.outputs[0]["name"]))
        return
    for output in case.outputs:
        name = output["name"]
        assert close([row[name] for row in predictions], expected(built, case, name)), name

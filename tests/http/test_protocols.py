"""POST /score in TF Serving's REST forms and the Open Inference Protocol, answered with the model's own outputs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.support import post
from tfscoring.config import Settings
from tfscoring.tf.model import GraphModel


@pytest.fixture(scope="module")
def logits(model_dir, t10k) -> np.ndarray:
    """TensorFlow's own outputs for the first 64 t10k rows, in-process."""
    model = GraphModel.load(Settings(azureml_model_dir=model_dir))
    try:
        return model.predict((t10k[0][:64],))[0]
    finally:
        model.close()


def send(server, document: dict):
    return post(server.score_url, json.dumps(document).encode())


def as_float32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def same_outputs(got, expected: np.ndarray) -> bool:
    # A row's outputs may differ in the last bits with the size of the batch it was scored in (CPU kernels
    # pick their blocking by batch size); the values are TensorFlow's own, not recomputed.
    return np.allclose(as_float32(got), expected, rtol=1e-5, atol=1e-5)


def test_tf_serving_row_form_answers_predictions_one_per_instance(server, t10k, logits):
    answer = send(server, {"instances": t10k[0][:5].tolist()})
    assert answer.status_code == 200, answer.text
    assert same_outputs(answer.json()["predictions"], logits[:5])


def test_tf_serving_row_form_instances_may_name_the_input(server, t10k, logits):
    instances = [{"network/X": row} for row in t10k[0][:3].tolist()]
    answer = send(server, {"instances": instances})
    assert answer.status_code == 200, answer.text
    assert same_outputs(answer.json()["predictions"], logits[:3])


@pytest.mark.parametrize("named", [False, True])
def test_tf_serving_columnar_form_answers_outputs(server, t10k, logits, named):
    rows = t10k[0][:4].tolist()
    answer = send(server, {"inputs": {"network/X:0": rows} if named else rows})
    assert answer.status_code == 200, answer.text
    assert same_outputs(answer.json()["outputs"], logits[:4])


@pytest.mark.parametrize("nested", [False, True])
def test_open_inference_protocol_request_gets_its_outputs_named_and_shaped(server, t10k, logits, nested):
    rows = t10k[0][:6]
    tensor = {"name": "network/X", "shape": [6, 784], "datatype": "FP32"}
    tensor["data"] = rows.tolist() if nested else rows.ravel().tolist()
    answer = send(server, {"id": "req-7", "inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("tf-dnn-mnist", "1", "req-7")
    (output,) = body["outputs"]
    assert (output["name"], output["shape"], output["datatype"]) == ("network/output/MatMul", [6, 10], "FP32")
    assert same_outputs(np.reshape(output["data"], (6, 10)), logits[:6])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0] * 784}]},
         "input 'pixels' is not the model's; its inputs: 'network/X'"),
        ({"inputs": [{"name": "network/X", "shape": [1, 784], "datatype": "BYTES", "data": ["a"]}]},
         "has datatype BYTES; the model's input 'network/X' is FP32"),
        ({"inputs": [{"name": "network/X", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}]},
         "has shape [1, 10]; the input 'network/X' takes [N, 784] with N >= 1"),
        ({"inputs": [{"name": "network/X", "shape": [2, 784], "datatype": "FP32", "data": [0] * 784}]},
         "has 784 values; its shape [2, 784] needs 1568"),
        ({"inputs": [{"name": "network/X", "shape": [1, 784], "datatype": "FP32", "data": [0] * 784}] * 2},
         "input 'network/X' is sent twice"),
        ({"instances": []}, '"instances" must be a non-empty list'),
        ({"instances": [{"pixels": [0] * 784}]}, "instance 0 names 'pixels', which is not an input of the model"),
        ({"instances": [[0] * 783]}, 'row 0 of "instances" has 783 values; expected shape (N, 784)'),
        ({"inputs": {"a": [[0] * 784], "b": [[0] * 784]}}, "\"inputs\" names 'a', which is not an input"),
        ({"rows": [[0] * 784]}, 'body has none of "data"'),
        ({"inputs": [{"name": "network/X", "shape": [1, 784], "datatype": ["FP32"], "data": [0] * 784}]},
         "has no \"datatype\" string; the input's is \"FP32\""),
        ({"inputs": [{"name": "network/X", "shape": [1, 784], "data": [0] * 784}]}, 'has no "datatype"'),
        ({"inputs": [{"name": "network/X", "shape": [1, 784], "datatype": "FP32", "data": [[0] * 784] * 3}]},
         "has data nested as [3, 784]; its shape is [1, 784]"),
        ({"instances": [[0] * 784], "inputs": [[0] * 784]}, 'body has both "instances" and "inputs"'),
    ],
)  # fmt: skip
def test_each_kind_of_mismatch_gets_a_400_that_names_it(server, document, message):
    answer = send(server, document)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_requests_of_every_form_at_once_are_batched_and_each_gets_its_own_rows(server, t10k, logits):
    images = t10k[0][:64]

    def ask(i: int):
        rows = images[i * 8 : (i + 1) * 8]
        form = i % 4
        if form == 0:
            return send(server, {"data": rows.tolist()}).json() == logits[i * 8 : (i + 1) * 8].argmax(1).tolist()
        if form == 1:
            got = send(server, {"instances": rows.tolist()}).json()["predictions"]
        elif form == 2:
            got = send(server, {"inputs": rows.tolist()}).json()["outputs"]
        else:
            tensor = {"name": "network/X:0", "shape": [8, 784], "datatype": "FP32", "data": rows.ravel().tolist()}
            got = np.reshape(send(server, {"inputs": [tensor]}).json()["outputs"][0]["data"], (8, 10))
        return same_outputs(got, logits[i * 8 : (i + 1) * 8])

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, range(8)))


def test_get_answers_the_models_metadata_in_the_open_inference_protocols_form(server):
    answer = requests.get(server.score_url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "name": "tf-dnn-mnist",
        "versions": ["1"],
        "platform": "tensorflow_graphdef",
        "inputs": [{"name": "network/X", "datatype": "FP32", "shape": [-1, 784]}],
        "outputs": [{"name": "network/output/MatMul", "datatype": "FP32", "shape": [-1, 10]}],
    }

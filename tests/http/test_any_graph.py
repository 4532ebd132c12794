"""A graph the project has never seen, served from its serving signature alone: two inputs of different dtypes
and ranks, two outputs (model/demo.py), answered in every JSON protocol with TensorFlow's own outputs."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from model import demo
from tests.support import SCORE_PY, ServerProcess, post
from tfscoring.config import Settings
from tfscoring.tf.model import GraphModel

ENV = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 8", "MAX_BATCH_ROWS": "16", "MAX_REQUEST_ROWS": "200"}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("registered") / "demo" / "3"  # Azure ML's <name>/<version>/ layout
    demo.build(model_dir, kind="two-inputs")
    return model_dir


@pytest.fixture(scope="module")
def demo_server(demo_dir, tmp_path_factory):
    with ServerProcess(SCORE_PY, demo_dir, tmp_path_factory.mktemp("demo-server"), ENV) as server:
        yield server


@pytest.fixture(scope="module")
def inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.random((40, 28, 28, 1), dtype=np.float32), rng.integers(-50, 50, 40).astype(np.int64)


@pytest.fixture(scope="module")
def expected(demo_dir, inputs) -> tuple[np.ndarray, np.ndarray]:
    """TensorFlow's own (probabilities, label) for every row, in-process."""
    model = GraphModel.load(Settings(azureml_model_dir=demo_dir))
    try:
        return model.predict(inputs)
    finally:
        model.close()


def send(server, document: dict) -> requests.Response:
    return post(server.score_url, json.dumps(document).encode())


def close(got, want: np.ndarray) -> bool:
    # A row's outputs may differ in the last bits with the size of the batch it was scored in.
    return np.allclose(np.asarray(got, np.float32), want, rtol=1e-5, atol=1e-6)


def test_the_interface_is_the_signatures_with_no_tensor_settings(demo_server):
    metadata = requests.get(demo_server.score_url, timeout=10).json()
    assert (metadata["name"], metadata["versions"]) == ("demo", ["3"])
    assert metadata["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]},
        {"name": "offset", "datatype": "INT64", "shape": [-1, 1]},  # as Triton says it; [N] is taken too
    ]
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
    ]


def test_tf_serving_row_form_answers_an_object_per_instance(demo_server, inputs, expected):
    images, offsets = inputs
    instances = [{"image": images[i].tolist(), "offset": int(offsets[i])} for i in range(3)]
    answer = send(demo_server, {"instances": instances})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["label"] for p in predictions] == expected[0][:3].tolist()
    assert close([p["probabilities"] for p in predictions], expected[1][:3])


def test_tf_serving_columnar_form_answers_each_output_by_name(demo_server, inputs, expected):
    images, offsets = inputs
    answer = send(demo_server, {"signature_name": "serving_default",
                                "inputs": {"image": images[:5].tolist(), "offset": offsets[:5].tolist()}})  # fmt: skip
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert outputs["label"] == expected[0][:5].tolist()
    assert close(outputs["probabilities"], expected[1][:5])


@pytest.mark.parametrize("nested", [False, True])
def test_open_inference_protocol_answers_every_output_named_typed_and_shaped(demo_server, inputs, expected, nested):
    images, offsets = inputs
    tensors = [
        {"name": "image", "shape": [4, 28, 28, 1], "datatype": "FP32",
         "data": images[:4].tolist() if nested else images[:4].ravel().tolist()},
        {"name": "offset", "shape": [4], "datatype": "INT64", "data": offsets[:4].tolist()},
    ]  # fmt: skip
    answer = send(demo_server, {"id": "r-1", "inputs": tensors})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("demo", "3", "r-1")
    label, probabilities = body["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "INT64", [4])
    assert label["data"] == expected[0][:4].tolist()
    assert (probabilities["name"], probabilities["datatype"], probabilities["shape"]) == (
        "probabilities",
        "FP32",
        [4, 10],
    )
    assert close(np.reshape(probabilities["data"], (4, 10)), expected[1][:4])


def test_open_inference_protocol_answers_every_output_when_the_outputs_asked_for_are_none(demo_server, inputs):
    images, offsets = inputs
    tensors = [
        {"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": images[:1].ravel().tolist()},
        {"name": "offset", "shape": [1], "datatype": "INT64", "data": offsets[:1].tolist()},
    ]
    answer = send(demo_server, {"inputs": tensors, "outputs": []})  # as Triton: an empty list asks for all
    assert [o["name"] for o in answer.json()["outputs"]] == ["label", "probabilities"]


def test_open_inference_protocol_answers_only_the_outputs_asked_for(demo_server, inputs, expected):
    images, offsets = inputs
    tensors = [
        {"name": "image", "shape": [2, 784], "datatype": "FP32", "data": images[:2].ravel().tolist()},
        {"name": "offset", "shape": [2], "datatype": "INT32", "data": offsets[:2].tolist()},
    ]
    tensors[0]["shape"] = [2, 28, 28, 1]
    answer = send(demo_server, {"inputs": tensors, "outputs": [{"name": "label"}]})
    assert answer.status_code == 200, answer.text
    (only,) = answer.json()["outputs"]
    assert (only["name"], only["data"]) == ("label", expected[0][:2].tolist())


@pytest.mark.parametrize("binary", [False, True])
def test_an_input_of_one_value_per_row_also_takes_the_shape_n_by_1_as_triton_clients_send_it(
    demo_server, inputs, expected, binary
):
    images, offsets = inputs
    offset = {"name": "offset", "shape": [3, 1], "datatype": "INT64"}
    head = {"inputs": [{"name": "image", "shape": [3, 28, 28, 1], "datatype": "FP32",
                        "data": images[:3].ravel().tolist()}, offset]}  # fmt: skip
    if binary:
        offset["parameters"] = {"binary_data_size": 3 * 8}
        header = json.dumps(head).encode()
        answer = post(demo_server.score_url, header + offsets[:3].astype("<i8").tobytes(), None,
                      headers={"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
    else:
        offset["data"] = [[int(o)] for o in offsets[:3]]
        answer = send(demo_server, head)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == expected[0][:3].tolist()


def test_a_request_may_name_inputs_by_their_graph_tensors(demo_server, inputs, expected):
    images, offsets = inputs
    answer = send(
        demo_server, {"inputs": {"inputs/pixels:0": images[:2].tolist(), "inputs/shift": offsets[:2].tolist()}}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"]["label"] == expected[0][:2].tolist()


def test_concurrent_requests_of_every_form_are_batched_and_each_gets_its_own_rows(demo_server, inputs, expected):
    images, offsets = inputs

    def ask(i: int) -> bool:
        rows = slice(i * 5, (i + 1) * 5)
        if i % 3 == 0:
            instances = [
                {"image": image.tolist(), "offset": int(o)}
                for image, o in zip(images[rows], offsets[rows], strict=True)
            ]
            labels = [p["label"] for p in send(demo_server, {"instances": instances}).json()["predictions"]]
        elif i % 3 == 1:
            columns = {"image": images[rows].tolist(), "offset": offsets[rows].tolist()}
            labels = send(demo_server, {"inputs": columns}).json()["outputs"]["label"]
        else:
            tensors = [
                {"name": "image", "shape": [5, 28, 28, 1], "datatype": "FP32", "data": images[rows].ravel().tolist()},
                {"name": "offset", "shape": [5], "datatype": "INT64", "data": offsets[rows].tolist()},
            ]
            labels = send(demo_server, {"inputs": tensors}).json()["outputs"][0]["data"]
        return labels == expected[0][rows].tolist()

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, range(8)))


def test_one_input_forms_and_binary_bodies_are_refused_for_a_model_with_two_inputs(demo_server, inputs):
    images, _ = inputs
    answer = send(demo_server, {"data": images[:1].tolist()})
    assert answer.status_code == 400
    assert "for a model with one input; this model has 2" in answer.json()["error"]
    buffer = io.BytesIO()
    np.save(buffer, images[:1])
    answer = post(demo_server.score_url, buffer.getvalue(), "application/x-npy")
    assert answer.status_code == 400
    assert "application/x-npy body is for a model with one input" in answer.json()["error"]


IMAGE = [[[[0.5]] * 28] * 28]  # one row of the image input, nested


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"inputs": {"image": IMAGE}}, "\"inputs\" lacks the input 'offset'"),
        ({"inputs": {"image": IMAGE, "offset": [1, 2]}},
         "the inputs have different numbers of rows ('image' 1, 'offset' 2)"),
        ({"inputs": {"image": IMAGE, "offset": [1.5]}}, "row 0 is not an integer; the input 'offset' (INT64)"),
        ({"inputs": {"image": IMAGE, "offset": [True]}}, "holds true or false; the input 'offset' takes numbers"),
        ({"inputs": {"image": IMAGE, "offset": [2**63]}}, "outside the input 'offset' (INT64)'s range"),
        ({"inputs": {"image": IMAGE, "offset": [9223372036854775807.0]}}, "integer beyond 2**53 written among"),
        ({"inputs": {"image": IMAGE * 2, "offset": [2**53 + 1, 1.0]}}, "integer beyond 2**53 written among numbers"),
        ({"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "INT64", "data": [16777217] * 784},
                     {"name": "offset", "shape": [1], "datatype": "INT64", "data": [1]}]},
         "is an integer that FP32 cannot hold exactly"),
        ({"inputs": {"image": [[[[0.5]] * 28] * 27 + [[[0.5]] * 27]], "offset": [1]}},
         "input 'image' holds lists of different lengths"),
        ({"inputs": {"image": [[0.5] * 27], "offset": [1]}},
         "input 'image' has rows of shape (27,); the input 'image' takes rows of shape (28, 28, 1), or rows of 784"),
        ({"inputs": {"image": [["a"] * 784], "offset": [1]}}, "input 'image' at [0][0] is a string ('a')"),
        ({"inputs": {"image": IMAGE, "offset": [[1]]}}, "the input 'offset' takes one value per row"),
        ({"inputs": {"image": IMAGE, "offset": [1], "extra": [1]}}, "names 'extra', which is not an input"),
        ({"instances": [{"image": IMAGE[0]}]}, "instance 0 lacks the input 'offset'"),
        ({"instances": [IMAGE[0]]}, "instance 0 is a list of 28 items; with 2 inputs each instance is an object"),
        ({"signature_name": "other", "inputs": {"image": IMAGE, "offset": [1]}},
         "signature_name 'other' is not served; this server serves 'serving_default'"),
        ({"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.5] * 784}]},
         "request lacks the input 'offset'"),
        ({"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.5] * 784},
                     {"name": "offset", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
         "input 'offset' has datatype FP32; the model's input 'offset' is INT64"),
        ({"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.5] * 784},
                     {"name": "offset", "shape": [1], "datatype": "INT32", "data": [1.5]}]},
         "input 'offset' row 0 is not an integer; its datatype INT32 takes integers"),
        ({"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32", "data": [0.5] * 784},
                     {"name": "offset", "shape": [1], "datatype": "INT64", "data": [1]}]},
         "input 'image' has shape [1, 28, 28]; the input 'image' takes [N, 28, 28, 1]"),
        ({"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.5] * 784},
                     {"name": "offset", "shape": [1], "datatype": "INT64", "data": [1]}],
          "outputs": [{"name": "logits"}]}, "output 'logits' is not the model's; its outputs: 'label'"),
        ({"id": 7, "inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.5] * 784},
                              {"name": "offset", "shape": [1], "datatype": "INT64", "data": [1]}]},
         '"id" must be a string'),
    ],
)  # fmt: skip
def test_each_kind_of_mismatch_gets_a_400_that_names_it(demo_server, document, message):
    answer = send(demo_server, document)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_open_inference_protocol_binary_tensors_both_ways(demo_server, inputs, expected):
    images, offsets = inputs
    header = {
        "inputs": [
            {"name": "image", "shape": [3, 28, 28, 1], "datatype": "FP32",
             "parameters": {"binary_data_size": images[:3].nbytes}},
            {"name": "offset", "shape": [3], "datatype": "INT64", "data": offsets[:3].tolist()},
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
    }  # fmt: skip
    head = json.dumps(header).encode()
    body = head + images[:3].astype("<f4").tobytes()
    answer = post(demo_server.score_url, body, "application/octet-stream",
                  headers={"Inference-Header-Content-Length": str(len(head))})  # fmt: skip
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["Inference-Header-Content-Length"])
    document = json.loads(answer.content[:length])
    probabilities, label = document["outputs"]
    assert probabilities["parameters"]["binary_data_size"] == 3 * 10 * 4
    values = np.frombuffer(answer.content[length:], "<f4").reshape(3, 10)
    assert close(values, expected[1][:3])
    assert label["data"] == expected[0][:3].tolist()


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    """model/demo.py's one-input image model ((N, 28, 28, 1) -> scores), answering the outputs for {"data"}."""
    model_dir = tmp_path_factory.mktemp("registered") / "digits" / "2"
    demo.build(model_dir, kind="image")
    with ServerProcess(
        SCORE_PY, model_dir, tmp_path_factory.mktemp("image-server"), {**ENV, "DATA_ANSWER": "outputs"}
    ) as server:
        server.model_dir = model_dir
        yield server


def test_data_answer_outputs_answers_the_data_form_with_the_outputs_not_class_ids(image_server, inputs):
    model = GraphModel.load(Settings(azureml_model_dir=image_server.model_dir))
    try:
        (scores,) = model.predict((inputs[0][:2],))
    finally:
        model.close()
    for rows in (inputs[0][:2].tolist(), inputs[0][:2].reshape(2, -1).tolist()):  # nested to the shape, or flat
        answer = send(image_server, {"data": rows})
        assert answer.status_code == 200, answer.text
        assert close(answer.json(), scores)


def test_a_png_image_is_scored_as_one_row_of_the_image_input(image_server):
    from PIL import Image

    pixels = np.random.default_rng(5).integers(0, 256, (28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "PNG")
    model = GraphModel.load(Settings(azureml_model_dir=image_server.model_dir))
    try:  # IMAGE_SCALE=unit (the default): pixel / 255
        (scores,) = model.predict(((pixels / 255).astype(np.float32).reshape(1, 28, 28, 1),))
    finally:
        model.close()
    answer = post(image_server.score_url, buffer.getvalue(), "image/png")
    assert answer.status_code == 200, answer.text
    assert close(answer.json(), scores)

"""Byte-string inputs and outputs (BYTES, TensorFlow's DT_STRING) through the front door, compared with TensorFlow's
own answers: a graph that takes any bytes and answers their length and the bytes back (tests/graphs.byte_strings),
and one that takes encoded JPEG or PNG bytes and decodes them itself (tests/graphs.jpeg_bytes), as TF1 image graphs
and the Object Detection API's encoded_image_string_tensor do.

Every form that can carry bytes: TF Serving's {"b64": ...} (and text) in rows and columns, the Open Inference
Protocol's BYTES in JSON and as binary tensors, an image body, an application/octet-stream body.  Refusals are 400
or 413 with their reason, never a 500."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import graphs
from tests.pictures import jpeg_declaring, picture
from tests.support import FrontDoorProcess, MiB, free_port, post, wait_for
from tfscoring.config import Settings
from tfscoring.tf.model import GraphModel

ENV = {
    "WORKER_COUNT": "1",
    "GUNICORN_CMD_ARGS": "--threads 4",
    "MAX_BATCH_ROWS": "16",
    "MAX_REQUEST_ROWS": "300",
    "MAX_REQUEST_BYTES": str(4 * MiB),
}
HEADER_LENGTH = "Inference-Header-Content-Length"


def serve(tmp_path_factory, name: str, build, **env: str):
    model_dir = tmp_path_factory.mktemp(f"{name}-models") / name / "1"
    graphs.save(model_dir, build)
    return model_dir, FrontDoorProcess(model_dir, tmp_path_factory.mktemp(name), {**ENV, **env})


@pytest.fixture(scope="module")
def strings_model(tmp_path_factory):
    model_dir, server = serve(tmp_path_factory, "strings", graphs.byte_strings)
    with server:
        yield model_dir, server


@pytest.fixture(scope="module")
def jpeg_model(tmp_path_factory):
    port = free_port()
    model_dir, server = serve(tmp_path_factory, "jpeg", graphs.jpeg_bytes, METRICS_PORT=str(port))
    server.metrics_url = f"http://127.0.0.1:{port}/metrics"
    with server:
        wait_for(lambda: session_calls(server) is not None, 120, "the worker serving its metrics")
        yield model_dir, server


def session_calls(server) -> float | None:
    """The worker's session calls so far (tfscoring_session_seconds' count), None while no metrics are served."""
    try:
        text = requests.get(server.metrics_url, timeout=10).text
    except requests.ConnectionError:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tfscoring_session_seconds_count"
    )


def tensorflow(model_dir, *rows: bytes) -> dict[str, np.ndarray]:
    """TensorFlow's own outputs for these byte strings, in-process, by output name."""
    model = GraphModel.load(Settings(azureml_model_dir=model_dir))
    try:
        batch = np.empty(len(rows), object)
        batch[:] = list(rows)
        return {spec.name: output for spec, output in zip(model.outputs, model.predict((batch,)), strict=True)}
    finally:
        model.close()


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def send(server, document: dict, path: str = "/score"):
    return post(server.url + path, json.dumps(document).encode())


ROWS = [b"\xff\x00\xfe binary", "héllo".encode(), b"", b"x" * 1000]


def test_metadata_says_bytes(strings_model):
    _, server = strings_model
    got = requests.get(server.score_url, timeout=10).json()
    assert got["inputs"] == [{"name": "raw", "datatype": "BYTES", "shape": [-1, 1]}]
    assert {o["name"]: o["datatype"] for o in got["outputs"]} == {
        "echo": "BYTES",
        "echo_bytes": "BYTES",
        "length": "INT32",
    }


def test_tf_serving_rows_b64_and_text_answer_as_tensorflow(strings_model):
    model_dir, server = strings_model
    want = tensorflow(model_dir, *ROWS)
    instances = [b64(ROWS[0]), "héllo", b64(b""), "x" * 1000]
    answer = send(server, {"instances": instances})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["length"] for p in predictions] == want["length"].tolist() == [len(r) for r in ROWS]
    # `_bytes` outputs are always base64 (TF Serving's rule); others text where UTF-8, base64 where not.
    assert [base64.b64decode(p["echo_bytes"]["b64"]) for p in predictions] == want["echo_bytes"].tolist() == ROWS
    assert [p["echo"] for p in predictions] == [b64(ROWS[0]), "héllo", "", "x" * 1000]
    assert want["echo"].tolist() == ROWS


def test_tf_serving_columns_of_named_input(strings_model):
    _, server = strings_model
    answer = send(server, {"inputs": {"raw": [b64(b"ab"), "c"]}})
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert outputs["length"] == [2, 1]
    assert outputs["echo"] == ["ab", "c"]


def test_open_inference_protocol_json_bytes(strings_model):
    _, server = strings_model
    tensor = {"name": "raw", "shape": [3], "datatype": "BYTES", "data": ["abc", "", "héllo"]}
    answer = send(server, {"inputs": [tensor]}, "/v2/models/strings/infer")
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["length"]["data"] == [3, 0, 6]
    assert (outputs["echo"]["datatype"], outputs["echo"]["data"]) == ("BYTES", ["abc", "", "héllo"])


def test_open_inference_protocol_binary_bytes_in_and_out(strings_model):
    _, server = strings_model
    blob = b"".join(struct.pack("<I", len(row)) + row for row in ROWS)
    document = {
        "inputs": [{"name": "raw", "shape": [4], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "echo", "parameters": {"binary_data": True}}, {"name": "length"}],
    }
    header = json.dumps(document).encode()
    answer = post(
        server.url + "/v2/models/strings/infer",
        header + blob,
        "application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )
    assert answer.status_code == 200, answer.text
    size = int(answer.headers[HEADER_LENGTH])
    meta = json.loads(answer.content[:size])
    echo, length = meta["outputs"]
    assert length["data"] == [len(r) for r in ROWS]
    assert echo["parameters"]["binary_data_size"] == len(blob)
    assert answer.content[size:] == blob  # the same length-prefixed bytes back


def test_octet_stream_body_is_one_row(strings_model):
    _, server = strings_model
    body = bytes(range(256)) * 3
    answer = post(server.score_url, body, "application/octet-stream")
    assert answer.status_code == 200, answer.text
    assert answer.json()["length"] == [768]
    assert base64.b64decode(answer.json()["echo_bytes"][0]["b64"]) == body


def test_many_tiny_strings_are_counted_and_scored(strings_model):
    _, server = strings_model
    answer = send(server, {"instances": ["a"] * 300})
    assert answer.status_code == 200, answer.text
    assert [p["length"] for p in answer.json()["predictions"]] == [1] * 300
    over = send(server, {"instances": ["a"] * 301})
    assert over.status_code == 413, over.text
    assert "MAX_REQUEST_ROWS" in over.json()["error"]


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        ({"b64": "QQ="}, '"instances" row 0 is not valid base64 (Incorrect padding)'),
        ({"b64": "QQ==QQ=="}, '"instances" row 0 is not valid base64 (Excess data after padding)'),
        ({"b64": "Q$Q="}, '"instances" row 0 is not valid base64 (Only base64 data is allowed)'),
        ({"b64": 5}, '"instances" row 0 has "b64" a number (5); it must be a base64 string'),
        ({"b64": "QQ==", "x": 1}, "\"instances\" row 0 is an object with the keys 'b64', 'x'"),
        (5, "\"instances\" row 0 is a number (5); the input 'raw' takes byte strings (BYTES)"),
    ],
)
def test_bad_byte_strings_are_worded_400s(strings_model, instance, message):
    _, server = strings_model
    answer = send(server, {"instances": [instance]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(message)


def test_binary_bytes_with_a_lying_length_is_400(strings_model):
    _, server = strings_model
    blob = struct.pack("<I", 1000) + b"short"
    document = {"inputs": [{"name": "raw", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}]}
    header = json.dumps(document).encode()
    answer = post(
        server.url + "/v2/models/strings/infer", header + blob, None, headers={HEADER_LENGTH: str(len(header))}
    )
    assert answer.status_code == 400, answer.text
    assert (
        answer.json()["error"] == "input 'raw' value 0 says it is 1000 bytes long; 5 bytes of its binary data are left"
    )


def test_a_base64_body_over_the_limit_is_413(strings_model):
    _, server = strings_model
    answer = send(server, {"instances": [{"b64": "A" * (4 * MiB)}]})
    assert answer.status_code == 413, answer.text


def test_the_howto_form_names_the_forms_that_carry_bytes(strings_model):
    _, server = strings_model
    answer = send(server, {"data": ["abc"]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(
        "the input 'raw' takes byte strings (BYTES), which the how-to's {\"data\": ...} form does not carry"
    )


def test_jpeg_body_is_decoded_in_the_graph_as_tensorflow_does(jpeg_model):
    model_dir, server = jpeg_model
    photo = picture(40, 30)
    want = tensorflow(model_dir, photo)
    answer = post(server.score_url, photo, "image/jpeg")
    assert answer.status_code == 200, answer.text
    assert np.allclose(answer.json()["mean"], want["mean"], rtol=1e-5)
    assert answer.json()["size"] == want["size"].tolist() == [[40, 30]]


def test_b64_jpeg_and_png_rows_as_tensorflow(jpeg_model):
    model_dir, server = jpeg_model
    rows = [picture(40, 30), picture(20, 50, "PNG")]
    want = tensorflow(model_dir, *rows)
    answer = send(server, {"instances": [b64(r) for r in rows]})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert np.allclose([p["mean"] for p in predictions], want["mean"], rtol=1e-5)
    assert [p["size"] for p in predictions] == want["size"].tolist() == [[40, 30], [20, 50]]


def test_a_jpeg_declaring_too_many_pixels_is_413_before_the_graph(jpeg_model):
    _, server = jpeg_model
    answer = post(server.score_url, jpeg_declaring(5000, 5000), "image/jpeg")
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"].startswith("image is 5000x5000 = 25000000 pixels for input 'image_bytes' (N)")


def test_b64_jpeg_bombs_in_json_are_413_before_the_graph(jpeg_model):
    _, server = jpeg_model
    before = session_calls(server)
    answer = send(server, {"instances": [b64(picture(8, 8))] + [b64(jpeg_declaring(20000, 20000))] * 100})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == (
        "value 1 of the input 'image_bytes' is an image: image is 20000x20000 = 400000000 pixels for input "
        "'image_bytes' (N); the limit is 16777216 pixels (width x height)"
    )
    assert session_calls(server) == before  # refused before any session call
    assert send(server, {"instances": [b64(picture(8, 8))]}).status_code == 200  # and the worker serves on
    wait_for(lambda: session_calls(server) == before + 1, 10, "the scored request's session call counted")


def test_bombs_in_open_inference_protocol_bytes_json_and_binary_are_413_before_the_graph(jpeg_model):
    _, server = jpeg_model
    bomb = jpeg_declaring(20000, 20000)
    before = session_calls(server)
    tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [2]}
    as_json = send(server, {"inputs": [{**tensor, "data": [b64(picture(8, 8)), b64(bomb)]}]}, "/v2/models/jpeg/infer")
    assert as_json.status_code == 413, as_json.text
    assert as_json.json()["error"].startswith("value 1 of the input 'image_bytes' is an image: image is 20000x20000")
    blob = b"".join(struct.pack("<I", len(v)) + v for v in (picture(8, 8), bomb))
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(blob)}}]}).encode()
    as_binary = post(
        server.url + "/v2/models/jpeg/infer",
        header + blob,
        "application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )
    assert as_binary.status_code == 413, as_binary.text
    assert as_binary.json()["error"] == as_json.json()["error"]
    assert session_calls(server) == before


def test_a_small_b64_jpeg_in_tf_serving_columns_scores_as_tensorflow(jpeg_model):
    model_dir, server = jpeg_model
    photo = picture(24, 36)
    want = tensorflow(model_dir, photo)
    answer = send(server, {"inputs": {"image_bytes": [b64(photo)]}})
    assert answer.status_code == 200, answer.text
    assert np.allclose(answer.json()["outputs"]["mean"], want["mean"], rtol=1e-5)
    assert answer.json()["outputs"]["size"] == want["size"].tolist() == [[24, 36]]


def test_a_body_that_is_no_image_is_400(jpeg_model):
    _, server = jpeg_model
    answer = post(server.score_url, b"GIF89a....", "image/jpeg")
    assert answer.status_code == 400, answer.text
    assert "is not a PNG, JPEG or WebP image" in answer.json()["error"]


def test_bytes_the_graph_cannot_decode_are_400(jpeg_model):
    _, server = jpeg_model
    answer = send(server, {"instances": [b64(b"not an image")]})
    assert answer.status_code == 400, answer.text

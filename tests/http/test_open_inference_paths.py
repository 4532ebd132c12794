"""The Open Inference Protocol's own paths (KServe v2 / Triton) through the front door, as Triton's own Python client
(tritonclient.http, unchanged) calls them: health, server and model metadata, the model config, and inference in
JSON and in Triton's binary tensor extension, on the how-to's model and on a two-input model with a signature.

nginx sends /v2 and /v2/models/... to POST/GET /score with the path in X-Tfscoring-Path (tfscoring/http/routes.py);
/v2/health/live|ready are serve.py's probes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from model import demo
from tests.support import FrontDoorProcess, MiB, data_body, post
from tfscoring.config import Settings
from tfscoring.tf.model import GraphModel

HOWTO = "tf-dnn-mnist"  # models/tf-dnn-mnist/1

HOWTO_VERSION = "1"

HOWTO_INPUT = "network/X"

HOWTO_OUTPUT = "network/output/MatMul"

DEMO = "demo"  # built into <tmp>/demo/3

DEMO_VERSION = "3"

DEMO_PREFIX = "demo.model"

# One worker with eight threads: concurrent requests are batched together in it, so the concurrency test sees
# rows of several requests go through one session call.
FRONT_DOOR_ENV = {
    "WORKER_COUNT": "1",
    "GUNICORN_CMD_ARGS": "--threads 8",
    "MAX_REQUEST_ROWS": "2000",
    "MAX_REQUEST_BYTES": str(32 * MiB),
    "MAX_BATCH_DELAY_MS": "20",
}

THREADS = 8


@pytest.fixture(scope="module")
def howto(model_dir, tmp_path_factory):
    with FrontDoorProcess(model_dir, tmp_path_factory.mktemp("oip-howto"), FRONT_DOOR_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("oip-models") / DEMO / DEMO_VERSION
    demo.build(path, kind="two-inputs")
    return path


@pytest.fixture(scope="module")
def demo_server(demo_dir, tmp_path_factory):
    env = {**FRONT_DOOR_ENV, "MODEL_FILE_PREFIX": DEMO_PREFIX}
    with FrontDoorProcess(demo_dir, tmp_path_factory.mktemp("oip-demo"), env) as server:
        yield server


@pytest.fixture(scope="module")
def demo_model(demo_dir):
    """The demo checkpoint in this process: TensorFlow's own answers, to compare the server's with."""
    model = GraphModel.load(Settings(azureml_model_dir=demo_dir, model_file_prefix=DEMO_PREFIX))
    yield model
    model.close()


@pytest.fixture(scope="module")
def howto_model(model_dir):
    model = GraphModel.load(Settings(azureml_model_dir=model_dir))
    yield model
    model.close()


def client(server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=120)


def tensor(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> triton.InferInput:
    value = triton.InferInput(name, list(array.shape), datatype)
    value.set_data_from_numpy(array, binary_data=binary)
    return value


def images(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).rand(rows, 28, 28, 1).astype(np.float32)


def offsets(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed + 1000).randint(-20, 20, rows).astype(np.int64)


def demo_inputs(image: np.ndarray, offset: np.ndarray, binary: bool = True) -> list[triton.InferInput]:
    return [tensor("image", image, "FP32", binary), tensor("offset", offset, "INT64", binary)]


def expected(model: GraphModel, *rows: np.ndarray) -> dict[str, np.ndarray]:
    """TensorFlow's outputs for the rows, by output name."""
    return {spec.name: out for spec, out in zip(model.outputs, model.predict(rows), strict=True)}


def check_demo(result: triton.InferResult, want: dict[str, np.ndarray], names=("probabilities", "label")) -> None:
    for name in names:
        got = result.as_numpy(name)
        assert got is not None, f"no output {name!r} in {result.get_response()}"
        assert got.dtype == want[name].dtype and got.shape == want[name].shape, name
        if got.dtype.kind == "f":
            np.testing.assert_allclose(got, want[name], rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, want[name])


def status_of(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status(), caught.value.message()


def test_server_live_and_ready(howto, demo_server):
    for server in (howto, demo_server):
        c = client(server)
        assert c.is_server_live()
        assert c.is_server_ready()


def test_model_ready_with_and_without_version(howto, demo_server):
    assert client(howto).is_model_ready(HOWTO)
    assert client(howto).is_model_ready(HOWTO, HOWTO_VERSION)
    assert client(demo_server).is_model_ready(DEMO, DEMO_VERSION)
    assert not client(howto).is_model_ready("other")
    assert not client(howto).is_model_ready(HOWTO, "2")


def test_server_metadata(howto):
    metadata = client(howto).get_server_metadata()
    assert metadata["name"] == "tfscoring"
    assert isinstance(metadata["version"], str) and metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_of_the_howto_model(howto):
    for version in ("", HOWTO_VERSION):
        metadata = client(howto).get_model_metadata(HOWTO, version)
        assert metadata["name"] == HOWTO
        assert metadata["versions"] == [HOWTO_VERSION]
        assert metadata["inputs"] == [{"name": HOWTO_INPUT, "datatype": "FP32", "shape": [-1, 784]}]
        assert metadata["outputs"] == [{"name": HOWTO_OUTPUT, "datatype": "FP32", "shape": [-1, 10]}]


def test_model_metadata_of_the_demo_model(demo_server):
    metadata = client(demo_server).get_model_metadata(DEMO, DEMO_VERSION)
    assert metadata["name"] == DEMO
    assert metadata["versions"] == [DEMO_VERSION]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in metadata["inputs"]} == {
        "image": ("FP32", [-1, 28, 28, 1]),
        "offset": ("INT64", [-1, 1]),  # as Triton says it; [N] is taken too
    }
    assert {t["name"]: (t["datatype"], t["shape"]) for t in metadata["outputs"]} == {
        "probabilities": ("FP32", [-1, 10]),
        "label": ("INT64", [-1]),
    }


def test_model_config(howto, demo_server):
    config = client(howto).get_model_config(HOWTO, HOWTO_VERSION)
    assert config["name"] == HOWTO
    assert config["max_batch_size"] > 0
    assert config["input"] == [{"name": HOWTO_INPUT, "data_type": "TYPE_FP32", "dims": [784]}]
    assert config["output"] == [{"name": HOWTO_OUTPUT, "data_type": "TYPE_FP32", "dims": [10]}]
    config = client(demo_server).get_model_config(DEMO)
    assert config["name"] == DEMO
    assert {t["name"]: (t["data_type"], t["dims"]) for t in config["input"]} == {
        "image": ("TYPE_FP32", [28, 28, 1]),
        "offset": ("TYPE_INT64", [1]),  # one value per row, as Triton writes it: dims [1], reshaped to []
    }
    assert {t["name"]: (t["data_type"], t["dims"]) for t in config["output"]} == {
        "probabilities": ("TYPE_FP32", [10]),
        "label": ("TYPE_INT64", [1]),
    }
    assert all(t["reshape"] == {"shape": []} for t in config["input"] + config["output"] if t["dims"] == [1])


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False, None], ids=["binary-out", "json-out", "default-out"])
def test_howto_infer_matches_tensorflow_and_score(howto, howto_model, t10k, binary_in, binary_out):
    """The logits are TensorFlow's own for the rows, and their argmax is what POST /score answers the how-to."""
    rows = t10k[0][:50]
    outputs = None if binary_out is None else [triton.InferRequestedOutput(HOWTO_OUTPUT, binary_data=binary_out)]
    result = client(howto).infer(HOWTO, [tensor(HOWTO_INPUT, rows, "FP32", binary_in)], outputs=outputs)
    scores = result.as_numpy(HOWTO_OUTPUT)
    assert scores.dtype == np.float32 and scores.shape == (50, 10)
    np.testing.assert_allclose(scores, howto_model.predict((rows,))[0], rtol=1e-4, atol=1e-4)
    response = result.get_response()
    assert response["model_name"] == HOWTO and response["model_version"] == HOWTO_VERSION
    (output,) = response["outputs"]
    assert ("binary_data_size" in output.get("parameters", {})) == (binary_out is not False)
    class_ids = post(howto.score_url, data_body(rows))
    assert class_ids.status_code == 200, class_ids.text
    assert scores.argmax(axis=1).tolist() == class_ids.json()


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_demo_infer_matches_tensorflow(demo_server, demo_model, binary_in, binary_out):
    image, offset = images(7), offsets(7)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary_out) for name in ("probabilities", "label")]
    result = client(demo_server).infer(DEMO, demo_inputs(image, offset, binary_in), outputs=outputs)
    check_demo(result, expected(demo_model, image, offset))
    for output in result.get_response()["outputs"]:
        assert ("binary_data_size" in output.get("parameters", {})) == binary_out, output


def test_demo_infer_mixed_binary_and_json_inputs_and_outputs(demo_server, demo_model):
    image, offset = images(3, seed=5), offsets(3, seed=5)
    inputs = [tensor("image", image, "FP32", True), tensor("offset", offset, "INT64", False)]
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=False),
        triton.InferRequestedOutput("label", binary_data=True),
    ]
    result = client(demo_server).infer(DEMO, inputs, outputs=outputs)
    check_demo(result, expected(demo_model, image, offset))


def test_the_offset_input_changes_the_answer(demo_server):
    """Both inputs reach the graph: the same images with other offsets answer other probabilities."""
    image = images(4, seed=9)
    c = client(demo_server)
    first = c.infer(DEMO, demo_inputs(image, np.zeros(4, np.int64))).as_numpy("probabilities")
    second = c.infer(DEMO, demo_inputs(image, np.full(4, 15, np.int64))).as_numpy("probabilities")
    assert not np.allclose(first, second)


@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_requested_outputs_subset(demo_server, demo_model, binary_out):
    image, offset = images(5, seed=2), offsets(5, seed=2)
    want = expected(demo_model, image, offset)
    c = client(demo_server)
    for name, other in (("label", "probabilities"), ("probabilities", "label")):
        result = c.infer(DEMO, demo_inputs(image, offset), outputs=[triton.InferRequestedOutput(name, binary_out)])
        assert [o["name"] for o in result.get_response()["outputs"]] == [name]
        assert result.as_numpy(other) is None
        check_demo(result, want, names=(name,))


def test_request_id_is_echoed(howto, demo_server, t10k):
    result = client(howto).infer(HOWTO, [tensor(HOWTO_INPUT, t10k[0][:2], "FP32")], request_id="req-42")
    assert result.get_response()["id"] == "req-42"
    result = client(demo_server).infer(DEMO, demo_inputs(images(1), offsets(1)), request_id="abc def/7")
    assert result.get_response()["id"] == "abc def/7"
    result = client(demo_server).infer(DEMO, demo_inputs(images(1), offsets(1)))
    assert "id" not in result.get_response()


def test_the_request_log_line_names_the_path_the_client_asked_for(howto, t10k):
    client(howto).infer(HOWTO, [tensor(HOWTO_INPUT, t10k[0][:2], "FP32")], headers={"x-request-id": "logged-v2-path"})
    line = howto.wait_for_log('"request_id":"logged-v2-path"')
    assert f'"path":"/v2/models/{HOWTO}/infer"' in line.split('"request_id":"logged-v2-path"')[1].split("\n")[0]


def test_model_version_given(howto, demo_server, demo_model, t10k):
    result = client(howto).infer(HOWTO, [tensor(HOWTO_INPUT, t10k[0][:3], "FP32")], model_version=HOWTO_VERSION)
    assert result.get_response()["model_version"] == HOWTO_VERSION
    assert result.as_numpy(HOWTO_OUTPUT).shape == (3, 10)
    image, offset = images(2, seed=3), offsets(2, seed=3)
    result = client(demo_server).infer(DEMO, demo_inputs(image, offset), model_version=DEMO_VERSION)
    response = result.get_response()
    assert (response["model_name"], response["model_version"]) == (DEMO, DEMO_VERSION)
    check_demo(result, expected(demo_model, image, offset))


def test_another_model_is_404(howto, t10k):
    c = client(howto)
    status, message = status_of(lambda: c.infer("other", [tensor(HOWTO_INPUT, t10k[0][:1], "FP32")]))
    assert status == "404" and "other" in message and HOWTO in message
    assert status_of(lambda: c.get_model_metadata("other"))[0] == "404"
    assert status_of(lambda: c.get_model_config("other"))[0] == "404"
    # The same in plain HTTP: a JSON error from the scoring script, not nginx's own 404 page.
    body = {"inputs": [{"name": HOWTO_INPUT, "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}
    for method, path in (
        ("POST", "/v2/models/other/infer"),
        ("GET", "/v2/models/other"),
        ("GET", "/v2/models/other/ready"),
    ):
        answer = requests.request(method, howto.url + path, json=body if method == "POST" else None, timeout=60)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["Content-Type"].startswith("application/json")
        assert "other" in answer.json()["error"]


def test_a_wrong_version_is_404(howto, demo_server, t10k):
    c = client(howto)
    status, message = status_of(lambda: c.infer(HOWTO, [tensor(HOWTO_INPUT, t10k[0][:1], "FP32")], model_version="2"))
    assert status == "404" and "'2'" in message
    assert status_of(lambda: c.get_model_metadata(HOWTO, "2"))[0] == "404"
    demo_client = client(demo_server)
    status, _ = status_of(lambda: demo_client.infer(DEMO, demo_inputs(images(1), offsets(1)), model_version="1"))
    assert status == "404"
    answer = requests.post(howto.url + f"/v2/models/{HOWTO}/versions/2/infer", json={"inputs": []}, timeout=60)
    assert answer.status_code == 404 and "'2'" in answer.json()["error"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_wrong_datatype_is_400_naming_the_input(demo_server, binary):
    inputs = [tensor("image", images(2), "FP32", binary), tensor("offset", np.ones(2, np.float32), "FP32", binary)]
    status, message = status_of(lambda: client(demo_server).infer(DEMO, inputs))
    assert status == "400" and "'offset'" in message and "FP32" in message and "INT64" in message


def test_a_missing_input_is_400(demo_server):
    status, message = status_of(lambda: client(demo_server).infer(DEMO, [tensor("image", images(2), "FP32")]))
    assert status == "400" and "'offset'" in message
    status, message = status_of(lambda: client(demo_server).infer(DEMO, [tensor("offset", offsets(2), "INT64")]))
    assert status == "400" and "'image'" in message


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_inputs_with_different_rows_are_400(demo_server, binary):
    inputs = demo_inputs(images(3), offsets(2), binary)
    status, message = status_of(lambda: client(demo_server).infer(DEMO, inputs))
    assert status == "400" and "rows" in message and "'image' 3" in message and "'offset' 2" in message


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_wrong_shape_is_400(howto, demo_server, binary):
    wrong_rank = [tensor("image", images(2)[..., 0], "FP32", binary), tensor("offset", offsets(2), "INT64", binary)]
    status, message = status_of(lambda: client(demo_server).infer(DEMO, wrong_rank))
    assert status == "400" and "'image'" in message and "[2, 28, 28]" in message
    wrong_width = [tensor(HOWTO_INPUT, np.zeros((2, 783), np.float32), "FP32", binary)]
    status, message = status_of(lambda: client(howto).infer(HOWTO, wrong_width))
    assert status == "400" and HOWTO_INPUT in message and "783" in message
    offset_rows = [tensor("image", images(2), "FP32", binary), tensor("offset", offsets(2)[:, None, None], "INT64",
                                                                         binary)]  # fmt: skip
    status, message = status_of(lambda: client(demo_server).infer(DEMO, offset_rows))
    assert status == "400" and "'offset'" in message  # [2, 1, 1]: [2] and [2, 1] are its shapes


def test_a_forged_path_header_to_score_has_no_effect(howto, t10k):
    """nginx sets X-Tfscoring-Path itself: a client's own header of that name never reaches the script."""
    rows = t10k[0][:5]
    for forged in ("/v2/models/other/infer", "/v2", f"/v2/models/{HOWTO}/config"):
        answer = post(howto.score_url, data_body(rows), headers={"X-Tfscoring-Path": forged})
        assert answer.status_code == 200, answer.text
        class_ids = answer.json()
        assert isinstance(class_ids, list) and len(class_ids) == 5 and all(isinstance(c, int) for c in class_ids)
    # ... nor on an Open Inference Protocol path, where nginx puts the path asked for in it.
    answer = requests.get(
        howto.url + f"/v2/models/{HOWTO}", headers={"X-Tfscoring-Path": "/v2/models/other"}, timeout=60
    )
    assert answer.status_code == 200 and answer.json()["name"] == HOWTO


@pytest.mark.parametrize("ending", ["%0D%0A", "%0A"], ids=["crlf", "lf"])
@pytest.mark.parametrize("path", ["/v2", f"/v2/models/{HOWTO}", f"/v2/models/{HOWTO}/ready"])
def test_a_newline_in_the_path_never_reaches_the_path_header(howto, path, ending):
    """nginx decodes the path: a %0D%0A or %0A at its end must not go into X-Tfscoring-Path, where it would end
    the header block of the request to gunicorn early (the client's other headers, Content-Length too, would then
    be read by gunicorn as a second request on the kept-alive upstream connection).  Such a path is no Open
    Inference Protocol path: it goes on as it is, and is not found."""
    answer = requests.get(howto.url + path + ending, headers={"X-Probe": "after"}, timeout=60)
    assert answer.status_code == 404, (answer.status_code, answer.text[:300])
    assert "Invalid HTTP" not in answer.text
    body = b'{"inputs": []}'
    answer = requests.post(howto.url + f"/v2/models/{HOWTO}/infer" + ending, data=body, timeout=60)
    assert answer.status_code == 404, (answer.status_code, answer.text[:300])


def test_concurrent_requests_get_their_own_rows(demo_server, demo_model):
    """Eight threads, each with its own rows (1 to 8 of them) and client, several requests each: every answer is
    TensorFlow's for that request's rows, whatever requests the worker batched it with."""
    rows = {i: (images(i + 1, seed=100 + i), offsets(i + 1, seed=100 + i)) for i in range(THREADS)}
    want = {i: expected(demo_model, *rows[i]) for i in range(THREADS)}
    start = threading.Barrier(THREADS)
    failures: list[str] = []

    def work(i: int) -> None:
        try:
            c = client(demo_server)
            start.wait(30)
            for round_ in range(10):
                result = c.infer(DEMO, demo_inputs(*rows[i], binary=round_ % 2 == 0), request_id=f"{i}-{round_}")
                assert result.get_response()["id"] == f"{i}-{round_}"
                check_demo(result, want[i])
            c.close()
        except BaseException as err:  # reported by the main thread
            failures.append(f"thread {i}: {err!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, "\n".join(failures)

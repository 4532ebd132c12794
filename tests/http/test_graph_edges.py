"""Other teams' graphs at their edges (tests/graphs.py): every number dtype and booleans end to end, values the
model refuses, a free dimension, two outputs of one op, and values that would not survive their conversion."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests import graphs
from tests.support import SCORE_PY, ServerProcess, post

ENV = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 8", "MAX_BATCH_ROWS": "16", "MAX_REQUEST_ROWS": "200"}


def serve(tmp_path_factory, name: str, build, signature: bool = True, env: dict | None = None) -> ServerProcess:
    model_dir = tmp_path_factory.mktemp("registered") / name / "1"
    graphs.save(model_dir, build, signature)
    return ServerProcess(SCORE_PY, model_dir, tmp_path_factory.mktemp(name), {**ENV, **(env or {})})


@pytest.fixture(scope="module")
def dtypes_server(tmp_path_factory):
    with serve(tmp_path_factory, "dtypes", graphs.dtypes) as server:
        yield server


@pytest.fixture(scope="module")
def free_server(tmp_path_factory):
    with serve(tmp_path_factory, "free", graphs.free_width) as server:
        yield server


def send(server, document: dict, **kwargs):
    return post(server.score_url, json.dumps(document).encode(), **kwargs)


ROW = {"ids": [2], "half": [[1.5, -3.0]], "flag": [True], "pixels": [[200, 100]]}


def test_every_number_dtype_and_booleans_go_through_as_they_are(dtypes_server):
    answer = send(dtypes_server, {"inputs": ROW})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == {"doubled": [[3.0, -6.0]], "notflag": [False], "picked": [2.5], "total": [300]}


def test_the_metadata_names_each_dtype(dtypes_server):
    metadata = requests.get(dtypes_server.score_url, timeout=10).json()
    assert {t["name"]: t["datatype"] for t in metadata["inputs"]} == {
        "flag": "BOOL", "half": "FP16", "ids": "INT32", "pixels": "UINT8",
    }  # fmt: skip
    assert {t["name"]: t["datatype"] for t in metadata["outputs"]} == {
        "doubled": "FP16", "notflag": "BOOL", "picked": "FP32", "total": "INT32",
    }  # fmt: skip


def oip(tensors: list[dict], **document) -> dict:
    return {"inputs": tensors, **document}


def tensor(name: str, datatype: str, shape: list[int], data: list) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


OIP_ROW = [
    tensor("ids", "INT32", [1], [2]),
    tensor("half", "FP16", [1, 2], [1.5, -3.0]),
    tensor("flag", "BOOL", [1], [True]),
    tensor("pixels", "UINT8", [1, 2], [200, 100]),
]


def test_the_open_inference_protocol_answers_each_dtype_in_json_and_in_binary(dtypes_server):
    answer = send(dtypes_server, oip(OIP_ROW))
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: (o["datatype"], o["data"]) for o in answer.json()["outputs"]}
    assert outputs == {"doubled": ("FP16", [3.0, -6.0]), "notflag": ("BOOL", [False]), "picked": ("FP32", [2.5]),
                       "total": ("INT32", [300])}  # fmt: skip
    answer = send(dtypes_server, oip(OIP_ROW, parameters={"binary_data_output": True}))
    length = int(answer.headers["Inference-Header-Content-Length"])
    header, blobs = json.loads(answer.content[:length]), answer.content[length:]
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert [o["name"] for o in header["outputs"]] == ["doubled", "notflag", "picked", "total"]
    assert sizes == [4, 1, 4, 4] and len(blobs) == sum(sizes)
    assert np.frombuffer(blobs[:4], "<f2").tolist() == [3.0, -6.0] and blobs[4:5] == b"\x00"


def binary_flag(server, flag: bytes):
    tensors = [dict(t) for t in OIP_ROW]
    tensors[2] = {"name": "flag", "datatype": "BOOL", "shape": [1], "parameters": {"binary_data_size": len(flag)}}
    header = json.dumps(oip(tensors)).encode()
    return post(server.score_url, header + flag, "application/octet-stream",
                headers={"Inference-Header-Content-Length": str(len(header))})  # fmt: skip


def test_a_binary_bool_is_one_byte_of_0_or_1(dtypes_server):
    assert binary_flag(dtypes_server, b"\x01").json()["outputs"][1]["data"] == [False]
    refused = binary_flag(dtypes_server, b"\x02")
    assert refused.status_code == 400 and "BOOL bytes other than 0 and 1" in refused.json()["error"]


def test_a_value_the_graph_refuses_is_a_400_with_tensorflows_reason(dtypes_server):
    answer = send(dtypes_server, {"inputs": {**ROW, "ids": [7]}})
    assert answer.status_code == 400, answer.text
    assert "the model refused this request's values: indices[0] = 7 is not in [0, 3)" in answer.json()["error"]
    assert send(dtypes_server, {"inputs": ROW}).status_code == 200  # the worker goes on


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"inputs": {**ROW, "pixels": [[256, 0]]}}, "holds 256, outside the input 'pixels' (UINT8)'s range 0 to 255"),
        ({"inputs": {**ROW, "ids": [2147483648]}}, "outside the input 'ids' (INT32)'s range"),
        ({"inputs": {**ROW, "half": [[70000.0, 0]]}}, "is not a finite FP16 value"),
        ({"inputs": {**ROW, "flag": [1]}}, "the input 'flag' takes true or false (BOOL)"),
        ({"inputs": {**ROW, "ids": [True]}}, "the input 'ids' takes numbers"),
        (oip([*OIP_ROW[:3], tensor("pixels", "UINT8", [1, 2], [True, 0])]), "holds true or false among its numbers"),
        (oip([tensor("ids", "INT64", [1], [2**40]), *OIP_ROW[1:]]), "outside the input 'ids' (INT32)'s range"),
        (oip([tensor("ids", "FP32", [1], [1.0]), *OIP_ROW[1:]]), "has datatype FP32; the model's input 'ids' is INT32"),
        (oip([OIP_ROW[0], tensor("half", "FP32", [1, 2], [1e6, 0]), *OIP_ROW[2:]]), "is not a finite FP16 value"),
    ],
)  # fmt: skip
def test_a_value_that_would_not_survive_its_conversion_is_refused(dtypes_server, document, message):
    answer = send(dtypes_server, document)
    assert answer.status_code == 400, answer.text
    assert message is None or message in answer.json()["error"]


def test_rows_of_a_free_dimension_are_taken_at_any_width_and_never_mixed(free_server):
    def ask(width: int) -> bool:
        rows = np.arange(3 * width, dtype=np.float32).reshape(3, width)
        answer = send(free_server, {"instances": rows.tolist()})
        return answer.status_code == 200 and answer.json()["predictions"] == rows.sum(axis=1).tolist()

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, [1, 2, 3, 4] * 6))


def test_a_npy_shape_whose_product_overflows_64_bits_is_a_400(free_server):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (4, 2**62)})
    answer = post(free_server.score_url, header.getvalue(), "application/x-npy")
    assert answer.status_code == 400 and "needs" in answer.json()["error"]


def test_a_header_length_that_is_not_ascii_digits_is_a_400(free_server):
    answer = post(free_server.score_url, b'{"inputs": []}', headers={"Inference-Header-Content-Length": "\xb2"})
    assert answer.status_code == 400 and "Inference-Header-Content-Length" in answer.json()["error"]


def test_a_compressed_body_is_a_415_that_says_so(free_server):
    answer = post(free_server.score_url, b"\x1f\x8b...", headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 415 and "Content-Encoding 'gzip' is not supported" in answer.json()["error"]


def test_two_outputs_of_one_op_are_told_apart_by_their_tensor_names(tmp_path_factory):
    env = {"INPUT_TENSOR": "x:0", "OUTPUT_TENSOR": "topk:0,topk:1"}
    with serve(tmp_path_factory, "topk", graphs.top_two, signature=False, env=env) as server:
        answer = send(server, {"inputs": {"x": [[1, 5, 3, 2, 4]]}})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"] == {"topk:0": [[5.0, 4.0]], "topk:1": [[1, 4]]}

"""POST /score on the real azmlinfsrv: the how-to's request and answer, accuracy, chunking, every malformed case."""

from __future__ import annotations

import http.client
import json
import urllib.request

import numpy as np
import pytest
import requests

from tests.support import data_body, post

WIDTH = 784


@pytest.fixture(scope="session")
def reference(howto_server, t10k) -> np.ndarray:
    """The how-to's score.py answers for the first 1000 t10k rows, in one session call."""
    images, _ = t10k
    response = post(howto_server.score_url, data_body(images[:1000]))
    assert response.status_code == 200, response.text
    return np.array(response.json())


def test_health_probe(server):
    assert requests.get(server.url + "/", timeout=10).text == "Healthy"


def test_howto_request_gets_a_json_list_of_class_ids(server, t10k):
    images, _ = t10k
    response = post(server.score_url, data_body(images[:3]))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert isinstance(answer, list) and len(answer) == 3
    assert all(isinstance(c, int) and 0 <= c <= 9 for c in answer)


@pytest.mark.parametrize("content_type", ["application/json", None, "text/plain"])
def test_body_is_read_whatever_the_content_type(server, t10k, reference, content_type):
    images, _ = t10k
    response = post(server.score_url, data_body(images[:5]), content_type=content_type)
    assert response.status_code == 200, response.text
    assert response.json() == reference[:5].tolist()


def test_curl_default_form_content_type_is_read_as_json(server, t10k, reference):
    images, _ = t10k
    # urllib, like curl -d, sends application/x-www-form-urlencoded.
    request = urllib.request.Request(server.score_url, data=data_body(images[:4]))
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == reference[:4].tolist()


def test_accuracy_over_t10k_sent_as_json(server, t10k, model_dir):
    images, labels = t10k
    predictions = np.concatenate(
        [post(server.score_url, data_body(images[i : i + 1000])).json() for i in range(0, len(images), 1000)]
    )
    accuracy = float((predictions == labels).mean())
    built = json.loads((model_dir / "model" / "model-info.json").read_text())["test_accuracy"]
    assert accuracy >= 0.85
    assert accuracy == pytest.approx(built, abs=0.001)  # what was measured at build time is what is served


def test_answers_do_not_depend_on_chunking(server, t10k, reference):
    """The server cuts rows into session calls of MAX_BATCH_ROWS=64; the how-to ran all 1000 in one."""
    images, _ = t10k
    whole = post(server.score_url, data_body(images[:1000])).json()
    assert whole == reference.tolist()
    pieces: list[int] = []
    for start, size in ((0, 1), (1, 63), (64, 64), (128, 65), (193, 807)):
        pieces += post(server.score_url, data_body(images[start : start + size])).json()
    assert pieces == reference.tolist()


def test_request_id_is_echoed(server, t10k):
    images, _ = t10k
    response = post(server.score_url, data_body(images[:1]), headers={"x-request-id": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"


def _row(value: object = 0.5, at: int = 0) -> list:
    values: list = [0.1] * WIDTH
    values[at] = value
    return values


MALFORMED = {
    "not json": (b"hello", "body is not valid JSON"),
    "truncated json": (b'{"data": [[0.1, 0.2', "unexpected end of data"),
    "not utf-8": (b'{"data": [["\xff"]]}', "not valid UTF-8"),
    "empty body": (b"", "body is empty"),
    "not an object": (b"[[0.1, 0.2]]", "body must be a JSON object"),
    "no data field": (b'{"rows": [[0.1]]}', 'body has none of "data" (the how-to'),
    "data not a list": (b'{"data": "pixels"}', '"data" must be a list of rows'),
    "no rows": (b'{"data": []}', '"data" has no rows'),
    "flat single image": (data_body([0.1] * WIDTH), "wrap a single image as [[...]]"),
    "short row": (data_body([[0.1] * 783]), "783 values; expected shape (N, 784)"),
    "ragged rows": (data_body([[0.1] * WIDTH, [0.1] * 785]), 'row 1 of "data" has 785'),
    "string value": (data_body([_row("0.5", 7)]), 'row 0, column 7 of "data" is a string'),
    "null value": (data_body([_row(None, 8)]), 'column 8 of "data" is null'),
    "boolean value": (data_body([_row(True, 9)]), "is a boolean"),
    "nested value": (data_body([_row([0.1], 10)]), "is a list of 1 items"),
    "NaN": (b'{"data": [[NaN]]}', "non-finite number"),
    "Infinity": (data_body([_row(float("inf"))]), "non-finite number"),
    "1e400": (b'{"data": [[1e400]]}', "non-finite number"),
    "beyond float32": (data_body([_row(1e39, 3)]), "outside the float32 range"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_request_gets_400_json_saying_what_is_wrong(server, case):
    body, message = MALFORMED[case]
    response = post(server.score_url, body)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]
    assert "Traceback" not in response.text


def test_too_many_rows_gets_413(server):
    response = post(server.score_url, data_body([[0] * WIDTH] * 2001))
    assert response.status_code == 413
    assert response.json()["error"] == '"data" has 2001 rows; the limit is 2000 rows per request (MAX_REQUEST_ROWS)'


def test_too_many_bytes_gets_413_from_content_length_before_the_body_is_sent(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/score")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(10**9))
    connection.endheaders()  # no body follows: the answer must come from the header alone
    response = connection.getresponse()
    assert response.status == 413
    assert "limit is 20971520 bytes (MAX_REQUEST_BYTES)" in json.loads(response.read())["error"]
    connection.close()


def test_too_many_bytes_without_content_length_gets_413(server):
    oversized = b'{"data": [[' + b"0," * (10 * 1024 * 1024) + b"0]]}"  # 20 MiB and a bit, sent chunked
    response = requests.post(server.score_url, data=iter([oversized]), timeout=60)
    assert response.status_code == 413
    assert "over the limit of 20971520 bytes" in response.json()["error"]


def test_a_broken_chunked_body_gets_400(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/score")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"zz\r\n{}\r\n0\r\n\r\n")  # "zz" is no chunk size
    response = connection.getresponse()
    assert response.status == 400
    assert "body could not be read: InvalidChunkSize" in json.loads(response.read())["error"]
    connection.close()


def test_options_lists_get_and_post(server):
    assert requests.options(server.score_url, timeout=10).headers["Allow"] == "GET, HEAD, POST, OPTIONS"
    # Methods the server itself does not route get its own 405, with a "message".
    assert requests.put(server.score_url, data=b"{}", timeout=10).status_code == 405


def test_server_keeps_answering_after_every_malformed_request(server, t10k, reference):
    images, _ = t10k
    for body, _ in MALFORMED.values():
        post(server.score_url, body)
    assert requests.get(server.url + "/", timeout=10).status_code == 200
    assert post(server.score_url, data_body(images[:2])).json() == reference[:2].tolist()
    assert "Traceback" not in server.settled_log()

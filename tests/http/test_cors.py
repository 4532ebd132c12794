"""CORS (AML_CORS_ORIGINS, azmlinfsrv's own setting): a browser page of an allowed origin may call the API, with
the preflight it sends for a JSON body and an API key; any other origin gets no CORS headers, so its browser
refuses.  Through azmlinfsrv alone (as Azure ML runs it) and through the front door."""

from __future__ import annotations

import pytest
import requests

from tests.support import SCORE_PY, FrontDoorProcess, ServerProcess, data_body, post

ALLOWED = "https://app.example.com"
ENV = {"WORKER_COUNT": "1", "AML_CORS_ORIGINS": f"{ALLOWED}, https://other.example.com"}


@pytest.fixture(scope="module", params=["azmlinfsrv", "front door"])
def server(request, model_dir, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("cors")
    started = ServerProcess(SCORE_PY, model_dir, log_dir, ENV) if request.param == "azmlinfsrv" else \
        FrontDoorProcess(model_dir, log_dir, ENV)  # fmt: skip
    with started as running:
        yield running


def preflight(server, origin: str) -> requests.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    return requests.options(server.score_url, headers=headers, timeout=10)


def test_the_preflight_of_an_allowed_origin_allows_a_json_post_with_a_key(server):
    answer = preflight(server, ALLOWED)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    allowed_headers = answer.headers["Access-Control-Allow-Headers"].lower()
    assert "content-type" in allowed_headers and "authorization" in allowed_headers


def test_a_request_from_an_allowed_origin_gets_its_answer_with_the_cors_header(server, t10k):
    answer = post(server.score_url, data_body(t10k[0][:2]), headers={"Origin": ALLOWED})
    assert answer.status_code == 200 and len(answer.json()) == 2
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    refused = post(server.score_url, b'{"data": [[1]]}', headers={"Origin": ALLOWED})  # errors too: the page reads them
    assert refused.status_code == 400 and refused.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_another_origin_gets_no_cors_headers(server, t10k):
    assert "Access-Control-Allow-Origin" not in preflight(server, "https://evil.example").headers
    answer = post(server.score_url, data_body(t10k[0][:1]), headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers

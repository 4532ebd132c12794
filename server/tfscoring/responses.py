"""Encode answers and errors as the HTTP responses run() returns to azmlinfsrv."""

from __future__ import annotations

import orjson
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring.body import ALLOWED_METHODS
from tfscoring.errors import ScoringError

_JSON = {"Content-Type": "application/json"}


def error(err: ScoringError) -> AMLResponse:
    return AMLResponse(orjson.dumps({"error": err.message}), err.status_code, {**_JSON, **err.headers})


def internal_error(request_id: str) -> AMLResponse:
    body = {"error": "internal error while scoring; the server log has the details", "request_id": request_id}
    return AMLResponse(orjson.dumps(body), 500, _JSON)


def options() -> AMLResponse:
    return AMLResponse("", 200, {"Allow": ALLOWED_METHODS})

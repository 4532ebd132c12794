"""Encode answers and errors as the HTTP responses run() returns to azmlinfsrv."""

from __future__ import annotations

import orjson
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring.errors import ScoringError
from tfscoring.http.body import ALLOWED_METHODS
from tfscoring.shared import CORS_EXPOSE

# With CORS on (AML_CORS_ORIGINS), a browser page reads only the headers an answer lists here; flask_cors
# (azmlinfsrv's, configured without expose_headers) lists none, and keeps this one.  Harmless without CORS.
# Behind the front door nginx sets it on every answer instead (frontdoor.py, the same list).
EXPOSE = {"Access-Control-Expose-Headers": CORS_EXPOSE}
_JSON = {"Content-Type": "application/json", **EXPOSE}


def error(err: ScoringError) -> AMLResponse:
    return AMLResponse(orjson.dumps({"error": err.message}), err.status_code, {**_JSON, **err.headers})


def internal_error(request_id: str) -> AMLResponse:
    body = {"error": "internal error while scoring; the server log has the details", "request_id": request_id}
    return AMLResponse(orjson.dumps(body), 500, _JSON)


def options() -> AMLResponse:
    return AMLResponse("", 200, {"Allow": ALLOWED_METHODS, **EXPOSE})


def exposed(response):
    """`response` (any answer of run(): a codec's, too) with the headers a browser may read."""
    for name, value in EXPOSE.items():
        response.headers.setdefault(name, value)
    return response

"""Encode answers and errors as the HTTP responses run() returns to azmlinfsrv."""

from __future__ import annotations

import string
import urllib.parse

import orjson
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring.errors import ScoringError
from tfscoring.http.body import ALLOWED_METHODS
from tfscoring.interface import Interface
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


# The model and version that answered, on every answer of the scoring script (errors too): a client, a canary's
# analysis or a proxy's log tells which version it got.  Two headers, not one "name/version", so that neither needs
# parsing.  A folder's name may hold any character: outside printable ASCII (and %) it is percent-encoded.
MODEL_HEADERS = ("X-Model-Name", "X-Model-Version")
_KEPT = "".join(c for c in string.printable if c.isprintable() and c not in " %")


def model_headers(interface: Interface) -> dict[str, str]:
    """The headers that say which model and version answer, for every answer (made once per worker)."""
    name, version = (urllib.parse.quote(value, safe=_KEPT) for value in (interface.model_name, interface.model_version))
    return dict(zip(MODEL_HEADERS, (name, version), strict=True))


def labelled(response, headers: dict[str, str]):
    """`response` (any answer of run()) with model_headers()."""
    response.headers.update(headers)
    return response


def exposed(response):
    """`response` (any answer of run(): a codec's, too) with the headers a browser may read."""
    for name, value in EXPOSE.items():
        response.headers.setdefault(name, value)
    return response

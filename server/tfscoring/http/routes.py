"""The Open Inference Protocol's own paths, which the front door (nginx) hands to POST/GET /score.

azmlinfsrv routes only /score to run(), so nginx sends `/v2` and `/v2/models/...` there, with the path
the client asked for in the X-Tfscoring-Path header (nginx sets or clears that header on every request,
so a client cannot forge it through the front door).  Health (`/v2/health/live`, `/v2/health/ready`) is
answered by serve.py's probes, not here.

    GET  /v2                                          server metadata
    GET  /v2/models/<name>[/versions/<version>]        model metadata (as GET /score)
    GET  /v2/models/<name>[/versions/<version>]/ready  200 while this worker serves
    GET  /v2/models/<name>[/versions/<version>]/config the model's configuration as Triton describes it
                                                      (perf_analyzer reads it)
    POST /v2/models/<name>[/versions/<version>]/infer  inference, in the Open Inference Protocol

Another model name or version is a 404 with a JSON error, as the protocol says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring.errors import MethodNotAllowed, NotFound
from tfscoring.interface import Interface, TensorSpec
from tfscoring.shared import PATH_HEADER  # noqa: F401 - the header these paths come in, shared with nginx.conf.in

SERVER_NAME = "tfscoring"
EXTENSIONS = ["binary_tensor_data"]
_MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/[a-z]+)?/?$")
_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Route:
    # "server", "metadata", "ready", "config" or "infer": a POST route whose name protocols/registry.py's BY_ROUTE
    # lists is scored in that codec's form (a new form of a path of its own: its route here, its line there)
    action: str


def resolve(path: str, method: str, interface: Interface) -> Route:
    """The route of an Open Inference Protocol path, or a 404 / 405 that says why there is none."""
    # nginx passes its decoded $uri as UTF-8 bytes, which the WSGI server hands over as latin-1 text.
    path = path.encode("latin-1", "replace").decode("utf-8", "replace").split("?", 1)[0]
    if path.rstrip("/") == "/v2":
        return _allowed(Route("server"), method, "GET")
    found = _MODEL_PATH.match(path)
    if not found:
        raise NotFound(f"no such path: {path}; this server serves /v2/models/{interface.model_name}[/infer]")
    name, version, action = found["name"], found["version"], (found["action"] or "")[1:]
    if name != interface.model_name:
        raise NotFound(f"model {name!r} is not served here; this server serves {interface.model_name!r}")
    if version is not None and version != interface.model_version:
        raise NotFound(
            f"version {version!r} of model {name!r} is not served here; the version served is "
            f"{interface.model_version!r}"
        )
    if action == "":
        return _allowed(Route("metadata"), method, "GET")
    if action in ("ready", "config"):
        return _allowed(Route(action), method, "GET")
    if action == "infer":
        return _allowed(Route("infer"), method, "POST")
    raise NotFound(f"no such path: {path}; a model's paths end in /ready, /config or /infer")


def server_metadata(version: str) -> AMLResponse:
    return AMLResponse(orjson.dumps({"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS}), 200, _JSON)


def ready(interface: Interface) -> AMLResponse:
    return AMLResponse(orjson.dumps({"name": interface.model_name, "ready": True}), 200, _JSON)


def config(interface: Interface, max_batch_rows: int) -> AMLResponse:
    """The model's configuration in Triton's model-config JSON: what perf_analyzer and Triton's clients read to
    size their requests (max_batch_size, each tensor's type and per-row dims)."""

    def tensor(spec: TensorSpec) -> dict:
        if not spec.shape:  # one value per row: Triton's way to say so (its clients want a dimension per row)
            return {"name": spec.name, "data_type": _triton_type(spec), "dims": [1], "reshape": {"shape": []}}
        return {"name": spec.name, "data_type": _triton_type(spec), "dims": list(spec.shape)}

    body = {
        "name": interface.model_name,
        "platform": interface.platform,
        "backend": "tensorflow",
        "version_policy": {"specific": {"versions": [interface.model_version]}},
        "max_batch_size": max_batch_rows,
        "input": [tensor(spec) for spec in interface.inputs],
        "output": [tensor(spec) for spec in interface.outputs],
        "dynamic_batching": {},
    }
    return AMLResponse(orjson.dumps(body), 200, _JSON)


def _allowed(route: Route, method: str, allowed: str) -> Route:
    if method != allowed:
        raise MethodNotAllowed(f"{method} is not supported on this path; use {allowed}", {"Allow": allowed})
    return route


def _triton_type(spec: TensorSpec) -> str:
    """Triton's name of the tensor's datatype in a model configuration: TYPE_ and the protocol's name, except for
    byte strings, which a configuration calls TYPE_STRING."""
    return "TYPE_STRING" if spec.datatype == "BYTES" else "TYPE_" + spec.datatype

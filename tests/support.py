"""The tests' helpers: the real server started as a subprocess and talked to (bench/servers.py, which the benchmark
shares; re-exported here), and what only the tests use."""

from __future__ import annotations

import requests

from bench.servers import (
    AZMLINFSRV,
    GPU_SHARING,
    HOWTO_SCORE_PY,
    ISOLATED_SETTINGS,
    REPO,
    SCORE_PY,
    SERVE_PY,
    SETTLE_S,
    FrontDoorProcess,
    ServerProcess,
    cut_short_request,
    data_body,
    free_port,
    open_connections,
    send_raw,
    stop_group,
    wait_for,
    wait_for_health,
    worker_pids,
)

__all__ = [
    "AZMLINFSRV",
    "GPU_SHARING",
    "HOWTO_SCORE_PY",
    "ISOLATED_SETTINGS",
    "REPO",
    "SCORE_PY",
    "SERVE_PY",
    "SETTLE_S",
    "FrontDoorProcess",
    "MiB",
    "ServerProcess",
    "cut_short_request",
    "data_body",
    "free_port",
    "howto_interface",
    "json_rows",
    "open_connections",
    "post",
    "rows_interface",
    "send_raw",
    "stop_group",
    "wait_for",
    "wait_for_health",
    "worker_pids",
]

MiB = 1024 * 1024


def post(url: str, body: bytes, content_type: str | None = "application/json", **kwargs) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    headers.update(kwargs.pop("headers", {}))
    return requests.post(url, data=body, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)


def howto_interface():
    """The how-to's model as the server reads it from its graph (models/tf-dnn-mnist/1)."""
    import numpy as np

    from tfscoring.interface import Interface, TensorSpec

    return Interface(
        "tf-dnn-mnist", "1",
        (TensorSpec("network/X", "network/X:0", np.dtype("float32"), (784,)),),
        (TensorSpec("network/output/MatMul", "network/output/MatMul:0", np.dtype("float32"), (10,)),),
    )  # fmt: skip


def rows_interface(width: int):
    """A model of one float32 input of `width` values a row (the how-to's form of rows; 784: the how-to's model)."""
    import numpy as np

    from tfscoring.interface import Interface, TensorSpec

    f32 = np.dtype("float32")
    return Interface("m", "1", (TensorSpec("x", "x:0", f32, (width,)),), (TensorSpec("y", "y:0", f32, (10,)),))


def json_rows(body: bytes, width: int, max_rows: int):
    """The rows of a JSON body to rows_interface(width), read as the server reads a JSON body at /score (app.py,
    through protocols/registry.py): the how-to's rows in C where the body is plainly that, else counted (413 for too
    many values, 400 for too deep) and parsed in whichever form it is.  A refusal raises the BadRequest or
    PayloadTooLarge the client gets."""
    from tfscoring.protocols import registry
    from tfscoring.protocols.limits import Limits

    return registry.JSON.decode(body, rows_interface(width), Limits(max_rows=max_rows)).arrays[0]

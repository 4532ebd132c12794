"""The tests' helpers: the real server started as a subprocess and talked to (bench/servers.py, which the benchmark
shares; re-exported here), and what only the tests use."""

from __future__ import annotations

import requests

from bench.servers import (
    _ISOLATED,
    AZMLINFSRV,
    GPU_SHARING,
    HOWTO_SCORE_PY,
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
    "REPO",
    "SCORE_PY",
    "SERVE_PY",
    "SETTLE_S",
    "_ISOLATED",
    "FrontDoorProcess",
    "MiB",
    "ServerProcess",
    "cut_short_request",
    "data_body",
    "free_port",
    "howto_interface",
    "open_connections",
    "post",
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

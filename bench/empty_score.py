"""The ceiling: an entry script that reads the body and answers at once, with no model.

Served with the same azmlinfsrv settings as server/score.py, it measures what
the inference server itself costs per request.  Behind the front door it reports
its state to the health probes as score.py's workers do (a heartbeat file), so
that the front door admits it and the ceiling pays what ours pays there.
"""

import os
from pathlib import Path

from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring.process import workerstate

state = None


def init():
    global state
    directory = os.environ.get("WORKER_STATE_DIR")
    state = workerstate.WorkerState(Path(directory) if directory else None, hang_s=20.0)
    state.start()
    state.serving(lambda: workerstate.load(0, 1, 0, 1), lambda: 0.0)


@rawhttp
def run(request):
    request.stream.read()
    return AMLResponse(b"[0]", 200, {"Content-Type": "application/json"})

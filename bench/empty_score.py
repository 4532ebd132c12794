"""The ceiling: an entry script that reads the body and answers at once, with no model.

Served with the same azmlinfsrv settings as server/score.py, it measures what
the inference server itself costs per request.
"""

from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    request.stream.read()
    return AMLResponse(b"[0]", 200, {"Content-Type": "application/json"})

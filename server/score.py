"""Azure ML entry script: the how-to's TF1 MNIST model, hardened.

Served by azureml-inference-server-http (azmlinfsrv) unchanged:

    azmlinfsrv --entry_script server/score.py --model_dir models/tf-dnn-mnist/1

init() runs once per gunicorn worker process and builds the worker's application
(tfscoring/app.py); run() is called for every POST /score, concurrently when
GUNICORN_CMD_ARGS="--threads N" is set, and hands the request to it.
"""

import logging
import os
import sys

# azmlinfsrv loads this file by path and does not put its folder on sys.path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep TensorFlow's warnings, drop its info chatter

from azureml_inference_server_http.api.aml_request import rawhttp

from tfscoring import log
from tfscoring.app import Application
from tfscoring.config import Settings
from tfscoring.errors import StartupError

# The worker's application: Azure ML's contract is two functions of one module, init() then run(), so what init()
# builds is kept here for run(); nothing else is.
app: Application


def init():
    global app
    try:
        app = Application.build(Settings.from_env())
    except StartupError as err:
        _stop_startup(err)


@rawhttp
def run(request):
    return app.handle(request)


def _stop_startup(err: StartupError) -> None:
    """Exit the worker with gunicorn's boot-error code after one log line that names the problem.

    Exit code 3 makes the gunicorn master stop instead of restarting the worker
    in a loop.  Exiting here, rather than raising, keeps the server's traceback
    of this script out of the log: the line below says everything.
    """
    log.critical("start-up failed: %s", err)
    for handler in logging.getLogger("azmlinfsrv").handlers:
        handler.flush()
    os._exit(3)

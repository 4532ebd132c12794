"""score.run() in-process: a failure nobody expected is a 500 with a request id, its traceback in the log only."""

from __future__ import annotations

import json
import logging

import flask
import numpy as np

import score
from tests.support import data_body
from tfscoring.app import Application
from tfscoring.batching.batcher import Batcher
from tfscoring.batching.budget import InflightBudget
from tfscoring.batching.calls import SessionCalls
from tfscoring.config import Settings
from tfscoring.interface import Interface
from tfscoring.process.workerstate import WorkerState
from tfscoring.tf.model import GraphModel


def test_unexpected_failure_is_500_with_request_id_and_traceback_only_in_the_log(howto_model_dir, monkeypatch, caplog):
    settings = Settings(azureml_model_dir=howto_model_dir)
    broken = GraphModel.load(settings)
    broken.close()  # a real fault: every session call now raises
    batcher = Batcher(SessionCalls(broken.predict, 8), max_delay_s=0, max_queue_rows=64, max_wait_s=10)
    interface = Interface("m", "1", broken.inputs, broken.outputs)
    budget = InflightBudget(settings.inflight_budget)
    app = Application(settings, broken, interface, batcher, budget, WorkerState(None, settings.session_hang_s))
    monkeypatch.setattr(score, "app", app, raising=False)  # as init() leaves it
    body = data_body(np.zeros((2, 784)))

    with flask.Flask(__name__).test_request_context("/score", method="POST", data=body), caplog.at_level(logging.ERROR):
        flask.g.request_id = "req-42"
        response = score.run(flask.request)

    assert response.status_code == 500
    assert json.loads(response.get_data()) == {
        "error": "internal error while scoring; the server log has the details",
        "request_id": "req-42",
    }
    assert "request req-42 failed" in caplog.text
    assert "Traceback" in caplog.text and "closed Session" in caplog.text

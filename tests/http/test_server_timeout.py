"""The inference server's own SCORING_TIMEOUT_MS still works around run() (sync workers, where it applies)."""

from __future__ import annotations

import re

from tests.support import SCORE_PY, ServerProcess, data_body, post

TIMEOUT_MESSAGE = "Script failed to finish execution within the allocated time: 1ms"  # azmlinfsrv's


def test_the_servers_timeout_is_reported_as_a_timeout_not_as_our_internal_error(model_dir, t10k, tmp_path):
    server = ServerProcess(SCORE_PY, model_dir, tmp_path, {"SCORING_TIMEOUT_MS": "1"}).wait_healthy()
    try:
        images, _ = t10k
        response = post(server.score_url, data_body(images[:2000]))
        assert response.status_code == 500
        assert response.json() == {"message": "Scoring timeout after 1 ms"}
        log = server.settled_log()  # every line of that request, those written after the answer too
        # Not our internal error: no request line with that error (requestlog.py writes compact JSON),
        # no "request <id> failed" from score.py, and no traceback but the one azmlinfsrv logs for its timeout.
        assert '"error":"internal error' not in log
        assert not re.search(r"request \S* ?failed", log), log
        tracebacks = log.split("Traceback (most recent call last):")[1:]
        raised = [
            next((line for line in tb.splitlines()[1:] if line and not line[0].isspace()), "") for tb in tracebacks
        ]
        assert len(raised) == 1 and raised[0].endswith("UserScriptTimeout: " + TIMEOUT_MESSAGE), log
    finally:
        server.stop()

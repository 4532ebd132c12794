"""The inference server's own SCORING_TIMEOUT_MS still works around run() (sync workers, where it applies)."""

from __future__ import annotations

from tests.support import SCORE_PY, ServerProcess, data_body, post


def test_the_servers_timeout_is_reported_as_a_timeout_not_as_our_internal_error(model_dir, t10k, tmp_path):
    server = ServerProcess(SCORE_PY, model_dir, tmp_path, {"SCORING_TIMEOUT_MS": "1"}).wait_healthy()
    try:
        images, _ = t10k
        response = post(server.score_url, data_body(images[:2000]))
        assert response.status_code == 500
        assert response.json() == {"message": "Scoring timeout after 1 ms"}
        assert "internal error while scoring" not in server.settled_log()
    finally:
        server.stop()

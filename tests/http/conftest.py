"""The HTTP tests' session server: the real scoring server, started once per session (the how-to's, their
reference, is tests/conftest.py's howto_server, which the image's test uses too)."""

from __future__ import annotations

import pytest

from tests.support import SCORE_PY, MiB, ServerProcess

# The scoring server under test: two workers with eight threads each, and limits small
# enough that the tests reach them (chunks of 64 rows, 2000 rows, 20 MiB per request).
SERVER_ENV = {
    "WORKER_COUNT": "2",
    "GUNICORN_CMD_ARGS": "--threads 8",
    "MAX_BATCH_ROWS": "64",
    "MAX_REQUEST_ROWS": "2000",
    "MAX_REQUEST_BYTES": str(20 * MiB),
}


@pytest.fixture(scope="session")
def server(model_dir, tmp_path_factory):
    with ServerProcess(SCORE_PY, model_dir, tmp_path_factory.mktemp("server"), SERVER_ENV) as server:
        yield server

"""GET /swagger.json publishes the API as it is, and fuzzing from that schema (schemathesis) finds no 5xx or mismatch.

azmlinfsrv cannot generate a schema for a `@rawhttp` run(); init() generates the documents from the
model's interface (tfscoring/protocols/swagger.py) and azmlinfsrv serves them.  The documents themselves are
specified by tests/unit/test_swagger_docs.py; here, that the served ones are those, for the served model.

Schemathesis runs as its own process (its CLI, against the session server): on
import it patches Hypothesis for the whole interpreter, which would hide the
failing examples of the other property tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import howto_interface
from tfscoring.protocols import swagger

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")

# The checks of responses against the schema.  Not among them: positive_data_acceptance (an octet-stream body
# is any string to the schema, but only whole rows of float32 are accepted), and unsupported_method and
# ignored_auth, which azmlinfsrv answers itself (its 405 has no Allow header; the API key is optional).
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"

CHECKS += "response_schema_conformance"

MAX_EXAMPLES = 40  # per operation and phase, per schema version

# The how-to's model as the server reads it from its graph (tests/http/conftest.py serves models/tf-dnn-mnist/1).
HOWTO = howto_interface()


def published(version: int | str) -> dict:
    return swagger.documents(HOWTO)[str(version)]


@pytest.mark.parametrize(("query", "version"), [("", 2), ("?version=2", 2), ("?version=3", 3), ("?version=3.1", "3.1")])
def test_swagger_json_is_the_schema_generated_from_the_served_models_interface(server, query, version):
    response = requests.get(f"{server.url}/swagger.json{query}", timeout=10)
    assert response.status_code == 200
    assert response.json() == published(version)


@pytest.mark.parametrize("version", [2, 3])
def test_fuzzing_from_the_published_schema_finds_no_server_error_or_mismatch(server, tmp_path, version):
    """Schemathesis generates valid and invalid requests from GET /swagger.json and checks every response.

    Fixed seed, so a run is reproducible; the report of a failure holds a curl
    command that reproduces it.
    """
    report = tmp_path / "report.json"
    argv = [str(SCHEMATHESIS), "run", f"{server.url}/swagger.json?version={version}", "--checks", CHECKS]
    argv += ["--max-examples", str(MAX_EXAMPLES), "--seed", "5", "--workers", "1", "--request-timeout", "30"]
    argv += ["--report", "json", "--report-json-path", str(report)]
    run = subprocess.run(
        argv, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"}, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["failures"] == [] and result["errors"] == []
    assert result["operations"]["tested"] >= 2  # GET / and POST /score (it leaves out the schema's own URL)
    score = result["valid_rates"]["POST /score"]["fuzzing"]
    assert score["accepted"] > 0  # some of its requests were scored, not only refused
    assert result["test_cases"]["generated"] >= MAX_EXAMPLES

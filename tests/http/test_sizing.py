"""server/serve.py starts the server sized to the machine (the defaults: tests/unit/test_sizing.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from tests.support import REPO, free_port, stop_group, wait_for
from tfscoring.process.sizing import (
    default_size,
    memory_limit,
    usable_cpus,
)


def test_serve_py_starts_the_server_sized_to_the_machine(model_dir, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    env = {"PATH": os.environ["PATH"], "TF_CPP_MIN_LOG_LEVEL": "2"}  # no WORKER_COUNT, no GUNICORN_CMD_ARGS
    argv = [sys.executable, str(REPO / "server" / "serve.py"), "--model_dir", str(model_dir), "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    size = default_size(usable_cpus(), memory_limit())
    try:
        deadline = time.monotonic() + 180
        while log.read_text().count("model ready on") < size.workers:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert (
            f"WORKER_COUNT={size.workers} GUNICORN_CMD_ARGS='--threads {size.threads} --keep-alive" in log.read_text()
        )
        wait_for(
            lambda: requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=10).status_code == 200, 60, "ready"
        )
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        stop_group(process)

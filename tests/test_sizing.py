"""Worker and thread defaults sized to the machine, and server/serve.py, which applies them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from tests.support import REPO, free_port, stop_group, wait_for
from tfscoring.sizing import (
    MAX_CPU_WORKERS,
    THREADS_PER_WORKER,
    ServerSize,
    default_size,
    intra_op_threads,
    memory_limit,
    usable_cpus,
    visible_gpus,
)


def test_one_worker_per_core_with_or_without_gpus():
    assert default_size(cpus=2) == ServerSize(workers=2, threads=THREADS_PER_WORKER)  # the how-to's AKS node
    assert default_size(cpus=1).workers == 1
    assert default_size(cpus=64).workers == MAX_CPU_WORKERS  # each worker holds a TensorFlow runtime


def test_workers_are_no_more_than_the_memory_holds_with_one_maximum_request_each():
    GiB = 1 << 30
    assert default_size(cpus=8, memory=4 * GiB).workers == 3  # 3 x (768 MiB + 3 x 64 MiB) <= 3 GiB
    assert default_size(cpus=8, memory=64 * GiB).workers == 8
    assert default_size(cpus=8, memory=1 * GiB).workers == 1  # at least one, whatever the memory


def test_each_worker_gets_its_share_of_the_cores_for_tensorflow():
    assert intra_op_threads(cpus=8, workers=2) == 4
    assert intra_op_threads(cpus=2, workers=4) == 1


def test_cuda_visible_devices_hides_gpus():
    assert visible_gpus("") == 0
    assert visible_gpus("-1") == 0


def test_usable_cpus_is_at_least_one_and_at_most_the_machine():
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


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

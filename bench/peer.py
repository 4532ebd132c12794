"""Seldon MLServer, the peer, started in its own venv with adaptive batching on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.servers import free_port, stop_group, wait_for_health

RUNTIME = Path(__file__).resolve().parent / "mlserver" / "tf1_runtime.py"
MODEL_NAME = "tf-dnn-mnist"
# Adaptive batching as MLServer documents it: up to this many requests per call, waiting at most this long.
MAX_BATCH_SIZE = 64
MAX_BATCH_TIME_S = 0.002


class MLServerProcess:
    def __init__(self, mlserver: Path, model_dir: Path, work: Path, workers: int):
        repository = work / MODEL_NAME  # MLServer expects the folder named after the model
        repository.mkdir(exist_ok=True)
        shutil.copy(RUNTIME, repository / RUNTIME.name)
        settings = {
            "name": MODEL_NAME,
            "implementation": "tf1_runtime.TF1GraphRuntime",
            "max_batch_size": MAX_BATCH_SIZE,
            "max_batch_time": MAX_BATCH_TIME_S,
            "parameters": {"uri": str(model_dir.resolve())},
        }
        (repository / "model-settings.json").write_text(json.dumps(settings))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.score_url = f"{self.url}/v2/models/{MODEL_NAME}/infer"
        env = {
            **os.environ,
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(self.port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
            "MLSERVER_PARALLEL_WORKERS": str(workers),  # as many inference processes as our workers
            "MLSERVER_DEBUG": "false",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_NUM_INTRAOP_THREADS": str(max(1, (os.cpu_count() or 1) // workers)),
        }
        self._log = open(work / f"mlserver-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(mlserver), "start", str(repository)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 240) -> MLServerProcess:
        ready = f"{self.url}/v2/models/{MODEL_NAME}/ready"
        wait_for_health(ready, self.process, Path(self._log.name).read_text, timeout)
        return self

    def stop(self) -> None:
        stop_group(self.process)
        self._log.close()

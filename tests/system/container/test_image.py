"""make container-test: the Dockerfile, changed only by build args, built on a stand-in base and served.

The stand-in (docker/standin-base.sh) replaces the Azure ML GPU base image, which cannot be
pulled here; TF_FLAVOR=cpu installs CPU TensorFlow of the same version; MODEL_SOURCE bakes the
model in. `buildah run --isolation chroot` shares the host network, so the server in the
image is spoken to on 127.0.0.1 like any other.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import REPO, data_body, free_port, post, stop_group, wait_for_health

BUILDAH = ["buildah", "--storage-driver", "vfs"]
STANDIN_BASE = "localhost/tfscoring-standin-base:bookworm"
IMAGE = "localhost/tfscoring:container-test"
IMAGE_USER_ID = 10001


def buildah(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*BUILDAH, *args], check=True, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def image(model_dir, tmp_path_factory):
    if shutil.which("buildah") is None or os.geteuid() != 0:
        pytest.fail("make container-test needs root and buildah (the Makefile installs it)")
    subprocess.run([str(REPO / "docker" / "standin-base.sh"), STANDIN_BASE], check=True)
    log = tmp_path_factory.mktemp("image") / "build.log"
    with log.open("w") as out:
        built = subprocess.run(
            [
                *BUILDAH,
                "bud",
                "--isolation",
                "chroot",
                "--layers=false",
                "--format",
                "docker",  # OCI images have no HEALTHCHECK
                "--build-arg",
                f"BASE_IMAGE={STANDIN_BASE}",
                "--build-arg",
                "TF_FLAVOR=cpu",
                "--build-arg",
                f"MODEL_SOURCE={model_dir.relative_to(REPO)}",
                # pip inside the build trusts what the host trusts (a proxy's CA, where there is one)
                "--volume",
                "/etc/ssl/certs:/etc/ssl/certs:ro",
                "--tag",
                IMAGE,
                str(REPO),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    assert built.returncode == 0, log.read_text()[-5000:]
    yield IMAGE
    subprocess.run([*BUILDAH, "rmi", "--force", IMAGE], capture_output=True)


@pytest.fixture(scope="module")
def container(image):
    name = buildah("from", "--name", "tfscoring-container-test", image).stdout.strip()
    yield name
    subprocess.run([*BUILDAH, "rm", name], capture_output=True)


class ContainerServer:
    def __init__(self, container: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.score_url = self.url + "/score"
        self._log = log.open("wb")
        # The image's CMD with another port; WORKER_COUNT is left to serve.py's sizing.
        command = ["python", "server/serve.py", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*BUILDAH, "run", "--isolation", "chroot", container, "--", *command],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.log_path = log

    def wait_healthy(self, timeout: float = 180) -> ContainerServer:
        wait_for_health(self.url + "/health/ready", self.process, self.log_path.read_text, timeout)
        return self

    def server_user_ids(self) -> dict[str, set[int]]:
        """Real user ids of the processes serving in this container, by program: serve.py, nginx, azmlinfsrv."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(
                    int(stat.parent.name)
                )
        ids: dict[str, set[int]] = {}
        pending = [self.process.pid]
        while pending:  # the descendants of buildah run: its own helpers (root, outside) and the server's tree
            pid = pending.pop()
            pending += children.get(pid, [])
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                program = next((p for p in ("nginx", "azmlinfsrv", "serve.py") if p.encode() in cmdline), None)
                runs = Path(cmdline.split(b"\0")[0].decode()).name
                if program and (runs.startswith(("python", "nginx"))):  # not buildah's helpers, which name serve.py
                    status = Path(f"/proc/{pid}/status").read_text()
                    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
                    ids.setdefault(program, set()).add(uid)
        return ids

    def stop(self) -> None:
        stop_group(self.process)
        self._log.close()


@pytest.fixture(scope="module")
def served(container, tmp_path_factory):
    server = ContainerServer(container, tmp_path_factory.mktemp("container") / "server.log")
    try:
        yield server.wait_healthy()
    finally:
        server.stop()


def test_the_image_runs_as_a_non_root_user(container):
    assert buildah("run", "--isolation", "chroot", container, "--", "id", "-u").stdout.strip() == str(IMAGE_USER_ID)


def test_the_server_in_the_image_runs_as_that_user(served):
    assert served.server_user_ids() == {program: {IMAGE_USER_ID} for program in ("nginx", "azmlinfsrv", "serve.py")}


def test_a_t10k_image_is_scored_through_the_image(served, howto_server, t10k):
    images, _ = t10k
    expected = post(howto_server.score_url, data_body(images[:20])).json()
    response = post(served.score_url, data_body(images[:20]))
    assert response.status_code == 200, response.text
    assert response.json() == expected


def test_the_front_door_answers_the_probes_in_the_image(served):
    for probe in ("startup", "ready", "live"):
        response = requests.get(f"{served.url}/health/{probe}", timeout=10)
        assert response.status_code == 200, response.text


def test_a_malformed_body_gets_a_400_with_the_reason(served):
    response = post(served.score_url, b'{"data": [[0.1, 0.2]]}')
    assert response.status_code == 400
    assert response.json() == {"error": 'row 0 of "data" has 2 values; expected shape (N, 784)'}


def test_the_image_declares_port_user_healthcheck_and_command(image):
    config = json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    assert "5001/tcp" in config["ExposedPorts"]
    assert "8002/tcp" in config["ExposedPorts"]  # METRICS_PORT
    assert config["User"] == str(IMAGE_USER_ID)
    assert config["Cmd"] == ["python", "server/serve.py", "--port", "5001"]
    docker_config = json.loads(buildah("inspect", "--type", "image", image).stdout)["Docker"]["config"]
    assert "urlopen('http://127.0.0.1:5001/health/live'" in " ".join(docker_config["Healthcheck"]["Test"])


def test_the_image_holds_no_secrets(image, container):
    """No key, token or password in the image's environment; the API key is given at run time, if at all."""
    config = json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    names = [entry.partition("=")[0] for entry in config.get("Env", [])]
    assert not [name for name in names if any(word in name.upper() for word in ("KEY", "SECRET", "TOKEN", "PASSWORD"))]
    copied = buildah("run", "--isolation", "chroot", container, "--", "ls", "-A", "/opt/tfscoring").stdout.split()
    assert sorted(copied) == ["requirements", "server", "venv"]  # what the Dockerfile copies, and nothing else

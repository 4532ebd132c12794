"""The image and Azure ML environment files agree with the pinned requirements and with what Azure ML expects."""

from __future__ import annotations

import re

import yaml

from tests.support import REPO


def pins(*files: str) -> set[str]:
    lines = []
    for name in files:
        lines += (REPO / "requirements" / name).read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_myenv_pins_what_the_image_installs():
    environment = yaml.safe_load((REPO / "myenv.yml").read_text())
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert set(pip) == pins("server.txt", "tensorflow-gpu.txt")


def test_myenv_names_a_python_tensorflow_supports_gpu_tensorflow_and_the_inference_server():
    environment = yaml.safe_load((REPO / "myenv.yml").read_text())
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    major, minor = map(int, python.removeprefix("python=").split(".")[:2])
    assert (3, 10) <= (major, minor) <= (3, 13)
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert any(p.startswith("tensorflow[and-cuda]==") for p in pip)
    assert any(p.startswith("azureml-inference-server-http==") for p in pip)


def test_the_dockerfile_defaults_to_an_azure_ml_gpu_image_and_ends_as_a_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE).group(1)
    assert base.startswith("mcr.microsoft.com/azureml/") and "gpu" in base
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users[-1] not in ("root", "0")


def test_every_azure_ml_path_uses_the_same_base_image():
    dockerfile = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE).group(1)
    assert base in (REPO / "myenv.yml").read_text()
    assert base in (REPO / "docker" / "aks" / "deploy_v1.py").read_text()
    v2_deployment = yaml.safe_load((REPO / "docker" / "aks" / "v2" / "deployment.yml").read_text())
    assert v2_deployment["environment"]["image"] == base


def test_the_local_run_script_passes_every_setting_on_to_the_container():
    """docker/run-local.sh forwards a fixed list of variables (docker -e NAME): every setting of the server's."""
    from tfscoring.config import ServerSettings, Settings

    script = (REPO / "docker" / "run-local.sh").read_text()
    forwarded = set(script.split("settings=(", 1)[1].split(")", 1)[0].split())
    # Set by the container itself (the model's mount, serve.py's state directory, the metrics' directory, --gpus).
    inside = {"AZUREML_MODEL_DIR", "WORKER_STATE_DIR", "PROMETHEUS_MULTIPROC_DIR", "CUDA_VISIBLE_DEVICES"}
    settings = {name.upper() for name in [*Settings.model_fields, *ServerSettings.model_fields]}
    assert settings - inside - forwarded == set()

"""The three AKS paths, checked offline with the real libraries: nothing here reaches Azure.

(a) the how-to's v1 SDK flow: docker/aks/deploy_v1.py's configuration objects, built with azureml-core;
(b) Azure ML v2: docker/aks/v2/*.yml loaded as azure-ai-ml's Kubernetes endpoint and deployment entities;
(c) plain Kubernetes: docker/k8s/*.yaml validated against the Kubernetes schemas (kubernetes-validate).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import KubernetesOnlineDeployment, KubernetesOnlineEndpoint

REPO = Path(__file__).resolve().parents[3]
V2 = REPO / "docker" / "aks" / "v2"
KUBERNETES_VERSION = "1.33.0"


def deploy_v1():
    spec = importlib.util.spec_from_file_location("deploy_v1", REPO / "docker" / "aks" / "deploy_v1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_v1_environment_is_myenv_on_the_azure_ml_gpu_base_image():
    v1 = deploy_v1()
    env = v1.environment()
    assert env.docker.base_image == v1.BASE_IMAGE
    assert env.python.conda_dependencies.get_python_version().startswith("3.11")
    pip = list(env.python.conda_dependencies.pip_packages)
    assert "tensorflow[and-cuda]==2.21.0" in pip
    assert "azureml-inference-server-http==1.5.1" in pip
    assert env.environment_variables["GUNICORN_CMD_ARGS"] == f"--threads {v1.THREADS}"


def test_v1_inference_config_serves_score_py_with_its_package():
    v1 = deploy_v1()
    config = v1.inference_config(v1.environment())
    assert config.entry_script == "score.py"
    assert Path(config.source_directory) == REPO / "server"
    assert (Path(config.source_directory) / "tfscoring" / "batching" / "batcher.py").is_file()


def test_v1_service_has_one_gpu_and_lets_enough_requests_in_for_batching():
    v1 = deploy_v1()
    service = v1.service_config()
    service.validate_configuration()  # azureml-core's own checks of the values
    assert service.gpu_cores == 1
    assert service.replica_max_concurrent_requests >= v1.WORKERS * v1.THREADS
    assert service.auth_enabled


def test_v1_cluster_is_provisioned_on_gpu_nodes():
    v1 = deploy_v1()
    cluster = v1.cluster_config()
    cluster.validate_configuration()
    assert cluster.vm_size.startswith(("Standard_NC", "Standard_ND"))


def test_v2_endpoint_and_deployment_load_as_kubernetes_online_entities():
    endpoint = load_online_endpoint(V2 / "endpoint.yml")
    deployment = load_online_deployment(V2 / "deployment.yml")
    assert isinstance(endpoint, KubernetesOnlineEndpoint)
    assert isinstance(deployment, KubernetesOnlineDeployment)
    assert deployment.endpoint_name == endpoint.name
    # Paths in the YAML are relative to its folder.
    assert (V2 / deployment.code_configuration.code).resolve() == REPO / "server"
    assert deployment.code_configuration.scoring_script == "score.py"
    assert (V2 / deployment.model.path).resolve() == REPO / "models" / "tf-dnn-mnist" / "1" / "model"
    assert deployment.environment.conda_file["dependencies"][-1]["pip"][-1].startswith("tensorflow[and-cuda]")
    assert deployment.request_settings.max_concurrent_requests_per_instance >= 16
    assert deployment.liveness_probe.initial_delay and deployment.readiness_probe.period
    assert str(deployment.resources.limits.gpu) == "1"


@pytest.mark.parametrize("manifest", sorted((REPO / "docker" / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid_against_the_schemas(manifest):
    for document in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_deployment_reserves_a_gpu_and_probes_the_front_doors_health_routes():
    deployment = yaml.safe_load((REPO / "docker" / "k8s" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    routes = (REPO / "server" / "tfscoring" / "process" / "nginx.conf.in").read_text()
    assert "location ~ ^/(v2/)?health/(?<probe>live|ready|startup)$" in routes  # nginx passes to serve.py's probes
    for probe, route in (("startupProbe", "startup"), ("readinessProbe", "ready"), ("livenessProbe", "live")):
        assert container[probe]["httpGet"]["path"] == f"/health/{route}"
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True

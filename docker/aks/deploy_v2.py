"""The how-to's deployment with Azure ML v2 (azure-ai-ml): this scoring server on a Kubernetes online endpoint.

    pip install azure-ai-ml==1.35.2 azure-identity   # requirements/deploy.txt pins them with the rest
    python docker/aks/deploy_v2.py --config config.json --aks-cluster <AKS name> [--delete]
    python docker/aks/deploy_v2.py --dry-run          # build, validate and print every entity; no credentials

Steps, as in the how-to (docs/azure-ml.md has the same with `az ml`): the workspace (MLClient with
DefaultAzureCredential, from config.json or --subscription/--resource-group/--workspace); the AKS cluster,
with Azure ML's extension and the GPU instance type of docker/aks/v2/instance-type.yml, attached as the
Kubernetes compute gpu-k8s (or reused); the model registered from models/tf-dnn-mnist/1/model; the
environment from myenv.yml on Azure ML's GPU base image; the Kubernetes online endpoint (key auth); the
deployment (entry script server/score.py, one GPU, the server's settings as environment variables, request
settings, probes, autoscaling; Application Insights and data collection behind flags); all traffic to it;
the project's client scores t10k images through it; the last lines of its logs; with --delete, the endpoint
(and its deployment) is deleted afterwards, even when a step failed, and with --detach the compute is detached.
The entities are built by the pure functions below, which tests/system/deployment validate offline with azure-ai-ml's
own schemas; main() only sends them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from azure.ai.ml import (
    load_compute,
    load_environment,
    load_model,
    load_online_deployment,
    load_online_endpoint,
)
from azure.ai.ml.entities import (
    CodeConfiguration,
    DataCollector,
    DeploymentCollection,
    Environment,
    IdentityConfiguration,
    KubernetesCompute,
    KubernetesOnlineDeployment,
    KubernetesOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    ProbeSettings,
    ResourceRequirementsSettings,
    ResourceSettings,
    TargetUtilizationScaleSettings,
)

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cuda11.8-gpu-inference:latest"  # = Dockerfile, v1
MODEL_NAME = "tf-dnn-mnist"
# Registered from the model/ folder: Azure ML v2 keeps the folder's name, so the checkpoint is at
# $AZUREML_MODEL_DIR/model/mnist-tf.model.*, where score.py looks (MODEL_FOLDER=model).
MODEL_DIR = REPO / "models" / MODEL_NAME / "1" / "model"
ENVIRONMENT_NAME = "tfscoring-gpu"
ENDPOINT_NAME = "tfscoring"
DEPLOYMENT_NAME = "blue"
COMPUTE_NAME = "gpu-k8s"
# The instance type the cluster's Azure ML extension knows (docker/aks/v2/instance-type.yml, kubectl apply):
# one GPU, and the same requests and limits as RESOURCES below.
INSTANCE_TYPE = "gpu1"
# One gunicorn worker per requested core, sharing the GPU, each with its own session
# (server/tfscoring/process/sizing.py); each worker's threads feed its batcher. Azure ML's router must let that many
# requests in at once, or batching never sees concurrent requests.
WORKERS = 2
THREADS = 16
SERVER_ENVIRONMENT = {
    "WORKER_COUNT": str(WORKERS),
    "GUNICORN_CMD_ARGS": f"--threads {THREADS}",
    "REQUIRE_GPU": "1",
    "MALLOC_MMAP_THRESHOLD_": "1048576",  # large bodies' memory goes back to the kernel (docs/operations.md)
}
# The server's own data collection (off by default): model inputs and outputs of a sample of requests, sent to
# the deployment's data collector. The server samples (before serialising anything); the collector keeps all.
DATA_COLLECTION_ENVIRONMENT = {"DATA_COLLECTION": "1", "DATA_COLLECTION_SAMPLE": "0.1"}  # as the YAML says why
COLLECTIONS = ("model_inputs", "model_outputs")
REQUEST_SETTINGS = {
    # Every worker's threads busy: WORKERS x THREADS requests at once per instance.
    "max_concurrent_requests_per_instance": WORKERS * THREADS,
    # Longer than the server's own longest answer time (its MAX_QUEUE_WAIT_MS 5 s queue wait, then a session call
    # within SESSION_HANG_S 20 s), so that the server answers (503 with the reason) before the router gives up.
    "request_timeout_ms": 60000,
    # In the router's queue when every slot is taken, before a 429; like v1's max_request_wait_time.
    "max_queue_wait_ms": 5000,
}
# Requests and limits of one instance, the same as the instance type's.
RESOURCES = {
    "requests": {"cpu": str(WORKERS), "memory": "8Gi", "gpu": "1"},
    "limits": {"cpu": str(2 * WORKERS), "memory": "16Gi", "gpu": "1"},
}
# Probes call azmlinfsrv's GET /. The model loads in seconds, but TensorFlow's CUDA start-up can take a minute.
LIVENESS = {"initial_delay": 60, "period": 10, "timeout": 5, "failure_threshold": 3}
READINESS = {"initial_delay": 30, "period": 10, "timeout": 5, "failure_threshold": 3}
# Like v1's autoscale: 1 to 4 instances, at 70% of max_concurrent_requests_per_instance in flight.
SCALE = {"min_instances": 1, "max_instances": 4, "polling_interval": 10, "target_utilization_percentage": 70}


def aks_resource_id(subscription: str, resource_group: str, cluster: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.ContainerService/managedClusters/{cluster}"
    )


def kubernetes_compute(resource_id: str, name: str = COMPUTE_NAME, namespace: str = "default") -> KubernetesCompute:
    """The AKS cluster (with Azure ML's extension installed) attached to the workspace."""
    return KubernetesCompute(
        name=name,
        resource_id=resource_id,
        namespace=namespace,
        identity=IdentityConfiguration(type="system_assigned"),
        description="AKS GPU cluster for the TF1 scoring server",
    )


def model(path: Path = MODEL_DIR, version: str | None = None) -> Model:
    # No version: Azure ML registers the next one, as the how-to's Model.register did.
    return Model(name=MODEL_NAME, path=str(path), type="custom_model", version=version, description="the how-to's DNN")


def environment() -> Environment:
    return Environment(name=ENVIRONMENT_NAME, image=BASE_IMAGE, conda_file=str(REPO / "myenv.yml"))


def endpoint(name: str = ENDPOINT_NAME, compute: str = COMPUTE_NAME) -> KubernetesOnlineEndpoint:
    return KubernetesOnlineEndpoint(name=name, compute=compute, auth_mode="key")


def data_collector() -> DataCollector:
    collections = {name: DeploymentCollection(enabled="true") for name in COLLECTIONS}
    return DataCollector(collections=collections, rolling_rate="hour", sampling_rate=1.0)


def deployment(
    endpoint_name: str = ENDPOINT_NAME,
    model_asset: Model | str | None = None,
    environment_asset: Environment | str | None = None,
    *,
    name: str = DEPLOYMENT_NAME,
    instance_type: str = INSTANCE_TYPE,
    app_insights: bool = False,
    data_collection: bool = False,
) -> KubernetesOnlineDeployment:
    """The deployment; the model and environment are entities to create with it (default: model() and
    environment()), or the azureml:<name>:<version> ids of registered ones."""
    variables = dict(SERVER_ENVIRONMENT)
    if data_collection:
        variables.update(DATA_COLLECTION_ENVIRONMENT)
    return KubernetesOnlineDeployment(
        name=name,
        endpoint_name=endpoint_name,
        model=model_asset if model_asset is not None else model(),
        # code/ travels whole: score.py puts its folder on sys.path, so tfscoring/ comes with it.
        code_configuration=CodeConfiguration(code=str(REPO / "server"), scoring_script="score.py"),
        environment=environment_asset if environment_asset is not None else environment(),
        environment_variables=variables,
        instance_type=instance_type,
        instance_count=SCALE["min_instances"],
        resources=ResourceRequirementsSettings(
            requests=ResourceSettings(**RESOURCES["requests"]), limits=ResourceSettings(**RESOURCES["limits"])
        ),
        request_settings=OnlineRequestSettings(**REQUEST_SETTINGS),
        liveness_probe=ProbeSettings(**LIVENESS),
        readiness_probe=ProbeSettings(**READINESS),
        scale_settings=TargetUtilizationScaleSettings(**SCALE),
        app_insights_enabled=app_insights,
        data_collector=data_collector() if data_collection else None,
    )


def client_command(python: str, scoring_uri: str, count: int) -> list[str]:
    """The project's client (client/score_client.py, run from the repository root): one image prints its label
    and prediction, as the how-to's query did; more print the accuracy.  The key goes in its environment
    (SCORING_KEY), not on the command line, where any user of the machine could read it."""
    return [python, "-m", "client.score_client", "--url", scoring_uri, "--count", str(count)]


LOADERS = {
    KubernetesCompute: load_compute,
    Model: load_model,
    Environment: load_environment,
    KubernetesOnlineEndpoint: load_online_endpoint,
    KubernetesOnlineDeployment: load_online_deployment,
}


def to_yaml(entity) -> str:
    """The entity as its schema dumps it (what entity.dump writes, for the kinds whose dump writes anything)."""
    return yaml.safe_dump(json.loads(json.dumps(entity._to_dict())), sort_keys=False, width=1000)


def round_trip(entity):
    """The entity's YAML loaded back with azure-ai-ml's loader for its kind (its schema's validation)."""
    return LOADERS[type(entity)](io.StringIO(to_yaml(entity)))


def validate(entity) -> None:
    """Offline: the YAML loads back to the same entity, and the copy converts to the REST object Azure ML gets."""
    copy = round_trip(entity)
    if type(copy) is not type(entity) or copy._to_dict() != entity._to_dict():
        raise ValueError(f"{type(entity).__name__} {entity.name}: its YAML does not load back to the same entity")
    # On the copy: some of azure-ai-ml's conversions change the entity (DataCollector drops its sampling_rate).
    if isinstance(copy, KubernetesOnlineDeployment):
        copy._to_rest_object(location="westeurope")
    elif isinstance(copy, KubernetesOnlineEndpoint):
        copy._to_rest_online_endpoint(location="westeurope")
    else:
        copy._to_rest_object()


def build(args: argparse.Namespace) -> dict[str, object]:
    """Every entity main() sends, by step."""
    resource_id = args.aks_resource_id or aks_resource_id(
        args.subscription or "<subscription>",
        args.aks_resource_group or args.resource_group or "<resource group>",
        args.aks_cluster or "<AKS cluster>",
    )
    return {
        "compute": kubernetes_compute(resource_id, args.compute),
        "model": model(args.model_dir),
        "environment": environment(),
        "endpoint": endpoint(args.endpoint, args.compute),
        "deployment": deployment(
            args.endpoint,
            name=args.deployment,
            instance_type=args.instance_type,
            app_insights=args.app_insights,
            data_collection=args.data_collection,
        ),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.json", help="the workspace's config.json (default: %(default)s)")
    parser.add_argument("--subscription", help="subscription id (instead of --config)")
    parser.add_argument("--resource-group", help="the workspace's resource group (instead of --config)")
    parser.add_argument("--workspace", help="workspace name (instead of --config)")
    parser.add_argument("--aks-cluster", help="the AKS cluster to attach when the compute does not exist yet")
    parser.add_argument("--aks-resource-group", help="its resource group (default: the workspace's)")
    parser.add_argument("--aks-resource-id", help="or its full resource id")
    parser.add_argument("--compute", default=COMPUTE_NAME, help="Kubernetes compute name (default: %(default)s)")
    parser.add_argument("--instance-type", default=INSTANCE_TYPE, help="GPU instance type (default: %(default)s)")
    parser.add_argument("--endpoint", default=ENDPOINT_NAME, help="endpoint name (default: %(default)s)")
    parser.add_argument("--deployment", default=DEPLOYMENT_NAME, help="deployment name (default: %(default)s)")
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR, help="the model/ folder to register")
    parser.add_argument("--app-insights", action="store_true", help="Application Insights for the deployment")
    parser.add_argument("--data-collection", action="store_true", help="collect model_inputs and model_outputs")
    parser.add_argument("--count", type=int, default=100, help="t10k images the client scores (default: %(default)s)")
    default_python = REPO / ".venv" / "bin" / "python"
    parser.add_argument(
        "--client-python",
        default=str(default_python) if default_python.exists() else sys.executable,
        help="a Python with the client's packages, numpy and requests (default: %(default)s)",
    )
    parser.add_argument("--delete", action="store_true", help="delete the endpoint and its deployment at the end")
    parser.add_argument("--detach", action="store_true", help="with --delete, detach the compute too")
    parser.add_argument("--dry-run", action="store_true", help="build, validate and print the entities; send nothing")
    return parser.parse_args(argv)


def dry_run(args: argparse.Namespace) -> None:
    for step, entity in build(args).items():
        validate(entity)
        print(f"# {step}: {type(entity).__name__} {entity.name}, validated")
        print("---")
        print(to_yaml(entity), end="")


def ml_client(args: argparse.Namespace):
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    if args.subscription and args.resource_group and args.workspace:
        return MLClient(credential, args.subscription, args.resource_group, args.workspace)
    return MLClient.from_config(credential, path=args.config)


def gpu_compute(client, compute: KubernetesCompute, instance_type: str):
    """The Kubernetes compute, attached when it is not there yet; warns when the instance type is not known."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        attached = client.compute.get(compute.name)
    except ResourceNotFoundError:
        if "<" in (compute.resource_id or ""):
            raise SystemExit(f"compute {compute.name} is not attached: name the cluster with --aks-cluster") from None
        attached = client.compute.begin_create_or_update(compute).result()
    known = (attached.properties or {}).get("instanceTypes") or {}
    if known and instance_type not in known:
        print(
            f"warning: instance type {instance_type} is not among the cluster's ({', '.join(known)}): "
            "kubectl apply -f docker/aks/v2/instance-type.yml",
            file=sys.stderr,
        )
    return attached


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        dry_run(args)
        return 0
    client = ml_client(args)
    if not args.aks_resource_id and args.aks_cluster and not args.subscription:
        args.subscription = client.subscription_id
        args.resource_group = args.resource_group or client.resource_group_name
    entities = build(args)
    gpu_compute(client, entities["compute"], args.instance_type)
    registered = client.models.create_or_update(entities["model"])
    print(f"model {registered.name}:{registered.version} registered")
    env = client.environments.create_or_update(entities["environment"])
    print(f"environment {env.name}:{env.version} (Azure ML builds its image on the first deployment)")
    client.online_endpoints.begin_create_or_update(entities["endpoint"]).result()
    failed = 0
    try:
        blue = entities["deployment"]
        blue.model = f"azureml:{registered.name}:{registered.version}"
        blue.environment = f"azureml:{env.name}:{env.version}"
        client.online_deployments.begin_create_or_update(blue).result()
        live = client.online_endpoints.get(args.endpoint)
        live.traffic = {blue.name: 100}
        client.online_endpoints.begin_create_or_update(live).result()
        live = client.online_endpoints.get(args.endpoint)
        key = client.online_endpoints.get_keys(args.endpoint).primary_key
        print("scoring URI:", live.scoring_uri)
        for count in sorted({1, args.count}):
            command = client_command(args.client_python, live.scoring_uri, count)
            failed |= subprocess.call(command, cwd=REPO, env={**os.environ, "SCORING_KEY": key})
        print(client.online_deployments.get_logs(blue.name, args.endpoint, lines=50))
    finally:
        if args.delete:  # even when a step above failed: nothing of it is left running
            client.online_endpoints.begin_delete(name=args.endpoint).result()
            print(f"endpoint {args.endpoint} deleted")
            if args.detach:
                client.compute.begin_delete(args.compute, action="Detach").result()
                print(f"compute {args.compute} detached (the AKS cluster itself stays)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

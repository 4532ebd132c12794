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

Safe rollout of a new model version, image or settings (Azure's blue-green steps; docs/azure-ml.md, Safe rollout),
one subcommand per step, each idempotent (run it twice: the second says there is nothing to do), each with --dry-run:

    python docker/aks/deploy_v2.py create-green --model azureml:tf-dnn-mnist:2   # green beside blue, 0 % traffic
    python docker/aks/deploy_v2.py mirror 10      # copy 10 % of live traffic to green (managed endpoints only)
    python docker/aks/deploy_v2.py shift 10       # then 50, then 100: live traffic blue=90 green=10 ...
    python docker/aks/deploy_v2.py delete-blue    # once green takes 100 %
    python docker/aks/deploy_v2.py rollback       # any time before: all traffic back to blue, green deleted
    python docker/aks/deploy_v2.py status         # the endpoint's deployments, traffic and mirrored traffic

--blue and --green name the two deployments (next time: --blue green --green blue). mirror, shift and delete-blue
first score a sample request on green directly (--no-check skips it); a step Azure would refuse, or that would
break the rollout, is refused with the reason before anything is sent (exit status 2).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from copy import deepcopy
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
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
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
# Safe rollout: the new deployment beside DEPLOYMENT_NAME ("blue"), as in Azure's safe-rollout article.
GREEN_NAME = "green"
# Azure mirrors at most 50 % of an endpoint's live traffic, to one deployment, on managed online endpoints only
# ("Test the deployment with mirrored traffic"; the REST API's mirrorTraffic: "values need to sum to utmost 50").
MAX_MIRROR_PERCENT = 50
# A managed online endpoint's deployment names an Azure VM size with a GPU (4 cores: the 2 workers and room).
MANAGED_INSTANCE_TYPE = "Standard_NC4as_T4_v3"
# What green is asked directly before a step: one t10k-sized image of zeros, in the server's {"data": rows} form.
SAMPLE_REQUEST = {"data": [[0.0] * 784]}


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


def environment(image: str = BASE_IMAGE) -> Environment:
    return Environment(name=ENVIRONMENT_NAME, image=image, conda_file=str(REPO / "myenv.yml"))


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
    environment_variables: dict[str, str] | None = None,
) -> KubernetesOnlineDeployment:
    """The deployment; the model and environment are entities to create with it (default: model() and
    environment()), or the azureml:<name>:<version> ids of registered ones.  environment_variables add to (or
    override) the server's settings, as a new deployment's may."""
    return KubernetesOnlineDeployment(
        **_deployment_fields(
            endpoint_name, model_asset, environment_asset, name, app_insights, data_collection, environment_variables
        ),
        instance_type=instance_type,
        resources=ResourceRequirementsSettings(
            requests=ResourceSettings(**RESOURCES["requests"]), limits=ResourceSettings(**RESOURCES["limits"])
        ),
        scale_settings=TargetUtilizationScaleSettings(**SCALE),
    )


def managed_deployment(
    endpoint_name: str = ENDPOINT_NAME,
    model_asset: Model | str | None = None,
    environment_asset: Environment | str | None = None,
    *,
    name: str = GREEN_NAME,
    instance_type: str = MANAGED_INSTANCE_TYPE,
    app_insights: bool = False,
    data_collection: bool = False,
    environment_variables: dict[str, str] | None = None,
) -> ManagedOnlineDeployment:
    """The same deployment on a managed online endpoint (where mirrored traffic works): Azure's VM size instead of
    the cluster's instance type, and no resources or target-utilisation scaling, which managed deployments do not
    take (their autoscale is Azure Monitor's)."""
    return ManagedOnlineDeployment(
        **_deployment_fields(
            endpoint_name, model_asset, environment_asset, name, app_insights, data_collection, environment_variables
        ),
        instance_type=instance_type,
    )


def _deployment_fields(
    endpoint_name: str,
    model_asset: Model | str | None,
    environment_asset: Environment | str | None,
    name: str,
    app_insights: bool,
    data_collection: bool,
    environment_variables: dict[str, str] | None,
) -> dict[str, object]:
    """What a deployment of this server is on either kind of endpoint."""
    variables = dict(SERVER_ENVIRONMENT)
    if data_collection:
        variables.update(DATA_COLLECTION_ENVIRONMENT)
    variables.update(environment_variables or {})
    return {
        "name": name,
        "endpoint_name": endpoint_name,
        "model": model_asset if model_asset is not None else model(),
        # code/ travels whole: score.py puts its folder on sys.path, so tfscoring/ comes with it.
        "code_configuration": CodeConfiguration(code=str(REPO / "server"), scoring_script="score.py"),
        "environment": environment_asset if environment_asset is not None else environment(),
        "environment_variables": variables,
        "instance_count": SCALE["min_instances"],
        "request_settings": OnlineRequestSettings(**REQUEST_SETTINGS),
        "liveness_probe": ProbeSettings(**LIVENESS),
        "readiness_probe": ProbeSettings(**READINESS),
        "app_insights_enabled": app_insights,
        "data_collector": data_collector() if data_collection else None,
    }


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
    ManagedOnlineEndpoint: load_online_endpoint,
    KubernetesOnlineDeployment: load_online_deployment,
    ManagedOnlineDeployment: load_online_deployment,
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
    if isinstance(copy, (KubernetesOnlineDeployment, ManagedOnlineDeployment)):
        copy._to_rest_object(location="westeurope")
    elif isinstance(copy, (KubernetesOnlineEndpoint, ManagedOnlineEndpoint)):
        copy._to_rest_online_endpoint(location="westeurope")
    else:
        copy._to_rest_object()


# --- safe rollout: what each step sends, decided from the endpoint as it is ----------------------------------------
#
# Azure's rules (the safe-rollout article, the endpoint YAML reference, the REST API), checked here before anything
# is sent, since azure-ai-ml's schema checks only that live traffic sums to at most 100 and takes mirror_traffic even
# on a Kubernetes endpoint:
# - live traffic sums to 0 (the endpoint takes none) or 100;
# - mirrored traffic works on managed online endpoints only, to one deployment, at most 50 %;
# - a deployment takes live traffic or mirrored traffic, not both;
# - a deployment with live traffic cannot be deleted.

KUBERNETES_MIRRORING = (
    "endpoint {endpoint} is a Kubernetes online endpoint: Azure ML does not support mirrored traffic on Kubernetes "
    "online endpoints (managed online endpoints only). Compare green with blue under a small share of live traffic "
    "instead (shift 10), or score it directly (green answers requests that carry azureml-model-deployment: {green})"
)


class RolloutError(Exception):
    """A step Azure would refuse, or that would break the rollout: main() prints why and sends nothing."""


def is_managed(endpoint) -> bool:
    return isinstance(endpoint, ManagedOnlineEndpoint)


def live(traffic: dict[str, int] | None) -> dict[str, int]:
    """The deployments that take a share, by name: Azure lists the others at 0 and drops zeroes when it is sent."""
    return {name: int(share) for name, share in (traffic or {}).items() if int(share)}


def traffic_text(traffic: dict[str, int] | None) -> str:
    """As `az ml online-endpoint update --traffic` takes it: "blue=90 green=10"."""
    return " ".join(f"{name}={share}" for name, share in sorted((traffic or {}).items())) or "none"


def parse_traffic(text: str) -> dict[str, int]:
    """ "blue=90 green=10" (az ml's form) to {"blue": 90, "green": 10}."""
    traffic = {}
    for item in text.split():
        name, sep, share = item.partition("=")
        if not (sep and name and share.isdigit()):
            raise RolloutError(f"{item!r}: write each deployment's share as <deployment>=<percent>, e.g. blue=90")
        traffic[name] = int(share)
    return traffic


def check_routing(endpoint, deployments: set[str]) -> None:
    """Azure's rules for an endpoint's traffic and mirror_traffic, for the deployments it has."""
    traffic, mirror = endpoint.traffic or {}, endpoint.mirror_traffic or {}
    unknown = sorted((set(live(traffic)) | set(live(mirror))) - set(deployments))
    if unknown:
        raise RolloutError(f"endpoint {endpoint.name} has no deployment {', '.join(unknown)}")
    if any(not 0 <= int(share) <= 100 for share in [*traffic.values(), *mirror.values()]):
        raise RolloutError(f"traffic {traffic_text(traffic)}: each share is a percentage, 0 to 100")
    if sum(live(traffic).values()) not in (0, 100):
        raise RolloutError(
            f"live traffic {traffic_text(traffic)} sums to {sum(live(traffic).values())}, not 100 (or 0)"
        )
    mirrored = live(mirror)
    if not mirrored:
        return
    if not is_managed(endpoint):
        raise RolloutError(KUBERNETES_MIRRORING.format(endpoint=endpoint.name, green=next(iter(mirrored))))
    if len(mirrored) > 1:
        raise RolloutError(f"mirrored traffic {traffic_text(mirrored)}: Azure mirrors to one deployment only")
    if sum(mirrored.values()) > MAX_MIRROR_PERCENT:
        raise RolloutError(
            f"mirrored traffic {traffic_text(mirrored)}: Azure mirrors at most {MAX_MIRROR_PERCENT} % of live traffic"
        )
    both = sorted(set(mirrored) & set(live(traffic)))
    if both:
        raise RolloutError(
            f"{', '.join(both)} takes live traffic: a deployment takes live or mirrored traffic, not both"
        )


def routed(endpoint, traffic: dict[str, int], mirror: dict[str, int], deployments: set[str]):
    """A copy of the endpoint with this traffic and mirrored traffic, checked; None when it has them already."""
    if live(traffic) == live(endpoint.traffic) and live(mirror) == live(endpoint.mirror_traffic):
        return None
    changed = deepcopy(endpoint)
    changed.traffic, changed.mirror_traffic = dict(traffic), dict(mirror)
    check_routing(changed, deployments)
    return changed


def plan_green(endpoint, deployments: set[str], blue: str, green: str) -> None:
    """create-green: refused where it would change what clients get."""
    if green == blue:
        raise RolloutError(f"green and blue are both {blue}: name the new deployment otherwise (--green)")
    share = live(endpoint.traffic).get(green, 0)
    if green in deployments and share:
        raise RolloutError(
            f"deployment {green} takes {share} % of live traffic: updating it in place is no safe rollout; "
            f"roll back first (rollback), or deploy the new version under another name (--green)"
        )


def plan_mirror(endpoint, deployments: set[str], green: str, percent: int):
    """mirror: green gets a copy of percent % of live traffic (0 stops it); clients still get blue's answers."""
    if not is_managed(endpoint):
        raise RolloutError(KUBERNETES_MIRRORING.format(endpoint=endpoint.name, green=green))
    if not 0 <= percent <= MAX_MIRROR_PERCENT:
        raise RolloutError(f"mirror {percent}: Azure mirrors 0 to {MAX_MIRROR_PERCENT} % of live traffic")
    _require(endpoint, deployments, green)
    share = live(endpoint.traffic).get(green, 0)
    if share and percent:
        raise RolloutError(
            f"deployment {green} takes {share} % of live traffic already: a deployment takes live or mirrored "
            "traffic, not both (mirroring is the step before shift)"
        )
    return routed(endpoint, endpoint.traffic, {green: percent} if percent else {}, deployments)


def plan_shift(endpoint, deployments: set[str], blue: str, green: str, percent: int):
    """shift: green takes percent % of live traffic and blue the rest; green's mirrored traffic stops (a deployment
    takes live or mirrored traffic, not both)."""
    if not 0 <= percent <= 100:
        raise RolloutError(f"shift {percent}: a share of live traffic is 0 to 100 %")
    _require(endpoint, deployments, green)
    _only_between(endpoint, blue, green)
    # Once blue is deleted, green's 100 % is all there is.
    traffic = {blue: 100 - percent} if percent < 100 or blue in deployments else {}
    traffic[green] = percent
    mirror = {name: share for name, share in live(endpoint.mirror_traffic).items() if name != green or not percent}
    return routed(endpoint, traffic, mirror, deployments)


def plan_delete_blue(endpoint, deployments: set[str], blue: str, green: str) -> bool:
    """delete-blue: whether blue is there to delete; refused while blue takes any traffic or green not all of it."""
    if blue not in deployments:
        return False
    traffic, mirror = live(endpoint.traffic), live(endpoint.mirror_traffic)
    if traffic.get(blue) or mirror.get(blue):
        raise RolloutError(
            f"deployment {blue} still takes {traffic.get(blue) or mirror.get(blue)} % of "
            f"{'live' if traffic.get(blue) else 'mirrored'} traffic: shift 100 first"
        )
    if traffic.get(green, 0) != 100:
        raise RolloutError(
            f"green ({green}) takes {traffic.get(green, 0)} % of live traffic (traffic {traffic_text(traffic)}): "
            f"deleting {blue} would leave nothing to roll back to; shift 100 first"
        )
    return True


def plan_rollback(endpoint, deployments: set[str], blue: str, green: str):
    """rollback: all live traffic back to blue and green's mirrored traffic stopped (the endpoint to send, or None
    when it is so already); green is deleted after."""
    if blue not in deployments:
        raise RolloutError(
            f"endpoint {endpoint.name} has no deployment {blue} any more: there is nothing to roll back to"
        )
    _only_between(endpoint, blue, green)
    mirror = {name: share for name, share in live(endpoint.mirror_traffic).items() if name != green}
    return routed(endpoint, {blue: 100}, mirror, deployments)


def _require(endpoint, deployments: set[str], name: str) -> None:
    if name not in deployments:
        raise RolloutError(f"endpoint {endpoint.name} has no deployment {name}: create it first (create-green)")


def _only_between(endpoint, blue: str, green: str) -> None:
    others = {name: share for name, share in live(endpoint.traffic).items() if name not in (blue, green)}
    if others:
        raise RolloutError(
            f"live traffic {traffic_text(endpoint.traffic)} also goes to {', '.join(sorted(others))}: this rollout "
            f"moves traffic between {blue} and {green} only (az ml online-endpoint update --traffic for the rest)"
        )


def planned_endpoint(kind: str, name: str, compute: str, traffic: dict[str, int], mirror: dict[str, int]):
    """For --dry-run: the endpoint as the step would find it (--endpoint-type, --now, --now-mirror)."""
    if kind == "managed":
        return ManagedOnlineEndpoint(name=name, auth_mode="key", traffic=traffic, mirror_traffic=mirror)
    return KubernetesOnlineEndpoint(name=name, compute=compute, auth_mode="key", traffic=traffic, mirror_traffic=mirror)


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


def _workspace_options(add, endpoint_default: str = ENDPOINT_NAME) -> None:
    """The options every step takes: the workspace, the endpoint, --dry-run."""
    add("--config", default="config.json", help="the workspace's config.json (default: %(default)s)")
    add("--subscription", help="subscription id (instead of --config)")
    add("--resource-group", help="the workspace's resource group (instead of --config)")
    add("--workspace", help="workspace name (instead of --config)")
    add("--compute", default=COMPUTE_NAME, help="Kubernetes compute name (default: %(default)s)")
    add("--endpoint", default=endpoint_default, help="endpoint name (default: %(default)s)")
    add("--dry-run", action="store_true", help="build, validate and print the entities; send nothing")


def _deployment_options(add) -> None:
    """The options of a deployment this script creates: blue at first, green in a rollout."""
    add("--instance-type", default=INSTANCE_TYPE, help="GPU instance type (default: %(default)s)")
    add("--model-dir", type=Path, default=MODEL_DIR, help="the model/ folder to register")
    add("--app-insights", action="store_true", help="Application Insights for the deployment")
    add("--data-collection", action="store_true", help="collect model_inputs and model_outputs")


def _suppressed(parser: argparse.ArgumentParser):
    """add_argument for a subcommand's copy of a top-level option: absent unless given after the subcommand, so that
    the value given before it (or the top-level default) stays."""

    def add(*flags, **options):
        if "help" in options:  # argparse cannot show a suppressed default: write the top-level one in
            options["help"] = options["help"].replace("%(default)s", str(options.get("default")))
        options["default"] = argparse.SUPPRESS
        parser.add_argument(*flags, **options)

    return add


def percent(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole percentage") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not a percentage (0 to 100)")
    return value


def _rollout_commands(parser: argparse.ArgumentParser) -> None:
    steps = parser.add_subparsers(
        dest="step",
        metavar="STEP",
        help="a safe-rollout step (without one: the first deployment, blue, with all the traffic)",
    )
    helps = {
        "create-green": "create (or update) green beside blue, at 0 %% of live traffic",
        "mirror": f"copy PERCENT %% (0 to {MAX_MIRROR_PERCENT}; 0 stops it) of live traffic to green; managed "
        "online endpoints only",
        "shift": "send PERCENT %% of live traffic to green and the rest to blue (10, 50, 100)",
        "delete-blue": "delete blue, once green takes 100 %% of live traffic",
        "rollback": "all live traffic back to blue, green's mirrored traffic stopped, green deleted",
        "status": "print the endpoint's deployments, live traffic and mirrored traffic",
    }
    for step, text in helps.items():
        sub = steps.add_parser(step, help=text, description=text.replace("%%", "%"))
        _workspace_options(_suppressed(sub))
        sub.add_argument("--blue", default=DEPLOYMENT_NAME, help="the deployment now live (default: %(default)s)")
        sub.add_argument("--green", default=GREEN_NAME, help="the new deployment (default: %(default)s)")
        if step in ("mirror", "shift"):
            sub.add_argument("percent", type=percent, help="percentage of live traffic")
        if step not in ("mirror", "shift", "delete-blue"):  # the steps that give green no more traffic
            sub.set_defaults(check=False, sample_request=None)
        else:
            sub.add_argument(
                "--no-check",
                dest="check",
                action="store_false",
                help="do not score a sample request on green directly before the step",
            )
            sub.add_argument("--sample-request", type=Path, help="the request to score (default: a zero image)")
        if step == "create-green":
            _deployment_options(_suppressed(sub))
            sub.add_argument("--model", help="a registered model, azureml:<name>:<version> (default: --model-dir)")
            sub.add_argument("--environment", help="a registered environment, azureml:<name>:<version>")
            sub.add_argument("--image", default=BASE_IMAGE, help="without --environment: its base image")
            sub.add_argument(
                "--env",
                action="append",
                default=[],
                metavar="NAME=VALUE",
                help="a server setting for green, added to (or replacing) blue's; repeatable",
            )
            sub.add_argument(
                "--managed-instance-type",
                default=MANAGED_INSTANCE_TYPE,
                help="on a managed online endpoint: the VM size (default: %(default)s)",
            )
        sub.add_argument(
            "--endpoint-type",
            choices=("kubernetes", "managed"),
            default="kubernetes",
            help="with --dry-run: the kind of endpoint to plan for (a real run asks Azure; default: %(default)s)",
        )
        sub.add_argument(
            "--now",
            help="with --dry-run: the endpoint's live traffic to plan from, as az ml writes it (default: "
            "'blue=100 green=0', for create-green 'blue=100')",
        )
        sub.add_argument("--now-mirror", default="", help="with --dry-run: its mirrored traffic, e.g. 'green=10'")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _workspace_options(parser.add_argument)
    parser.add_argument("--aks-cluster", help="the AKS cluster to attach when the compute does not exist yet")
    parser.add_argument("--aks-resource-group", help="its resource group (default: the workspace's)")
    parser.add_argument("--aks-resource-id", help="or its full resource id")
    _deployment_options(parser.add_argument)
    parser.add_argument("--deployment", default=DEPLOYMENT_NAME, help="deployment name (default: %(default)s)")
    parser.add_argument("--count", type=int, default=100, help="t10k images the client scores (default: %(default)s)")
    default_python = REPO / ".venv" / "bin" / "python"
    parser.add_argument(
        "--client-python",
        default=str(default_python) if default_python.exists() else sys.executable,
        help="a Python with the client's packages, numpy and requests (default: %(default)s)",
    )
    parser.add_argument("--delete", action="store_true", help="delete the endpoint and its deployment at the end")
    parser.add_argument("--detach", action="store_true", help="with --delete, detach the compute too")
    _rollout_commands(parser)
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


def parse_settings(items: list[str]) -> dict[str, str]:
    """--env NAME=VALUE items to environment variables."""
    settings = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not (sep and name):
            raise RolloutError(f"--env {item!r}: write a setting as NAME=VALUE")
        settings[name] = value
    return settings


def green_deployment(args: argparse.Namespace, managed: bool, model_asset=None, environment_asset=None):
    """create-green's deployment: blue's settings with green's name, model, environment and --env settings, of the
    endpoint's kind.  The model and environment: registered ones (args, or the ids passed), else entities to create."""
    fields = {
        "name": args.green,
        "app_insights": args.app_insights,
        "data_collection": args.data_collection,
        "environment_variables": parse_settings(args.env),
    }
    model_asset = model_asset or args.model or model(args.model_dir)
    environment_asset = environment_asset or args.environment or environment(args.image)
    if managed:
        return managed_deployment(
            args.endpoint, model_asset, environment_asset, instance_type=args.managed_instance_type, **fields
        )
    return deployment(args.endpoint, model_asset, environment_asset, instance_type=args.instance_type, **fields)


def plan_step(args: argparse.Namespace, endpoint, deployments: set[str]) -> list[tuple[str, object]]:
    """What the step sends, in order: ("endpoint", the endpoint with its new traffic) or ("delete", a deployment's
    name); nothing when the endpoint is so already.  Raises RolloutError where the step is refused."""
    if args.step == "mirror":
        changed = plan_mirror(endpoint, deployments, args.green, args.percent)
    elif args.step == "shift":
        changed = plan_shift(endpoint, deployments, args.blue, args.green, args.percent)
    elif args.step == "delete-blue":
        return [("delete", args.blue)] if plan_delete_blue(endpoint, deployments, args.blue, args.green) else []
    elif args.step == "rollback":
        changed = plan_rollback(endpoint, deployments, args.blue, args.green)
        deleted = [("delete", args.green)] if args.green in deployments else []
        return ([("endpoint", changed)] if changed else []) + deleted
    else:
        raise ValueError(args.step)
    return [("endpoint", changed)] if changed else []


def exposes_green(args: argparse.Namespace, endpoint, actions: list[tuple[str, object]]) -> bool:
    """Whether the step gives green more of the clients' requests (or takes away blue): then green is scored first.
    Steps back (a smaller share, mirroring stopped, rollback) never wait on green."""
    if args.step == "delete-blue":
        return bool(actions)
    for kind, changed in actions:
        if kind == "endpoint":
            for before, after in (
                (endpoint.traffic, changed.traffic),
                (endpoint.mirror_traffic, changed.mirror_traffic),
            ):
                if live(after).get(args.green, 0) > live(before).get(args.green, 0):
                    return True
    return False


def check_deployment(client, endpoint_name: str, name: str, request: Path | None) -> None:
    """Score a request on the deployment directly (azure-ai-ml sends azureml-model-deployment: <name>, so the
    traffic split does not apply): a deployment that does not answer with JSON gets no traffic."""
    with tempfile.TemporaryDirectory() as folder:
        if request is None:
            request = Path(folder) / "sample-request.json"
            request.write_text(json.dumps(SAMPLE_REQUEST))
        try:
            answer = client.online_endpoints.invoke(
                endpoint_name=endpoint_name, request_file=str(request), deployment_name=name
            )
        except Exception as err:  # whatever went wrong (status, network, refusal), green did not answer
            raise RolloutError(f"deployment {name} did not answer a sample request: {err}") from None
    try:
        json.loads(answer)
    except (TypeError, ValueError):
        raise RolloutError(
            f"deployment {name} answered a sample request with {str(answer)[:200]!r}, not JSON"
        ) from None
    print(f"deployment {name} answered a sample request directly: {str(answer)[:200]}")


def describe(endpoint) -> str:
    kind = "managed" if is_managed(endpoint) else "Kubernetes"
    return (
        f"{kind} online endpoint {endpoint.name}: live traffic {traffic_text(live(endpoint.traffic))}, "
        f"mirrored traffic {traffic_text(live(endpoint.mirror_traffic))}"
    )


def run_step(args: argparse.Namespace, client) -> None:
    """A safe-rollout step on the endpoint as Azure has it now."""
    endpoint = client.online_endpoints.get(args.endpoint)
    deployments = {found.name for found in client.online_deployments.list(args.endpoint)}
    if args.step == "status":
        print(f"{describe(endpoint)}; deployments {', '.join(sorted(deployments)) or 'none'}")
        return
    if args.step == "create-green":
        plan_green(endpoint, deployments, args.blue, args.green)
        model_id = args.model
        if not model_id:
            registered = client.models.create_or_update(model(args.model_dir))
            model_id = f"azureml:{registered.name}:{registered.version}"
            print(f"model {registered.name}:{registered.version} registered")
        environment_id = args.environment
        if not environment_id:
            env = client.environments.create_or_update(environment(args.image))
            environment_id = f"azureml:{env.name}:{env.version}"
            print(f"environment {env.name}:{env.version} on {args.image}")
        green = green_deployment(args, is_managed(endpoint), model_id, environment_id)
        client.online_deployments.begin_create_or_update(green).result()
        after = client.online_endpoints.get(args.endpoint)
        verb = "updated" if args.green in deployments else "created"
        print(f"deployment {args.green} {verb} with {model_id}, {environment_id}; {describe(after)}")
        return
    actions = plan_step(args, endpoint, deployments)
    if not actions:
        print(f"{args.step}: nothing to do, {describe(endpoint)}; deployments {', '.join(sorted(deployments))}")
        return
    if args.check and exposes_green(args, endpoint, actions):
        check_deployment(client, args.endpoint, args.green, args.sample_request)
    before = describe(endpoint)
    for kind, thing in actions:
        if kind == "endpoint":
            client.online_endpoints.begin_create_or_update(thing).result()
            print(f"{describe(thing)} (was: {before.split(': ', 1)[1]})")
        else:
            client.online_deployments.begin_delete(name=thing, endpoint_name=args.endpoint).result()
            print(f"deployment {thing} of endpoint {args.endpoint} deleted")


def dry_run_step(args: argparse.Namespace) -> None:
    """The step planned on the endpoint as --endpoint-type, --now and --now-mirror describe it; what it would send,
    validated and printed (YAML documents, with # lines saying what happens)."""
    default = f"{args.blue}=100" if args.step == "create-green" else f"{args.blue}=100 {args.green}=0"
    traffic, mirror = parse_traffic(default if args.now is None else args.now), parse_traffic(args.now_mirror)
    endpoint = planned_endpoint(args.endpoint_type, args.endpoint, args.compute, traffic, mirror)
    deployments = set(traffic) | set(mirror)
    check_routing(endpoint, deployments)
    print(f"# {args.step}, planned on the {describe(endpoint)}; deployments {', '.join(sorted(deployments))}")
    if args.step == "status":
        return
    if args.step == "create-green":
        plan_green(endpoint, deployments, args.blue, args.green)
        actions = [("deployment", green_deployment(args, is_managed(endpoint)))]
    else:
        actions = plan_step(args, endpoint, deployments)
    if not actions:
        print(f"# {args.step}: nothing to do")
    elif args.step != "create-green" and args.check and exposes_green(args, endpoint, actions):
        print(f"# first: a sample request scored on {args.green} directly (azureml-model-deployment: {args.green})")
    for kind, thing in actions:
        if kind == "delete":
            print(f"# then: deployment {thing} of endpoint {args.endpoint} deleted")
            continue
        validate(thing)
        print(f"# {args.step}: {type(thing).__name__} {thing.name}, validated")
        print("---")
        print(to_yaml(thing), end="")


def rollout(args: argparse.Namespace) -> int:
    try:
        if args.dry_run:
            dry_run_step(args)
        else:
            run_step(args, ml_client(args))
    except RolloutError as err:
        print(f"deploy_v2.py {args.step}: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step:
        return rollout(args)
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

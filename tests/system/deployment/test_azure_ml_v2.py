"""Azure ML v2, the main path, checked offline with azure-ai-ml's own schemas: nothing here reaches Azure.

docker/aks/deploy_v2.py's builders and docker/aks/v2/*.yml: the entities load and dump through azure-ai-ml's
schemas and convert to the REST objects Azure ML would get; the script and the YAML describe the same
deployment; the GPU instance type is the cluster's; data collection is off unless the variant turns it on; and
the request settings and environment variables agree with the server's own settings (server/tfscoring/config.py,
read with ast: this venv has neither TensorFlow nor pydantic).
"""

from __future__ import annotations

import ast
import importlib.util
import io
import operator
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from azure.ai.ml import load_compute, load_environment, load_model, load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import KubernetesOnlineDeployment, KubernetesOnlineEndpoint

REPO = Path(__file__).resolve().parents[3]
V2 = REPO / "docker" / "aks" / "v2"
DEPLOYMENTS = ("deployment.yml", "deployment-datacollection.yml")
LOCATION = "westeurope"

# What else reads the deployment's environment on this path: azmlinfsrv 1.5.1 (its constants.py and
# server/config.py), gunicorn (azmlinfsrv runs it) and glibc. serve.py and its nginx do not run here.
AZMLINFSRV = {
    "WORKER_COUNT",
    "WORKER_TIMEOUT",
    "WORKER_PRELOAD",
    "SCORING_TIMEOUT_MS",
    "AZUREML_LOG_LEVEL",
    "AML_APP_INSIGHTS_ENABLED",
    "AML_APP_INSIGHTS_KEY",
    "APP_INSIGHTS_LOG_RESPONSE_ENABLED",
    "AML_CORS_ORIGINS",
}
OTHERS = {"GUNICORN_CMD_ARGS", "MALLOC_MMAP_THRESHOLD_"}


def deploy_v2():
    spec = importlib.util.spec_from_file_location("deploy_v2", REPO / "docker" / "aks" / "deploy_v2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def v2():
    return deploy_v2()


def yaml_deployment(name: str = "deployment.yml") -> KubernetesOnlineDeployment:
    return load_online_deployment(V2 / name)


def instance_type() -> dict:
    return yaml.safe_load((V2 / "instance-type.yml").read_text())


# --- the server's settings, from config.py's source ------------------------------------------------------------


def server_fields(class_name: str) -> dict[str, dict]:
    """The pydantic fields of a settings class: {ENV_NAME: {"annotation", "default", "gt", "ge", "lt", "le"}}."""
    tree = ast.parse((REPO / "server" / "tfscoring" / "config.py").read_text())
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)
    fields = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        field = {"annotation": ast.unparse(node.annotation)}
        call = node.value
        if isinstance(call, ast.Call) and ast.unparse(call.func) == "pydantic.Field":
            if call.args:
                field["default"] = _literal(call.args[0])
            field.update({k.arg: _literal(k.value) for k in call.keywords if k.arg in ("gt", "ge", "lt", "le")})
        fields[node.target.id.upper()] = field
    return fields


def _literal(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None  # an expression such as 64 * MiB


SETTINGS = server_fields("Settings")  # what score.py reads, in every worker
SERVER_ONLY = set(server_fields("ServerSettings")) - set(SETTINGS)  # what only serve.py reads (nginx, supervisor)


def accepts(field: dict, value: str) -> bool:
    """Whether pydantic would take the environment's string for the field (the kinds config.py uses)."""
    annotation = field["annotation"]
    if annotation.startswith("Literal["):
        return value in ast.literal_eval(f"({annotation.removeprefix('Literal[')[:-1]},)")
    try:
        if annotation.startswith("bool"):
            return value.lower() in {"0", "1", "true", "false", "yes", "no", "on", "off"}
        if "int" in annotation.lower():
            number = int(value)
        elif annotation.startswith("float"):
            number = float(value)
        else:
            return True  # a string, a path
    except ValueError:
        return False
    if any(field.get(name) is not None and not check(number, field[name]) for name, check in BOUNDS.items()):
        return False
    return number > 0 if "PositiveInt" in annotation else number >= 0 if "NonNegativeInt" in annotation else True


BOUNDS = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def every_deployment(v2) -> list[tuple[str, KubernetesOnlineDeployment]]:
    built = [
        ("deploy_v2.deployment()", v2.deployment()),
        ("deploy_v2.deployment(data_collection=True)", v2.deployment(data_collection=True)),
    ]
    return [(name, yaml_deployment(name)) for name in DEPLOYMENTS] + built


# --- the script's entities through azure-ai-ml's schemas -------------------------------------------------------

LOADERS = {
    "compute": load_compute,
    "model": load_model,
    "environment": load_environment,
    "endpoint": load_online_endpoint,
    "deployment": load_online_deployment,
}


def built_entities(v2) -> dict[str, object]:
    resource_id = v2.aks_resource_id("00000000-0000-0000-0000-000000000000", "rg", "aks-gpu")
    return {
        "compute": v2.kubernetes_compute(resource_id),
        "model": v2.model(),
        "environment": v2.environment(),
        "endpoint": v2.endpoint(),
        "deployment": v2.deployment(app_insights=True, data_collection=True),
    }


@pytest.mark.parametrize("step", list(LOADERS))
def test_each_built_entity_dumps_and_loads_back_through_azure_ai_mls_schema_and_converts_to_rest(v2, step):
    entity = built_entities(v2)[step]
    text = v2.to_yaml(entity)
    loaded = LOADERS[step](io.StringIO(text))
    assert type(loaded) is type(entity)
    assert loaded._to_dict() == entity._to_dict()
    if step == "deployment":
        rest = loaded._to_rest_object(location=LOCATION).properties
        assert rest.instance_type == v2.INSTANCE_TYPE
        assert rest.endpoint_compute_type == "Kubernetes"
        assert rest.app_insights_enabled is True
        assert {k: c.data_collection_mode for k, c in rest.data_collector.collections.items()} == {
            "model_inputs": "enabled",
            "model_outputs": "enabled",
        }
    elif step == "endpoint":
        rest = loaded._to_rest_online_endpoint(location=LOCATION).properties
        assert (rest.compute, rest.auth_mode) == (v2.COMPUTE_NAME, "Key")
    else:
        loaded._to_rest_object()
    v2.validate(entity)  # what --dry-run does, on the entity main() would send


def test_the_built_compute_attaches_an_aks_cluster_with_a_system_identity(v2):
    rest = built_entities(v2)["compute"]._to_rest_object()
    assert rest.properties.compute_type == "Kubernetes"
    assert rest.properties.resource_id.endswith("/providers/Microsoft.ContainerService/managedClusters/aks-gpu")
    assert rest.identity.type == "SystemAssigned"


def test_the_built_model_is_the_registered_model_folder_score_py_reads(v2):
    model = v2.model()
    assert Path(model.path) == REPO / "models" / "tf-dnn-mnist" / "1" / "model"
    # score.py's defaults: $AZUREML_MODEL_DIR/<MODEL_FOLDER>/<MODEL_FILE_PREFIX>.*; v2 keeps the folder's name.
    assert Path(model.path).name == SETTINGS["MODEL_FOLDER"]["default"]


# --- the YAML the CLI sends, and the script, describe one deployment ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "data_collection"), [("deployment.yml", False), ("deployment-datacollection.yml", True)]
)
def test_the_script_builds_the_deployment_the_yaml_describes(v2, name, data_collection):
    built, described = v2.deployment(data_collection=data_collection), yaml_deployment(name)
    ours, theirs = built._to_dict(), described._to_dict()
    for key in (
        "name",
        "endpoint_name",
        "instance_type",
        "instance_count",
        "environment_variables",
        "app_insights_enabled",
        "request_settings",
        "liveness_probe",
        "readiness_probe",
        "scale_settings",
        "resources",
        "data_collector",
    ):
        assert ours.get(key) == theirs.get(key), key
    assert Path(built.code_configuration.code) == (V2 / described.code_configuration.code).resolve()
    assert built.code_configuration.scoring_script == described.code_configuration.scoring_script == "score.py"
    assert Path(built.model.path) == (V2 / described.model.path).resolve()
    assert built.model.name == described.model.name
    assert (built.environment.name, built.environment.image) == (
        described.environment.name,
        described.environment.image,
    )
    assert built.environment.conda_file == described.environment.conda_file  # myenv.yml, read by both


def test_the_script_and_the_endpoint_yaml_name_the_same_endpoint_and_compute(v2):
    described = load_online_endpoint(V2 / "endpoint.yml")
    assert isinstance(described, KubernetesOnlineEndpoint)
    assert (described.name, described.compute, described.auth_mode) == (v2.ENDPOINT_NAME, v2.COMPUTE_NAME, "key")
    assert v2.endpoint()._to_dict() == described._to_dict()


def test_every_path_uses_the_dockerfiles_base_image(v2):
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert base == v2.BASE_IMAGE
    for name in DEPLOYMENTS:
        assert yaml_deployment(name).environment.image == base


# --- the GPU instance type --------------------------------------------------------------------------------------


def test_the_instance_type_is_a_gpu_instance_type_of_azure_mls_extension():
    crd = instance_type()
    assert (crd["apiVersion"], crd["kind"]) == ("amlarc.azureml.com/v1alpha1", "InstanceType")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", crd["metadata"]["name"])  # a Kubernetes name
    resources = crd["spec"]["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) == 1
    assert "nvidia.com/gpu" not in resources["requests"]  # Kubernetes takes an extended resource's limit as request
    assert crd["spec"]["nodeSelector"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_deployments_load_as_kubernetes_deployments_on_the_gpu_instance_type_with_its_resources(name):
    deployment = yaml_deployment(name)
    assert isinstance(deployment, KubernetesOnlineDeployment)
    crd = instance_type()
    assert deployment.instance_type == crd["metadata"]["name"]
    # The deployment's resources are the instance type's, so the pod is the same whichever Azure ML applies.
    for kind in ("requests", "limits"):
        ours, theirs = deployment._to_dict()["resources"][kind], crd["spec"]["resources"][kind]
        assert (ours["cpu"], ours["memory"]) == (str(theirs["cpu"]), str(theirs["memory"])), kind
    assert int(deployment.resources.limits.gpu) == int(crd["spec"]["resources"]["limits"]["nvidia.com/gpu"])
    rest = deployment._to_rest_object(location=LOCATION).properties
    assert rest.instance_type == crd["metadata"]["name"]
    assert rest.scale_settings.scale_type == "TargetUtilization"


# --- data collection --------------------------------------------------------------------------------------------


def test_data_collection_is_off_in_the_deployment_and_on_for_model_inputs_and_outputs_in_the_variant():
    plain, collecting = yaml_deployment("deployment.yml"), yaml_deployment("deployment-datacollection.yml")
    assert plain.data_collector is None
    assert "DATA_COLLECTION" not in plain.environment_variables
    assert SETTINGS["DATA_COLLECTION"]["default"] is False  # the server's own default: off
    collections = collecting.data_collector.collections
    assert {name: c.enabled for name, c in collections.items()} == {"model_inputs": "true", "model_outputs": "true"}
    assert collecting.environment_variables["DATA_COLLECTION"] == "1"
    sample = float(collecting.environment_variables["DATA_COLLECTION_SAMPLE"])
    assert 0 < sample <= 1
    # The server samples; the collector keeps what it is sent, or the two rates would multiply.
    assert collecting.data_collector.sampling_rate in (None, 1.0)
    rest = collecting._to_rest_object(location=LOCATION).properties.data_collector
    assert {name: c.data_collection_mode for name, c in rest.collections.items()} == {
        "model_inputs": "enabled",
        "model_outputs": "enabled",
    }


def test_the_data_collection_variant_is_the_deployment_with_only_data_collection_added():
    plain, collecting = yaml_deployment("deployment.yml")._to_dict(), yaml_deployment("deployment-datacollection.yml")
    collecting = collecting._to_dict()
    added = set(collecting.pop("environment_variables")) - set(plain.pop("environment_variables"))
    assert added == {"DATA_COLLECTION", "DATA_COLLECTION_SAMPLE"}
    collecting.pop("data_collector")
    assert collecting == plain


# --- agreement with the server's own settings -------------------------------------------------------------------


@pytest.mark.parametrize("index", range(4), ids=["deployment.yml", "datacollection.yml", "built", "built-dc"])
def test_the_router_waits_longer_than_the_server_takes_to_answer(v2, index):
    """Azure ML's inference router gives up after request_timeout_ms. The server's own longest answer time is
    its queue wait (MAX_QUEUE_WAIT_MS, then a 503 with the reason) and a session call up to the hang watchdog
    (SESSION_HANG_S); the router must wait longer than both, plus its own queue, so that the server answers first.
    The front door's UPSTREAM_TIMEOUT_S (nginx, 120 s) is not the bound: serve.py and nginx do not run on this
    path (Azure ML starts azmlinfsrv itself), and where they run they are inside the router, so their
    timeouts would have to be shorter than its, not longer.
    """
    _, deployment = every_deployment(v2)[index]
    env, settings = deployment.environment_variables, deployment.request_settings
    queue_wait_ms = int(env.get("MAX_QUEUE_WAIT_MS", SETTINGS["MAX_QUEUE_WAIT_MS"]["default"]))
    hang_ms = 1000 * float(env.get("SESSION_HANG_S", SETTINGS["SESSION_HANG_S"]["default"]))
    assert settings.request_timeout_ms > settings.max_queue_wait_ms + queue_wait_ms + hang_ms
    # azmlinfsrv's own limits (SCORING_TIMEOUT_MS 1 h, gunicorn's WORKER_TIMEOUT 300 s) are longer still.
    assert int(env.get("SCORING_TIMEOUT_MS", 3_600_000)) > settings.request_timeout_ms
    assert 1000 * int(env.get("WORKER_TIMEOUT", 300)) > settings.request_timeout_ms


@pytest.mark.parametrize("index", range(4), ids=["deployment.yml", "datacollection.yml", "built", "built-dc"])
def test_the_router_lets_in_as_many_requests_as_the_workers_threads_so_that_batching_happens(v2, index):
    _, deployment = every_deployment(v2)[index]
    env = deployment.environment_variables
    workers = int(env["WORKER_COUNT"])
    threads = int(shlex.split(env["GUNICORN_CMD_ARGS"])[shlex.split(env["GUNICORN_CMD_ARGS"]).index("--threads") + 1])
    assert workers * threads > 1
    assert deployment.request_settings.max_concurrent_requests_per_instance >= workers * threads
    # One worker per requested core: a worker's Python is bound by one.
    assert workers <= float(deployment.resources.requests.cpu)
    assert env["REQUIRE_GPU"] == "1" and int(deployment.resources.limits.gpu) >= 1


@pytest.mark.parametrize("index", range(4), ids=["deployment.yml", "datacollection.yml", "built", "built-dc"])
def test_every_environment_variable_is_a_setting_read_on_this_path_with_a_value_it_accepts(v2, index):
    name, deployment = every_deployment(v2)[index]
    env = deployment.environment_variables
    dead = set(env) & SERVER_ONLY
    assert not dead, f"{name}: {sorted(dead)} are serve.py's (nginx, supervisor), which Azure ML does not run"
    unknown = set(env) - set(SETTINGS) - AZMLINFSRV - OTHERS
    assert not unknown, f"{name}: {sorted(unknown)} are none of server/tfscoring/config.py's, azmlinfsrv's or others'"
    refused = {k: v for k, v in env.items() if k in SETTINGS and not accepts(SETTINGS[k], v)}
    assert not refused, f"{name}: the server would refuse {refused}"


def test_the_settings_parser_reads_the_fields_and_their_bounds():
    assert SETTINGS["MAX_QUEUE_WAIT_MS"]["default"] == 5000
    assert SETTINGS["DATA_COLLECTION_SAMPLE"] == {"annotation": "float", "default": 1.0, "gt": 0, "le": 1}
    assert accepts(SETTINGS["DATA_COLLECTION_SAMPLE"], "0.5") and not accepts(SETTINGS["DATA_COLLECTION_SAMPLE"], "2")
    assert not accepts(SETTINGS["WORKER_COUNT"], "0") and accepts(SETTINGS["WORKER_COUNT"], "2")
    assert accepts(SETTINGS["LOG_REQUESTS"], "errors") and not accepts(SETTINGS["LOG_REQUESTS"], "some")
    assert {"UPSTREAM_TIMEOUT_S", "FRONT_DOOR"} <= SERVER_ONLY and "WORKER_COUNT" not in SERVER_ONLY


# --- the script: its client call, its main flow against a stand-in MLClient, --dry-run ------------------------------


def test_the_client_command_uses_the_projects_clients_own_options(v2):
    command = v2.client_command("python", "http://10.0.0.4/api/v1/endpoint/tfscoring/score", 100)
    assert command[1:3] == ["-m", "client.score_client"]
    client = ast.parse((REPO / "client" / "score_client.py").read_text())
    options = {
        node.args[0].value
        for node in ast.walk(client)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"
    }
    assert {arg for arg in command if arg.startswith("--")} <= options


def test_main_sends_every_step_in_order_routes_all_traffic_queries_and_deletes(v2, capsys):
    from azure.core.exceptions import ResourceNotFoundError

    client = mock.MagicMock()
    client.subscription_id, client.resource_group_name = "sub", "rg"
    client.compute.get.side_effect = ResourceNotFoundError("no such compute")
    client.compute.begin_create_or_update.return_value.result.return_value.properties = {}
    client.models.create_or_update.return_value = mock.Mock(version="3")
    client.models.create_or_update.return_value.name = "tf-dnn-mnist"
    client.environments.create_or_update.return_value = mock.Mock(version="2")
    client.environments.create_or_update.return_value.name = "tfscoring-gpu"
    endpoint = mock.Mock(scoring_uri="https://tfscoring.example/score", traffic={})
    client.online_endpoints.get.return_value = endpoint
    client.online_endpoints.get_keys.return_value.primary_key = "k3y"
    client.online_deployments.get_logs.return_value = "the deployment's log"
    with (
        mock.patch.object(v2, "ml_client", return_value=client),
        mock.patch.object(v2.subprocess, "call", return_value=0) as call,
    ):
        assert v2.main(["--aks-cluster", "aks-gpu", "--delete", "--detach", "--count", "100"]) == 0

    attached = client.compute.begin_create_or_update.call_args.args[0]
    assert attached.resource_id == v2.aks_resource_id("sub", "rg", "aks-gpu")
    sent = client.online_deployments.begin_create_or_update.call_args.args[0]
    assert (sent.model, sent.environment) == ("azureml:tf-dnn-mnist:3", "azureml:tfscoring-gpu:2")
    assert sent.instance_type == v2.INSTANCE_TYPE and sent.data_collector is None
    assert endpoint.traffic == {"blue": 100}
    assert [c.args[0][-1] for c in call.call_args_list] == ["1", "100"]  # the how-to's one image, then accuracy
    # The key reaches the client in its environment, never on its command line (which `ps` shows).
    assert all(c.kwargs["cwd"] == REPO and c.kwargs["env"]["SCORING_KEY"] == "k3y" for c in call.call_args_list)
    assert not any("k3y" in c.args[0] for c in call.call_args_list)
    client.online_endpoints.begin_delete.assert_called_once_with(name="tfscoring")
    client.compute.begin_delete.assert_called_once_with("gpu-k8s", action="Detach")
    order = [c[0] for c in client.mock_calls if not c[0].endswith(("result", "get", "get_keys"))]
    steps = [
        "compute.begin_create_or_update",
        "models.create_or_update",
        "environments.create_or_update",
        "online_endpoints.begin_create_or_update",
        "online_deployments.begin_create_or_update",
        "online_endpoints.begin_create_or_update",
        "online_deployments.get_logs",
        "online_endpoints.begin_delete",
        "compute.begin_delete",
    ]
    assert [step for step in order if step in steps] == steps
    out = capsys.readouterr().out
    assert "scoring URI: https://tfscoring.example/score" in out and "the deployment's log" in out
    assert "k3y" not in out


def test_main_reuses_an_attached_compute(v2):
    client = mock.MagicMock()
    client.compute.get.return_value.properties = {"instanceTypes": {"gpu1": {}}}
    client.online_endpoints.get_keys.return_value.primary_key = "k3y"
    with (
        mock.patch.object(v2, "ml_client", return_value=client),
        mock.patch.object(v2.subprocess, "call", return_value=0),
    ):
        assert v2.main([]) == 0
    client.compute.begin_create_or_update.assert_not_called()
    client.online_endpoints.begin_delete.assert_not_called()


def test_dry_run_validates_and_prints_every_entity_without_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "MSI_", "IDENTITY_"))}
    env["HOME"] = str(tmp_path)  # no az login cache either
    result = subprocess.run(
        [sys.executable, str(REPO / "docker" / "aks" / "deploy_v2.py"), "--dry-run", "--data-collection"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["name"] for d in documents] == ["gpu-k8s", "tf-dnn-mnist", "tfscoring-gpu", "tfscoring", "blue"]
    assert documents[-1]["instance_type"] == "gpu1"
    assert set(documents[-1]["data_collector"]["collections"]) == {"model_inputs", "model_outputs"}
    for step in ("compute", "model", "environment", "endpoint", "deployment"):
        assert f"# {step}: " in result.stdout


# --- docs/azure-ml.md ----------------------------------------------------------------------------------------------


def test_the_walkthrough_shows_the_instance_type_and_base_image_the_files_use(v2):
    text = (REPO / "docs" / "azure-ml.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]
    assert instance_type() in blocks
    assert f"--image {v2.BASE_IMAGE}" in text
    for path in re.findall(r"docker/aks/v2/[\w.-]+\.yml", text):
        assert (REPO / path).is_file(), path


def test_the_walkthroughs_overrides_of_model_and_environment_load():
    text = (REPO / "docs" / "azure-ml.md").read_text()
    overrides = re.search(r"online-deployment create -f docker/aks/v2/deployment.yml .*?--set (.*)$", text, re.DOTALL)
    pairs = dict(item.split("=", 1) for item in overrides.group(1).splitlines()[0].split())
    assert pairs == {"model": "azureml:tf-dnn-mnist:1", "environment": "azureml:tfscoring-gpu:1"}
    deployment = load_online_deployment(V2 / "deployment.yml", params_override=[{k: v} for k, v in pairs.items()])
    assert (deployment.model, deployment.environment) == ("tf-dnn-mnist:1", "tfscoring-gpu:1")  # registered assets
    deployment._to_rest_object(location=LOCATION)


def test_main_with_delete_deletes_the_endpoint_when_the_deployment_fails(v2):
    client = mock.MagicMock()
    client.online_deployments.begin_create_or_update.side_effect = RuntimeError("image build failed")
    with mock.patch.object(v2, "ml_client", return_value=client), pytest.raises(RuntimeError, match="image build"):
        v2.main(["--delete"])
    client.online_endpoints.begin_delete.assert_called_once_with(name="tfscoring")
    client.compute.begin_delete.assert_not_called()

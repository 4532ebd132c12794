"""Safe rollout on Azure ML (docker/aks/deploy_v2.py's steps), checked offline: nothing here reaches Azure.

Each step's entities (the green deployment; the endpoint with its traffic and mirror_traffic) are built by the script,
validated through azure-ai-ml's own schemas and converted to the REST objects Azure ML would get; the rules Azure
applies and azure-ai-ml does not check (live traffic sums to 100 or 0, mirrored traffic only on managed endpoints, to
one deployment, at most 50 %, never to a deployment with live traffic, no deleting a deployment with traffic) refuse a
step before anything is sent. main() runs each step against a stand-in MLClient (Azure is not what is tested), and
--dry-run runs as a program with no credentials.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import (
    KubernetesOnlineDeployment,
    KubernetesOnlineEndpoint,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
)

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "docker" / "aks" / "deploy_v2.py"
LOCATION = "westeurope"


@pytest.fixture(scope="module")
def v2():
    spec = importlib.util.spec_from_file_location("deploy_v2_rollout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def endpoint(v2, kind: str = "kubernetes", traffic: str = "blue=100 green=0", mirror: str = ""):
    return v2.planned_endpoint(kind, "tfscoring", "gpu-k8s", v2.parse_traffic(traffic), v2.parse_traffic(mirror))


def loaded_endpoint(v2, entity):
    """The endpoint as azure-ai-ml's schema loads its YAML, and the REST object's properties it converts to."""
    v2.validate(entity)
    loaded = load_online_endpoint(io.StringIO(v2.to_yaml(entity)))
    return loaded, loaded._to_rest_online_endpoint(location=LOCATION).properties


def args(v2, *argv: str):
    return v2.parse_args(list(argv))


# --- create-green ------------------------------------------------------------------------------------------------


def test_green_on_a_kubernetes_endpoint_is_blues_deployment_with_its_own_name_model_and_settings(v2):
    green = v2.green_deployment(
        args(v2, "create-green", "--model", "azureml:tf-dnn-mnist:2", "--env", "MODEL_VERSION=2"), managed=False
    )
    v2.validate(green)
    loaded = load_online_deployment(io.StringIO(v2.to_yaml(green)))
    assert isinstance(loaded, KubernetesOnlineDeployment)
    assert (loaded.name, loaded.endpoint_name) == ("green", "tfscoring")
    assert loaded.model.endswith("tf-dnn-mnist:2")  # the registered version, not an upload
    rest = loaded._to_rest_object(location=LOCATION).properties
    assert (rest.endpoint_compute_type, rest.instance_type) == ("Kubernetes", v2.INSTANCE_TYPE)
    blue = v2.deployment()._to_dict()
    ours = green._to_dict()
    assert ours["environment_variables"] == {**blue["environment_variables"], "MODEL_VERSION": "2"}
    for key in (
        "instance_type",
        "resources",
        "request_settings",
        "liveness_probe",
        "readiness_probe",
        "scale_settings",
    ):
        assert ours[key] == blue[key], key


def test_green_on_a_managed_endpoint_is_a_managed_deployment_on_an_azure_vm_size(v2):
    green = v2.green_deployment(args(v2, "create-green", "--image", "example.azurecr.io/tf:2"), managed=True)
    v2.validate(green)
    loaded = load_online_deployment(io.StringIO(v2.to_yaml(green)))
    assert isinstance(loaded, ManagedOnlineDeployment)
    rest = loaded._to_rest_object(location=LOCATION).properties
    assert (rest.endpoint_compute_type, rest.instance_type) == ("Managed", v2.MANAGED_INSTANCE_TYPE)
    assert loaded.environment.image == "example.azurecr.io/tf:2"
    # Blue's request settings and probes; no Kubernetes resources or target-utilisation scaling.
    blue = v2.deployment()._to_dict()
    assert loaded._to_dict()["request_settings"] == blue["request_settings"]
    assert "resources" not in loaded._to_dict() and "scale_settings" not in green._to_dict()


def test_green_is_refused_where_it_would_change_what_clients_get(v2):
    live = endpoint(v2, traffic="blue=90 green=10")
    with pytest.raises(v2.RolloutError, match="green takes 10 % of live traffic: updating it in place"):
        v2.plan_green(live, {"blue", "green"}, "blue", "green")
    with pytest.raises(v2.RolloutError, match="both blue"):
        v2.plan_green(endpoint(v2), {"blue", "green"}, "blue", "blue")
    v2.plan_green(endpoint(v2, traffic="blue=100"), {"blue"}, "blue", "green")  # the first time
    v2.plan_green(endpoint(v2), {"blue", "green"}, "blue", "green")  # again, at 0 %: updated in place, idempotent


def test_a_setting_without_a_value_is_refused(v2):
    with pytest.raises(v2.RolloutError, match="NAME=VALUE"):
        v2.green_deployment(args(v2, "create-green", "--env", "MODEL_VERSION"), managed=False)


# --- mirror ------------------------------------------------------------------------------------------------------


def test_mirroring_on_a_managed_endpoint_sends_mirror_traffic_and_leaves_live_traffic_to_blue(v2):
    changed = v2.plan_mirror(endpoint(v2, "managed"), {"blue", "green"}, "green", 10)
    loaded, rest = loaded_endpoint(v2, changed)
    assert isinstance(loaded, ManagedOnlineEndpoint)
    assert rest.mirror_traffic == {"green": 10}
    assert v2.live(rest.traffic) == {"blue": 100}
    assert v2.plan_mirror(changed, {"blue", "green"}, "green", 10) is None  # idempotent: nothing to send
    stopped = v2.plan_mirror(changed, {"blue", "green"}, "green", 0)
    assert loaded_endpoint(v2, stopped)[1].mirror_traffic == {}


@pytest.mark.parametrize("percent", [0, 10, 50])
def test_mirroring_is_refused_on_a_kubernetes_endpoint_with_the_reason(v2, percent):
    with pytest.raises(v2.RolloutError) as refused:
        v2.plan_mirror(endpoint(v2, "kubernetes"), {"blue", "green"}, "green", percent)
    assert "Kubernetes online endpoint" in str(refused.value)
    assert "does not support mirrored traffic" in str(refused.value)
    assert "shift 10" in str(refused.value)  # what to do instead


def test_azure_ai_ml_itself_would_send_mirror_traffic_on_a_kubernetes_endpoint_so_the_script_checks(v2):
    text = v2.to_yaml(endpoint(v2, "kubernetes", mirror="green=10"))
    loaded = load_online_endpoint(io.StringIO(text))
    assert isinstance(loaded, KubernetesOnlineEndpoint)
    assert loaded._to_rest_online_endpoint(location=LOCATION).properties.mirror_traffic == {"green": 10}
    with pytest.raises(v2.RolloutError, match="Kubernetes online endpoint"):
        v2.check_routing(loaded, {"blue", "green"})


@pytest.mark.parametrize("percent", [51, 100])
def test_mirroring_more_than_half_the_live_traffic_is_refused(v2, percent):
    with pytest.raises(v2.RolloutError, match="0 to 50 %"):
        v2.plan_mirror(endpoint(v2, "managed"), {"blue", "green"}, "green", percent)
    assert v2.MAX_MIRROR_PERCENT == 50
    mirrored = endpoint(v2, "managed", mirror=f"green={percent}")
    with pytest.raises(v2.RolloutError, match="at most 50 %"):
        v2.check_routing(mirrored, {"blue", "green"})


def test_mirroring_goes_to_one_deployment_only_and_never_to_one_with_live_traffic(v2):
    two = endpoint(v2, "managed", traffic="blue=100 green=0 canary=0", mirror="green=10 canary=10")
    with pytest.raises(v2.RolloutError, match="one deployment only"):
        v2.check_routing(two, {"blue", "green", "canary"})
    # Mirroring green replaces a mirror to another deployment.
    moved = v2.plan_mirror(
        endpoint(v2, "managed", "blue=100 green=0 canary=0", "canary=10"), {"blue", "green", "canary"}, "green", 20
    )
    assert v2.live(moved.mirror_traffic) == {"green": 20}
    with pytest.raises(v2.RolloutError, match="takes 10 % of live traffic already"):
        v2.plan_mirror(endpoint(v2, "managed", traffic="blue=90 green=10"), {"blue", "green"}, "green", 10)
    with pytest.raises(v2.RolloutError, match="live or mirrored traffic, not both"):
        v2.check_routing(endpoint(v2, "managed", "blue=90 green=10", "green=10"), {"blue", "green"})


def test_mirroring_to_a_deployment_that_is_not_there_is_refused(v2):
    with pytest.raises(v2.RolloutError, match="no deployment green: create it first"):
        v2.plan_mirror(endpoint(v2, "managed", traffic="blue=100"), {"blue"}, "green", 10)


# --- shift -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["kubernetes", "managed"])
def test_shifting_in_steps_sends_traffic_that_sums_to_100_each_time(v2, kind):
    current, seen = endpoint(v2, kind), []
    for percent in (10, 50, 100):
        changed = v2.plan_shift(current, {"blue", "green"}, "blue", "green", percent)
        loaded, rest = loaded_endpoint(v2, changed)
        assert type(loaded) is type(current)
        assert sum(rest.traffic.values()) == 100
        seen.append(v2.live(rest.traffic))
        assert v2.plan_shift(changed, {"blue", "green"}, "blue", "green", percent) is None  # idempotent
        current = changed
    assert seen == [{"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"green": 100}]


def test_shifting_live_traffic_to_green_stops_mirroring_to_it(v2):
    mirrored = endpoint(v2, "managed", mirror="green=10")
    changed = v2.plan_shift(mirrored, {"blue", "green"}, "blue", "green", 10)
    rest = loaded_endpoint(v2, changed)[1]
    assert (v2.live(rest.traffic), rest.mirror_traffic) == ({"blue": 90, "green": 10}, {})


def test_shifting_back_is_a_step_too(v2):
    changed = v2.plan_shift(endpoint(v2, traffic="blue=50 green=50"), {"blue", "green"}, "blue", "green", 0)
    assert v2.live(loaded_endpoint(v2, changed)[1].traffic) == {"blue": 100}


def test_shifting_leaves_a_third_deployments_traffic_alone_by_refusing(v2):
    third = endpoint(v2, traffic="blue=80 green=0 canary=20")
    with pytest.raises(v2.RolloutError, match="also goes to canary"):
        v2.plan_shift(third, {"blue", "green", "canary"}, "blue", "green", 10)


def test_traffic_that_does_not_sum_to_100_or_0_is_refused(v2):
    for traffic in ("blue=90 green=5", "blue=60 green=50"):
        with pytest.raises(v2.RolloutError, match="not 100"):
            v2.check_routing(endpoint(v2, traffic=traffic), {"blue", "green"})
    v2.check_routing(endpoint(v2, traffic="blue=0 green=0"), {"blue", "green"})  # Azure's "no traffic"
    with pytest.raises(v2.RolloutError, match="no deployment gren"):
        v2.check_routing(endpoint(v2, traffic="blue=90 gren=10"), {"blue", "green"})


def test_az_mls_traffic_form_parses_and_a_malformed_share_is_refused(v2):
    assert v2.parse_traffic("blue=90 green=10") == {"blue": 90, "green": 10}
    assert v2.traffic_text({"green": 10, "blue": 90}) == "blue=90 green=10"
    for text in ("blue=90 green", "blue:90", "blue=ten"):
        with pytest.raises(v2.RolloutError, match="<deployment>=<percent>"):
            v2.parse_traffic(text)


# --- delete-blue and rollback -----------------------------------------------------------------------------------


def test_blue_is_deleted_only_once_it_takes_no_traffic_and_green_takes_all(v2):
    assert v2.plan_delete_blue(endpoint(v2, traffic="blue=0 green=100"), {"blue", "green"}, "blue", "green")
    with pytest.raises(v2.RolloutError, match="blue still takes 10 % of live traffic: shift 100 first"):
        v2.plan_delete_blue(endpoint(v2, traffic="blue=10 green=90"), {"blue", "green"}, "blue", "green")
    with pytest.raises(v2.RolloutError, match="nothing to roll back to"):
        v2.plan_delete_blue(endpoint(v2, traffic="blue=0 green=0"), {"blue", "green"}, "blue", "green")
    # Idempotent: blue already gone.
    assert not v2.plan_delete_blue(endpoint(v2, traffic="green=100"), {"green"}, "blue", "green")


def test_rollback_sends_all_traffic_to_blue_stops_the_mirror_then_deletes_green(v2):
    rolled = v2.plan_step(args(v2, "rollback"), endpoint(v2, "managed", traffic="blue=50 green=50"), {"blue", "green"})
    assert [kind for kind, _ in rolled] == ["endpoint", "delete"]
    rest = loaded_endpoint(v2, rolled[0][1])[1]
    assert (v2.live(rest.traffic), rest.mirror_traffic) == ({"blue": 100}, {})
    assert rolled[1] == ("delete", "green")
    mirrored = endpoint(v2, "managed", mirror="green=20")
    assert loaded_endpoint(v2, v2.plan_rollback(mirrored, {"blue", "green"}, "blue", "green"))[1].mirror_traffic == {}
    # Idempotent: done already.
    assert v2.plan_step(args(v2, "rollback"), endpoint(v2, traffic="blue=100"), {"blue"}) == []
    with pytest.raises(v2.RolloutError, match="no deployment blue any more"):
        v2.plan_rollback(endpoint(v2, traffic="green=100"), {"green"}, "blue", "green")


def test_the_deployment_names_are_arguments(v2):
    swapped = endpoint(v2, traffic="green=100 blue=0")
    changed = v2.plan_step(args(v2, "shift", "10", "--blue", "green", "--green", "blue"), swapped, {"blue", "green"})
    assert v2.live(changed[0][1].traffic) == {"green": 90, "blue": 10}


# --- main() against a stand-in MLClient -------------------------------------------------------------------------


def azure(live_endpoint, deployments=("blue", "green"), answer="[7]"):
    """A stand-in MLClient with this endpoint and deployments; invoke answers `answer` and keeps the requests."""
    client = mock.MagicMock()
    client.online_endpoints.get.return_value = live_endpoint
    found = [mock.Mock() for _ in deployments]
    for deployment, name in zip(found, deployments, strict=True):
        deployment.name = name  # Mock(name=...) names the mock itself
    client.online_deployments.list.return_value = found
    client.requests = []

    def invoke(*, endpoint_name, request_file, deployment_name):
        client.requests.append(json.loads(Path(request_file).read_text()))
        return answer

    client.online_endpoints.invoke.side_effect = invoke
    return client


def run(v2, client, *argv):
    with mock.patch.object(v2, "ml_client", return_value=client):
        return v2.main(list(argv))


def test_main_shift_scores_green_directly_then_sends_the_traffic(v2, capsys):
    client = azure(endpoint(v2))
    assert run(v2, client, "shift", "10") == 0
    invoke = client.online_endpoints.invoke.call_args
    assert invoke.kwargs["deployment_name"] == "green" and invoke.kwargs["endpoint_name"] == "tfscoring"
    assert client.requests == [v2.SAMPLE_REQUEST]  # one image of the model's size
    sent = client.online_endpoints.begin_create_or_update.call_args.args[0]
    assert v2.live(sent.traffic) == {"blue": 90, "green": 10}
    calls = [
        c[0]
        for c in client.mock_calls
        if c[0] in ("online_endpoints.invoke", "online_endpoints.begin_create_or_update")
    ]
    assert calls == ["online_endpoints.invoke", "online_endpoints.begin_create_or_update"]
    out = capsys.readouterr().out
    assert "answered a sample request directly: [7]" in out
    assert "live traffic blue=90 green=10" in out and "was: live traffic blue=100" in out


def test_main_refuses_to_shift_to_a_green_that_does_not_answer_and_sends_nothing(v2, capsys):
    client = azure(endpoint(v2))
    client.online_endpoints.invoke.side_effect = RuntimeError("(502) upstream failed")
    assert run(v2, client, "shift", "10") == 2
    client.online_endpoints.begin_create_or_update.assert_not_called()
    assert "deployment green did not answer a sample request: (502) upstream failed" in capsys.readouterr().err


def test_main_refuses_to_shift_to_a_green_that_answers_no_json(v2):
    client = azure(endpoint(v2), answer="<html>bad gateway</html>")
    assert run(v2, client, "shift", "10") == 2
    client.online_endpoints.begin_create_or_update.assert_not_called()


def test_main_steps_back_without_asking_green(v2):
    client = azure(endpoint(v2, traffic="blue=50 green=50"))
    client.online_endpoints.invoke.side_effect = RuntimeError("green is down")
    assert run(v2, client, "shift", "0") == 0
    assert v2.live(client.online_endpoints.begin_create_or_update.call_args.args[0].traffic) == {"blue": 100}
    assert run(v2, azure(endpoint(v2, traffic="blue=50 green=50")), "rollback") == 0


def test_main_mirror_on_kubernetes_is_refused_with_the_reason_and_sends_nothing(v2, capsys):
    client = azure(endpoint(v2, "kubernetes"))
    assert run(v2, client, "mirror", "10") == 2
    client.online_endpoints.begin_create_or_update.assert_not_called()
    client.online_endpoints.invoke.assert_not_called()
    err = capsys.readouterr().err
    assert err.startswith("deploy_v2.py mirror: endpoint tfscoring is a Kubernetes online endpoint")


def test_main_mirror_on_managed_sends_mirror_traffic(v2):
    client = azure(endpoint(v2, "managed"))
    assert run(v2, client, "mirror", "10", "--no-check") == 0
    client.online_endpoints.invoke.assert_not_called()
    assert client.online_endpoints.begin_create_or_update.call_args.args[0].mirror_traffic == {"green": 10}


def test_main_run_twice_sends_nothing_the_second_time(v2, capsys):
    client = azure(endpoint(v2, traffic="blue=90 green=10"))
    assert run(v2, client, "shift", "10") == 0
    client.online_endpoints.begin_create_or_update.assert_not_called()
    client.online_endpoints.invoke.assert_not_called()
    assert "shift: nothing to do" in capsys.readouterr().out


def test_main_delete_blue_deletes_it_once_green_takes_all(v2, capsys):
    client = azure(endpoint(v2, traffic="blue=0 green=100"))
    assert run(v2, client, "delete-blue") == 0
    client.online_deployments.begin_delete.assert_called_once_with(name="blue", endpoint_name="tfscoring")
    client.online_endpoints.begin_create_or_update.assert_not_called()
    assert "deployment blue of endpoint tfscoring deleted" in capsys.readouterr().out
    refused = azure(endpoint(v2, traffic="blue=50 green=50"))
    assert run(v2, refused, "delete-blue") == 2
    refused.online_deployments.begin_delete.assert_not_called()


def test_main_rollback_routes_to_blue_before_deleting_green(v2):
    client = azure(endpoint(v2, traffic="blue=50 green=50"))
    assert run(v2, client, "rollback") == 0
    order = [c[0] for c in client.mock_calls if c[0].endswith(("begin_create_or_update", "begin_delete"))]
    assert order == ["online_endpoints.begin_create_or_update", "online_deployments.begin_delete"]
    assert v2.live(client.online_endpoints.begin_create_or_update.call_args.args[0].traffic) == {"blue": 100}
    client.online_deployments.begin_delete.assert_called_once_with(name="green", endpoint_name="tfscoring")


def test_main_create_green_registers_the_model_and_creates_green_at_zero_traffic(v2, capsys):
    client = azure(endpoint(v2, traffic="blue=100"), deployments=("blue",))
    client.models.create_or_update.return_value = mock.Mock(version="2")
    client.models.create_or_update.return_value.name = "tf-dnn-mnist"
    assert run(v2, client, "create-green", "--environment", "azureml:tfscoring-gpu:1") == 0
    client.environments.create_or_update.assert_not_called()
    sent = client.online_deployments.begin_create_or_update.call_args.args[0]
    assert isinstance(sent, KubernetesOnlineDeployment)
    assert (sent.name, sent.model, sent.environment) == ("green", "azureml:tf-dnn-mnist:2", "azureml:tfscoring-gpu:1")
    client.online_endpoints.begin_create_or_update.assert_not_called()  # traffic untouched: green at 0 %
    assert "deployment green created with azureml:tf-dnn-mnist:2" in capsys.readouterr().out


def test_main_create_green_on_a_managed_endpoint_sends_a_managed_deployment(v2):
    client = azure(endpoint(v2, "managed", traffic="blue=100"), deployments=("blue",))
    argv = ["create-green", "--model", "azureml:tf-dnn-mnist:2", "--environment", "azureml:tfscoring-gpu:1"]
    assert run(v2, client, *argv) == 0
    client.models.create_or_update.assert_not_called()
    sent = client.online_deployments.begin_create_or_update.call_args.args[0]
    assert isinstance(sent, ManagedOnlineDeployment) and sent.instance_type == v2.MANAGED_INSTANCE_TYPE


# --- --dry-run, as a program -------------------------------------------------------------------------------------


def dry_run(tmp_path, *argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "MSI_", "IDENTITY_"))}
    env["HOME"] = str(tmp_path)  # no az login cache either
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


DRY_RUNS = {
    "create-green": (["create-green", "--model", "azureml:tf-dnn-mnist:2"], "green"),
    "mirror": (["mirror", "10", "--endpoint-type", "managed"], "tfscoring"),
    "shift": (["shift", "50", "--now", "blue=90 green=10"], "tfscoring"),
    "rollback": (["rollback", "--now", "blue=50 green=50"], "tfscoring"),
}


@pytest.mark.parametrize("step", list(DRY_RUNS))
def test_each_steps_dry_run_prints_validated_entities_without_credentials(tmp_path, step):
    argv, name = DRY_RUNS[step]
    result = dry_run(tmp_path, *argv)
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["name"] for d in documents] == [name]
    assert f"# {step}: " in result.stdout and ", validated" in result.stdout


def test_the_dry_run_of_a_refused_step_says_why_and_fails(tmp_path):
    result = dry_run(tmp_path, "mirror", "10")  # the default endpoint type: Kubernetes
    assert result.returncode == 2
    assert "does not support mirrored traffic on Kubernetes online endpoints" in result.stderr
    result = dry_run(tmp_path, "delete-blue")  # blue still at 100 %
    assert result.returncode == 2 and "shift 100 first" in result.stderr


def test_options_go_before_or_after_the_step(tmp_path):
    before = dry_run(tmp_path, "--endpoint", "other", "shift", "10")
    after = dry_run(tmp_path, "shift", "10", "--endpoint", "other")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert before.stdout == after.stdout and "name: other" in before.stdout


# --- docs/azure-ml.md ---------------------------------------------------------------------------------------------


def safe_rollout_section() -> str:
    text = (REPO / "docs" / "azure-ml.md").read_text()
    return text[text.index("## Safe rollout") :].split("\n## ", 1)[0]


def test_the_docs_az_ml_traffic_commands_follow_azures_rules(v2):
    section = safe_rollout_section()
    traffic = re.findall(r'--traffic "([^"]+)"', section)
    mirror = re.findall(r'--mirror-traffic "([^"]+)"', section)
    assert traffic and mirror
    for text in traffic:
        v2.check_routing(endpoint(v2, "managed", traffic=text), {"blue", "green"})
    for text in mirror:
        v2.check_routing(endpoint(v2, "managed", mirror=text), {"blue", "green"})
    for step in ("create-green", "mirror", "shift", "delete-blue", "rollback"):
        assert f"deploy_v2.py {step}" in section, step
    assert "az ml online-deployment delete" in section
    assert "Kubernetes online endpoints" in section and "mirrored traffic" in section


def test_the_docs_green_command_loads_deployment_yml_as_green(v2):
    section = safe_rollout_section().replace("\\\n", " ")  # continued lines joined
    command = re.search(r"az ml online-deployment create (-f docker/aks/v2/deployment.yml .*?)$", section, re.M)
    words = shlex.split(command.group(1))
    assert words[words.index("--name") + 1] == "green"
    assert "--all-traffic" not in words  # green starts at 0 %
    overrides = words[words.index("--set") + 1 :]
    params = [{k: v} for k, v in (item.split("=", 1) for item in overrides)]
    green = load_online_deployment(REPO / words[1], params_override=[{"name": "green"}, *params])
    assert green.name == "green"
    green._to_rest_object(location=LOCATION)

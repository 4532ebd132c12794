"""Autoscaling on load (docker/k8s/autoscaling/, docker/k8s/monitoring/), checked offline.

- Every manifest under docker/k8s/ validates: core kinds against the Kubernetes schemas (kubernetes-validate,
  strict), the KEDA ScaledObject and the ServiceMonitor against their CRDs' OpenAPI schemas vendored in
  schemas/ (schemas/README.md says from where), refusing unknown fields as kubectl's strict field validation
  does; the Prometheus adapter's config against its Go structs, which it reads strictly too.
- The ScaledObject and the HPA scale deployment.yaml's Deployment, agree with each other, and keep 1 to N
  replicas; their thresholds follow from the deployment's settings.
- Every PromQL query parses (promql-parser), and reads only series that tfscoring/observability/metrics.py defines,
  with their labels; metrics.py is read with ast, since this venv has none of the server's packages.
- Prometheus scrapes the port the container serves its metrics on.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "docker" / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSION = "1.33.0"  # as test_aks_configs.py
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
}
TARGET_LABELS = {"namespace", "pod"}  # what Prometheus's Kubernetes discovery puts on every scraped series
# The prometheus scaler's trigger metadata in KEDA v2.20.2 (pkg/scalers/prometheus_scaler.go, prometheusMetadata).
KEDA_PROMETHEUS_KEYS = {
    "serverAddress", "query", "queryParameters", "threshold", "activationThreshold", "namespace", "customHeaders",
    "ignoreNullValues", "unsafeSsl", "awsRegion", "timeout", "identityOwner", "authModes",
}  # fmt: skip


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def the(kind: str, folder: Path) -> dict:
    (found,) = [doc for path in sorted(folder.glob("*.yaml")) for doc in documents(path) if doc["kind"] == kind]
    return found


def manifests() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


DEPLOYMENT = the("Deployment", K8S)
SCORING_SERVICE = the("Service", K8S)
SCALED_OBJECT = the("ScaledObject", K8S / "autoscaling" / "keda")
HPA = the("HorizontalPodAutoscaler", K8S / "autoscaling" / "prometheus-adapter")
ADAPTER_CONFIG = the("ConfigMap", K8S / "autoscaling" / "prometheus-adapter")
METRICS_SERVICE = the("Service", K8S / "monitoring")
SERVICE_MONITOR = the("ServiceMonitor", K8S / "monitoring")
CONTAINER = DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]
ENV = {var["name"]: var.get("value") for var in CONTAINER.get("env", [])}
NAMESPACE = DEPLOYMENT["metadata"].get("namespace")  # none: kubectl's current namespace, "default" unless set


# --- the server's side, read from its source -------------------------------------------------------------


def _source_defaults(path: Path, class_fields: set[str]) -> dict[str, object]:
    """The default (pydantic.Field's first argument, or a plain value) of each named field of config.py's classes."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in class_fields:
            value = node.value
            if isinstance(value, ast.Call) and value.args:
                value = value.args[0]
            found[node.target.id] = ast.literal_eval(value)
    return found


SETTINGS = _source_defaults(
    REPO / "server" / "tfscoring" / "config.py", {"max_batch_rows", "max_request_rows", "metrics_port"}
)


def exported_series() -> dict[str, tuple[str, frozenset[str]]]:
    """Each sample name metrics.py's prometheus_client metrics export: {name: (type, label names)}."""
    kinds = {"Counter", "Gauge", "Histogram", "Summary"}
    series: dict[str, tuple[str, frozenset[str]]] = {}
    for node in ast.walk(ast.parse((REPO / "server" / "tfscoring" / "observability" / "metrics.py").read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if func not in kinds:
            continue
        kwargs = {kw.arg: kw.value for kw in node.keywords}
        name = ast.literal_eval(node.args[0] if node.args else kwargs["name"])
        labels_node = node.args[2] if len(node.args) > 2 else kwargs.get("labelnames")
        labels = frozenset(ast.literal_eval(labels_node) if labels_node is not None else ())
        if func == "Counter":
            series[name.removesuffix("_total") + "_total"] = ("counter", labels)
        elif func == "Gauge":
            series[name] = ("gauge", labels)
        else:
            if func == "Histogram":
                series[name + "_bucket"] = ("counter", labels | {"le"})
            series[name + "_sum"] = ("counter", labels)
            series[name + "_count"] = ("counter", labels)
    return series


def test_the_metrics_source_is_read():
    series = exported_series()
    # The two the autoscalers use, as docs/operations.md's metrics table names them.
    assert series["tfscoring_queued_rows"] == ("gauge", frozenset())
    assert series["tfscoring_requests_total"] == ("counter", frozenset({"status", "model", "version"}))
    assert series["tfscoring_queue_wait_seconds_bucket"][0] == "counter"
    assert set(SETTINGS) == {"max_batch_rows", "max_request_rows", "metrics_port"}
    assert all(isinstance(value, int) and value > 0 for value in SETTINGS.values())


# --- schemas ---------------------------------------------------------------------------------------------


def _refuse_unknown_fields(schema: dict) -> dict:
    """The schema with additionalProperties: false on every object that lists its properties and neither allows
    other keys nor keeps unknown fields: the API server's strict field validation (kubectl apply's default)."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                visit(child)
        for key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            if key in node:
                visit(node[key])

    visit(schema)
    return schema


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def crd_validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[api_version, kind]).read_text())
    # OpenAPI 3.0's schema objects are JSON Schema draft 4's keywords (exclusiveMinimum as a boolean, ...).
    return jsonschema.Draft4Validator(_refuse_unknown_fields(schema), format_checker=FORMATS)


def validate(document: dict) -> None:
    """Raise if the document is not valid for its kind: core kinds by kubernetes-validate, CRDs by their schema."""
    key = (document["apiVersion"], document["kind"])
    if key not in CRD_SCHEMAS:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        return
    crd_validator(*key).validate(document)
    # A CRD's schema says only "metadata: object"; the API server checks it as every kind's ObjectMeta.
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": document["metadata"]}, KUBERNETES_VERSION, strict=True
    )


@pytest.mark.parametrize("manifest", manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_is_valid_against_its_schema(manifest):
    docs = documents(manifest)
    assert docs
    for document in docs:
        validate(document)


def _case(name: str, document: dict, change, message: str):
    return pytest.param(document, change, message, id=name)


@pytest.mark.parametrize(
    ("document", "change", "message"),
    [
        _case(
            "so-misspelt-field", SCALED_OBJECT, lambda d: d["spec"].update(cooldownperiod=300), "'cooldownperiod' was"
        ),
        _case(
            "so-unquoted-threshold",
            SCALED_OBJECT,
            lambda d: d["spec"]["triggers"][0]["metadata"].update(threshold=512),
            "512 is not of type 'string'",
        ),
        _case("so-fallback-behavior", SCALED_OBJECT, lambda d: d["spec"]["fallback"].update(behavior="keep"), "'keep'"),
        _case("so-int32", SCALED_OBJECT, lambda d: d["spec"].update(maxReplicaCount=2**31), "is not a 'int32'"),
        _case("so-no-target", SCALED_OBJECT, lambda d: d["spec"]["scaleTargetRef"].pop("name"), "'name' is a required"),
        _case(
            "sm-misspelt-field",
            SERVICE_MONITOR,
            lambda d: d["spec"]["endpoints"][0].update(portName="metrics"),
            "'portName' was unexpected",
        ),
        _case("sm-selector", SERVICE_MONITOR, lambda d: d["spec"].update(selector="app=x"), "is not of type 'object'"),
        _case("sm-metadata", SERVICE_MONITOR, lambda d: d["metadata"].update(label={}), "'label' was unexpected"),
        _case(  # autoscaling/v2beta1's name for it
            "hpa-v2beta1-field",
            HPA,
            lambda d: d["spec"]["metrics"][0]["pods"].update(targetAverageValue=512),
            "'targetAverageValue' was unexpected",
        ),
        _case("configmap-data", ADAPTER_CONFIG, lambda d: d["data"].update(rules=[]), "[] is not of type 'string'"),
    ],
)
def test_the_validation_refuses_what_the_cluster_would(document, change, message):
    broken = copy.deepcopy(document)
    change(broken)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        validate(broken)


# The adapter's config, read with yaml.UnmarshalStrict (unknown keys are errors) into MetricsDiscoveryConfig:
# pkg/config/config.go of kubernetes-sigs/prometheus-adapter v0.12.0, written out as a schema.
_RESOURCE_MAPPING = {
    "type": "object",
    "properties": {
        "template": {"type": "string"},
        "overrides": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"group": {"type": "string"}, "resource": {"type": "string", "minLength": 1}},
                "required": ["resource"],
                "additionalProperties": False,
            },
        },
        "namespaced": {"type": "boolean"},
    },
    "additionalProperties": False,
}
_DISCOVERY_RULE = {
    "type": "object",
    "properties": {
        "seriesQuery": {"type": "string", "minLength": 1},
        "seriesFilters": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"is": {"type": "string"}, "isNot": {"type": "string"}},
                "maxProperties": 1,
                "additionalProperties": False,
            },
        },
        "resources": _RESOURCE_MAPPING,
        "name": {
            "type": "object",
            "properties": {"matches": {"type": "string"}, "as": {"type": "string"}},
            "additionalProperties": False,
        },
        "metricsQuery": {"type": "string"},
    },
    "required": ["seriesQuery"],
    "additionalProperties": False,
}
ADAPTER_SCHEMA = {
    "type": "object",
    "properties": {
        "rules": {"type": "array", "items": _DISCOVERY_RULE},
        "externalRules": {"type": "array", "items": _DISCOVERY_RULE},
        "resourceRules": {"type": "object"},
    },
    "additionalProperties": False,
}


def adapter_rules() -> list[dict]:
    config = yaml.safe_load(ADAPTER_CONFIG["data"]["config.yaml"])
    jsonschema.Draft7Validator(ADAPTER_SCHEMA).validate(config)
    return config["rules"]


def test_the_adapter_config_is_valid_and_where_the_adapters_manifests_read_it():
    rules = adapter_rules()
    assert rules
    # kubernetes-sigs/prometheus-adapter's deploy/manifests mount this ConfigMap, adapter-config in monitoring,
    # and start the adapter with --config=/etc/adapter/config.yaml.
    assert ADAPTER_CONFIG["metadata"] == {"name": "adapter-config", "namespace": "monitoring"}
    assert list(ADAPTER_CONFIG["data"]) == ["config.yaml"]
    with pytest.raises(jsonschema.ValidationError, match="'metricQuery' was unexpected"):
        jsonschema.Draft7Validator(ADAPTER_SCHEMA).validate({"rules": [{"seriesQuery": "x", "metricQuery": "x"}]})


# --- what is scaled, and how far ------------------------------------------------------------------------


def test_the_autoscalers_scale_the_deployment_of_deployment_yaml():
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT["metadata"]["name"]}
    assert SCALED_OBJECT["spec"]["scaleTargetRef"] == target
    assert HPA["spec"]["scaleTargetRef"] == target
    # scaleTargetRef has no namespace: the autoscaler must be in the Deployment's.
    assert SCALED_OBJECT["metadata"].get("namespace") == NAMESPACE
    assert HPA["metadata"].get("namespace") == NAMESPACE
    # KEDA's webhook refuses a ScaledObject for a Deployment that another HPA scales: the folder applied with
    # every route (docker/k8s/ itself) holds no autoscaler, and each route one.
    assert not {doc["kind"] for path in K8S.glob("*.yaml") for doc in documents(path)} & {
        "HorizontalPodAutoscaler",
        "ScaledObject",
    }
    for folder in ("keda", "prometheus-adapter"):
        scalers = [
            doc
            for path in (K8S / "autoscaling" / folder).glob("*.yaml")
            for doc in documents(path)
            if doc["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
        ]
        assert len(scalers) == 1, folder
    # With an autoscaler, a replica count in the Deployment would be reset by every kubectl apply.
    assert "replicas" not in DEPLOYMENT["spec"]


def test_replica_bounds_are_sane_and_the_same_in_both():
    spec = SCALED_OBJECT["spec"]
    low, high = spec["minReplicaCount"], spec["maxReplicaCount"]
    # Never to zero: a GPU replica takes minutes to come back, and the Service has no endpoint meanwhile.
    assert 1 <= low < high <= 16
    assert "idleReplicaCount" not in spec
    # The CRD's one CEL rule, which the schema check does not evaluate.
    assert low <= spec.get("maxReplicaCount", 100)
    assert (HPA["spec"]["minReplicas"], HPA["spec"]["maxReplicas"]) == (low, high)
    assert low <= spec["fallback"]["replicas"] <= high
    assert spec["fallback"]["failureThreshold"] * spec["pollingInterval"] >= 60  # not a replica's usual start
    # One pacing, by either route.
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == HPA["spec"]["behavior"]
    down = HPA["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert all(policy["type"] == "Pods" and policy["value"] == 1 for policy in down["policies"])
    assert len(DEPLOYMENT["spec"]["template"]["spec"]["containers"]) == 1  # a replica is one GPU
    assert CONTAINER["resources"]["limits"]["nvidia.com/gpu"] == 1


def keda_triggers() -> dict[str, dict]:
    return {trigger["name"]: trigger for trigger in SCALED_OBJECT["spec"]["triggers"]}


def hpa_targets() -> dict[str, float]:
    return {
        metric["pods"]["metric"]["name"]: float(metric["pods"]["target"]["averageValue"])
        for metric in HPA["spec"]["metrics"]
    }


def test_keda_triggers_are_prometheus_queries_with_the_scalers_own_settings():
    triggers = keda_triggers()
    assert set(triggers) == {"queued-rows", "request-rate"}  # unique names, as KEDA's webhook requires
    for trigger in triggers.values():
        metadata = trigger["metadata"]
        assert trigger["type"] == "prometheus"
        # Fallback works for AverageValue targets: the query's value divided by the replicas.
        assert trigger.get("metricType", "AverageValue") == "AverageValue"
        assert set(metadata) <= KEDA_PROMETHEUS_KEYS
        assert {"serverAddress", "query", "threshold"} <= set(metadata)
        assert re.fullmatch(r"https?://[a-z0-9.-]+(:\d+)?", metadata["serverAddress"])
        assert float(metadata["threshold"]) > 0
        assert metadata.get("ignoreNullValues", "true") in ("true", "false")
    # A scrape that stopped must be an error (then the fallback), not a queue of 0: the queue's gauge always has a
    # value per live worker. The request counter has no series before a pod's first answer: that one is 0.
    assert triggers["queued-rows"]["metadata"]["ignoreNullValues"] == "false"
    assert triggers["request-rate"]["metadata"]["ignoreNullValues"] == "true"


def test_both_routes_scale_on_the_same_targets():
    triggers = keda_triggers()
    targets = hpa_targets()
    assert targets == {
        "tfscoring_queued_rows": float(triggers["queued-rows"]["metadata"]["threshold"]),
        "tfscoring_requests_per_second": float(triggers["request-rate"]["metadata"]["threshold"]),
    }
    assert all(metric["type"] == "Pods" for metric in HPA["spec"]["metrics"])  # not CPU
    assert all(metric["pods"]["target"]["type"] == "AverageValue" for metric in HPA["spec"]["metrics"])


def test_the_queue_target_is_a_full_batch_per_worker_far_below_the_queue_limit():
    workers = int(ENV["WORKER_COUNT"])
    batch = int(ENV.get("MAX_BATCH_ROWS") or SETTINGS["max_batch_rows"])
    queue_limit = int(ENV.get("MAX_QUEUE_ROWS") or 2 * int(ENV.get("MAX_REQUEST_ROWS") or SETTINGS["max_request_rows"]))
    target = hpa_targets()["tfscoring_queued_rows"]
    assert target == workers * batch
    assert target <= workers * queue_limit / 4  # scale out long before requests get 503 for a full queue


# --- the queries -------------------------------------------------------------------------------------------


_RANGE_FUNCTIONS = {"rate", "irate", "increase"}  # for counters
_OVER_TIME = {"avg_over_time", "max_over_time", "min_over_time", "last_over_time", "quantile_over_time"}


def _children(node) -> list:
    if isinstance(node, promql_parser.AggregateExpr):
        return [node.expr]
    if isinstance(node, promql_parser.Call):
        return list(node.args)
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, promql_parser.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, (promql_parser.ParenExpr, promql_parser.SubqueryExpr, promql_parser.UnaryExpr)):
        return [node.expr]
    return []


def check_query(query: str) -> dict[str, dict[str, tuple]]:
    """Parse a query; check that each series it reads is exported with the labels it groups by, counters only
    through rate() and the like, gauges never; return {series: {label: (op, value)}} of its selectors."""
    exported = exported_series()
    selectors: dict[str, dict[str, tuple]] = {}

    def visit(node, function: str | None, grouped: set[str]):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            assert node.modifier.type == promql_parser.AggModifierType.By, f"{query}: group with by (...)"
            grouped = grouped | set(node.modifier.labels)
        if isinstance(node, promql_parser.Call):
            function = node.func.name
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name in exported, f"{node.name} is not a series of server/tfscoring/observability/metrics.py"
            kind, labels = exported[node.name]
            assert grouped <= labels | TARGET_LABELS, f"{query}: grouped by a label {node.name} lacks"
            if kind == "counter":
                assert function in _RANGE_FUNCTIONS, f"{query}: counter {node.name} outside rate()"
            else:
                assert function is None or function in _OVER_TIME, f"{query}: {function}() of gauge {node.name}"
            matchers = {m.name: (m.op, m.value) for m in node.matchers.matchers}
            assert set(matchers) <= labels | TARGET_LABELS
            selectors[node.name] = matchers
        for child in _children(node):
            visit(child, function, grouped)

    visit(promql_parser.parse(query), None, set())
    assert selectors, query
    return selectors


def test_keda_queries_read_the_servers_series_of_this_deployments_pods():
    expected_pod = DEPLOYMENT["metadata"]["name"] + "-[a-z0-9]+-[a-z0-9]+"
    read = {}
    for name, trigger in keda_triggers().items():
        query = trigger["metadata"]["query"]
        tree = promql_parser.parse(query)
        # KEDA takes a query's one value: more than one series is an error. sum() without by gives one.
        assert isinstance(tree, promql_parser.AggregateExpr) and tree.modifier is None, name
        for series, matchers in check_query(query).items():
            read[name] = series
            assert matchers["namespace"] == (promql_parser.MatchOp.Equal, NAMESPACE or "default")
            assert matchers["pod"] == (promql_parser.MatchOp.Re, expected_pod)
    assert read == {"queued-rows": "tfscoring_queued_rows", "request-rate": "tfscoring_requests_total"}
    # The pod pattern is what a ReplicaSet of this Deployment names its pods, and no other Deployment's.
    assert re.fullmatch(expected_pod, "tfscoring-7d9f8b6c5d-x2x4q")
    assert not re.fullmatch(expected_pod, "tfscoring-canary-7d9f8b6c5d-x2x4q")


def test_adapter_rules_serve_the_hpas_metrics_from_the_servers_series():
    served = {}
    for rule in adapter_rules():
        series = promql_parser.parse(rule["seriesQuery"])
        assert isinstance(series, promql_parser.VectorSelector)
        assert re.fullmatch(rule["name"]["matches"], series.name)
        # Each series is mapped to the pod (and its namespace) it was scraped from: a Pods metric for the HPA.
        assert rule["resources"]["overrides"] == {
            "namespace": {"resource": "namespace"},
            "pod": {"resource": "pod"},
        }
        # The query as the adapter writes it for an HPA's pods: its template filled in.
        query = (
            rule["metricsQuery"]
            .replace("<<.Series>>", series.name)
            .replace("<<.LabelMatchers>>", 'namespace="default",pod=~"tfscoring-a-1|tfscoring-b-2"')
            .replace("<<.GroupBy>>", "pod")
        )
        assert "<<" not in query
        assert set(check_query(query)) == {series.name}
        tree = promql_parser.parse(query)
        assert isinstance(tree, promql_parser.AggregateExpr) and list(tree.modifier.labels) == ["pod"]
        served[rule["name"]["as"]] = series.name
    assert served == {
        "tfscoring_queued_rows": "tfscoring_queued_rows",
        "tfscoring_requests_per_second": "tfscoring_requests_total",
    }
    assert set(served) == set(hpa_targets())


def test_a_query_of_a_series_the_server_does_not_export_is_refused():
    with pytest.raises(AssertionError, match="not a series"):
        check_query("sum(tfscoring_queue_rows)")
    with pytest.raises(AssertionError, match="outside rate"):
        check_query("sum(tfscoring_requests_total)")
    with pytest.raises(AssertionError, match="lacks"):
        check_query("sum by (device) (rate(tfscoring_requests_total[1m]))")
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(tfscoring_requests_total[1m])")


# --- scraping ----------------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_containers_metrics_port():
    port = int(ENV.get("METRICS_PORT") or SETTINGS["metrics_port"])
    (metrics_port,) = [p for p in CONTAINER["ports"] if p["name"] == "metrics"]
    assert metrics_port["containerPort"] == port
    # By annotation, for a Prometheus that discovers pods so.
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert (
        '"/metrics"' in (REPO / "server" / "tfscoring" / "observability" / "metrics.py").read_text()
    )  # the one path it answers
    # By ServiceMonitor: its Service selects the pods and reaches the container port by name.
    pod_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert METRICS_SERVICE["spec"]["selector"].items() <= pod_labels.items()
    assert METRICS_SERVICE["spec"]["clusterIP"] == "None"
    (service_port,) = METRICS_SERVICE["spec"]["ports"]
    assert service_port["targetPort"] in ("metrics", port)
    assert service_port["port"] == port
    wanted = SERVICE_MONITOR["spec"]["selector"]["matchLabels"]
    assert wanted.items() <= METRICS_SERVICE["metadata"]["labels"].items()
    assert not wanted.items() <= SCORING_SERVICE["metadata"].get("labels", {}).items()  # not the scoring port
    (endpoint,) = SERVICE_MONITOR["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == "/metrics"
    assert METRICS_SERVICE["metadata"].get("namespace") == SERVICE_MONITOR["metadata"].get("namespace") == NAMESPACE
    # KEDA asks no more often than Prometheus scrapes.
    assert SCALED_OBJECT["spec"]["pollingInterval"] >= int(endpoint["interval"].removesuffix("s"))


def test_the_doc_applies_folders_that_exist():
    doc = (REPO / "docs" / "autoscaling.md").read_text()
    applied = re.findall(r"kubectl apply((?: -f \S+)+)", doc)
    assert applied
    for paths in applied:
        for path in paths.split(" -f ")[1:]:
            assert (REPO / path).exists(), path
    for path in (
        "docker/k8s/autoscaling/keda/",
        "docker/k8s/autoscaling/prometheus-adapter/",
        "docker/k8s/monitoring/",
    ):
        assert path in doc

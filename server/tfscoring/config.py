"""Every setting of the scoring script, read once from the environment.

Defaults match the Azure ML how-to: the registered model is mounted at
AZUREML_MODEL_DIR and holds `model/mnist-tf.model.*`, scored through the
tensors `network/X:0` and `network/output/MatMul:0`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import pydantic
from pydantic_settings import BaseSettings, SettingsConfigDict

from tfscoring import versions
from tfscoring.errors import StartupError
from tfscoring.process import sizing

MiB = 1024 * 1024
# Session calls that fit before a rows-per-call limit lowered by running out of device memory is doubled again
# (batching/calls.py; make gpu-check makes that many calls to see a split in a request).
RETRY_LARGER_AFTER = 1000


class _FromEnv(BaseSettings):
    # Field names are the environment variables, upper-cased (pydantic-settings matches case-insensitively).
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_env(cls):
        """Read the environment; a missing or invalid variable is a StartupError naming it."""
        try:
            return cls()
        except pydantic.ValidationError as err:
            problems = "; ".join(
                f"{str(e['loc'][0]).upper()}"
                + (" is not set" if e["type"] == "missing" else f"={_shown(e):s}: {e['msg']}")
                for e in err.errors()
            )
            raise StartupError(f"invalid configuration: {problems}") from None


class Settings(_FromEnv):
    """The scoring script's settings, read by every worker in init()."""

    azureml_model_dir: Path = pydantic.Field(
        description="registered model directory (set by Azure ML / --model_dir); a folder of <version>/ subfolders "
        "(TF Serving's layout) serves the highest version, or MODEL_VERSION"
    )
    model_folder: str = pydantic.Field(
        "model",
        description="folder inside AZUREML_MODEL_DIR holding the model (where it is set, the model is looked "
        "for there only)",
    )
    model_file_prefix: str = pydantic.Field(
        "mnist-tf.model", description="checkpoint prefix (.meta, .index, .data-*), or a frozen graph's file (*.pb)"
    )
    model_format: Literal["auto", "checkpoint", "saved_model", "frozen_graph"] = pydantic.Field(
        "auto",
        description="the model's format: a TF1 meta-graph checkpoint (.meta), a SavedModel (saved_model.pb: TF1 or "
        "TF2), a frozen GraphDef (*.pb); auto: the one found in the model folder (docs/models.md)",
    )
    saved_model_tags: str = pydantic.Field(
        "serve", description="a SavedModel's tag set to load, comma-separated (as SavedModelBuilder was given it)"
    )
    signature_name: str = pydantic.Field(
        "serving_default",
        description="the serving signature of a SavedModel or meta-graph; where it is not set and the graph has no "
        "serving_default, its only signature",
    )
    model_name: str | None = pydantic.Field(
        None, description="the model's name in Open Inference Protocol answers; default: the folder above the version"
    )
    model_version: str | None = pydantic.Field(
        None,
        description="where AZUREML_MODEL_DIR holds <version>/ subfolders: the version served (default: the highest); "
        "otherwise the model's version in answers and labels (default: AZUREML_MODEL_DIR's own folder name)",
    )
    input_tensor: str = pydantic.Field(
        "network/X:0",
        description="the input tensors to feed, comma-separated; default: the serving signature's, else the how-to's",
    )
    output_tensor: str = pydantic.Field(
        "network/output/MatMul:0",
        description="the output tensors to answer, comma-separated; default: the serving signature's, else the "
        "how-to's logits (argmax is the class id)",
    )
    data_answer: Literal["class_ids", "outputs"] = pydantic.Field(
        "class_ids",
        description="what the how-to's {\"data\": ...} form answers: class ids (argmax of a one-output model's "
        "scores, as the how-to) or the outputs themselves (always, for a model with several outputs)",
    )
    image_scale: Literal["unit", "signed", "raw"] = pydantic.Field(
        "unit",
        description="how an image body's 0-255 pixel values reach a float input: unit = /255 (0 to 1), "
        "signed = /127.5 - 1 (-1 to 1), raw = as they are (an integer input always takes them raw)",
    )
    max_batch_rows: int = pydantic.Field(256, gt=0, le=65536, description="most rows in one session call")
    max_request_rows: pydantic.PositiveInt = pydantic.Field(4096, description="most rows in one request (413 above)")
    max_request_bytes: pydantic.PositiveInt = pydantic.Field(64 * MiB, description="largest body (413 above)")
    max_batch_delay_ms: float = pydantic.Field(
        2.0, ge=0, le=1000, description="longest a batch waits for requests still being read (0: never)"
    )
    max_queue_rows: pydantic.PositiveInt | None = pydantic.Field(
        None, description="most rows waiting per worker (503 above); default 2 x MAX_REQUEST_ROWS"
    )
    max_queue_wait_ms: pydantic.PositiveInt = pydantic.Field(5000, description="longest wait in the queue (503 after)")
    require_gpu: bool = pydantic.Field(False, description="fail start-up when no GPU is visible")
    gpu_memory_limit_mb: pydantic.PositiveInt | None = pydantic.Field(
        None,
        description="most GPU memory (MiB) each worker's session may take; default: grows as needed. For a GPU"
        " shared with other processes, or to see the out-of-memory split at a known batch size (make gpu-check)",
    )
    scoring_api_key: pydantic.SecretStr | None = pydantic.Field(
        None, description="when set (non-empty), POST /score needs `Authorization: Bearer <key>` (401 otherwise)"
    )
    metrics_port: int = pydantic.Field(
        8002, ge=0, le=65535, description="Prometheus metrics of every worker on this port (0: off)"
    )
    metrics_bind: str = pydantic.Field(
        "0.0.0.0",
        description="IP address the metrics port listens on: all interfaces by default, since Prometheus scrapes"
        " pod IPs; 127.0.0.1 keeps it local (an IPv6 address such as :: works too)",
    )
    log_requests: Literal["all", "errors", "none"] = pydantic.Field(
        "all", description="one JSON log line per /score request: for all, only for non-2xx, or none"
    )
    worker_count: pydantic.PositiveInt = pydantic.Field(1, description="gunicorn workers (azmlinfsrv's own setting)")
    max_inflight_bytes: pydantic.PositiveInt | None = pydantic.Field(
        None,
        description="most request bytes a worker reads and decodes at once, weighted (503 above); "
        "default from the memory the container may use (see inflight_budget)",
    )
    session_hang_s: float = pydantic.Field(
        20.0, gt=0, description="a session call running longer than this is hung: the worker exits and is replaced"
    )
    warmup_max_requests: pydantic.NonNegativeInt = pydantic.Field(
        100,
        description="most requests a warm-up file (warmup.jsonl in the served version folder, one JSON request body "
        "a line) may hold: more stops start-up; 0: the file is not read (docs/warmup.md)",
    )
    data_collection: bool = pydantic.Field(
        False,
        description="1: send a sample of requests' inputs and outputs to Azure ML's model data collector "
        "(azureml-ai-monitoring; the deployment's data_collector sets where), off the request path",
    )
    data_collection_sample: float = pydantic.Field(
        1.0, gt=0, le=1, description="the share of requests whose data is collected when DATA_COLLECTION=1"
    )
    data_collection_max_bytes: pydantic.PositiveInt = pydantic.Field(
        64 * MiB, description="most bytes of requests' data waiting to be collected per worker (dropped above)"
    )
    # OpenTelemetry's standard variables for traces over OTLP (tracing.py); the TRACES_ ones win over the others.
    otel_sdk_disabled: bool = pydantic.Field(False, description="OpenTelemetry's: true turns every span off")
    otel_traces_exporter: Literal["otlp", "none"] = pydantic.Field(
        "otlp", description="OpenTelemetry's: otlp (when an endpoint is set) or none"
    )
    otel_exporter_otlp_endpoint: pydantic.HttpUrl | None = pydantic.Field(
        None, description="traces go to <it>/v1/traces over OTLP/HTTP (http:// or https://)"
    )
    otel_exporter_otlp_traces_endpoint: pydantic.HttpUrl | None = pydantic.Field(
        None, description="the full URL for traces"
    )
    otel_exporter_otlp_headers: str | None = pydantic.Field(
        None, description="key=value,... headers of each export, values URL-encoded (an API key, say)"
    )
    otel_exporter_otlp_traces_headers: str | None = pydantic.Field(None, description="as above, for traces only")
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = pydantic.Field(
        "http/protobuf", description="only OTLP over HTTP with protobuf is spoken (no grpc)"
    )
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf"] | None = pydantic.Field(
        None, description="as above, for traces only"
    )
    otel_exporter_otlp_timeout: pydantic.PositiveInt = pydantic.Field(
        10000, description="milliseconds one export may take"
    )
    otel_exporter_otlp_traces_timeout: pydantic.PositiveInt | None = pydantic.Field(
        None, description="as above, for traces only"
    )
    otel_exporter_otlp_compression: Literal["gzip", "none"] = pydantic.Field(
        "none", description="gzip: exports are compressed"
    )
    otel_exporter_otlp_traces_compression: Literal["gzip", "none"] | None = pydantic.Field(
        None, description="as above, for traces only"
    )
    otel_exporter_otlp_certificate: pydantic.FilePath | None = pydantic.Field(
        None, description="CA certificate (PEM) to check an https endpoint with"
    )
    otel_exporter_otlp_traces_certificate: pydantic.FilePath | None = pydantic.Field(
        None, description="as above, for traces only"
    )
    otel_service_name: str | None = pydantic.Field(
        None, description="the service name of the spans; default: the model's name"
    )
    prometheus_multiproc_dir: str | None = pydantic.Field(
        None,
        description="prometheus_client's directory for the workers' metrics; default: one per server run in the temp"
        " dir (metrics.py); if you set it, empty it before each start (prometheus_client's rule)",
    )
    tf_num_intraop_threads: pydantic.PositiveInt | None = pydantic.Field(
        None, description="TensorFlow's own variable (it reads it itself); unset: the usable cores / WORKER_COUNT"
    )
    cuda_visible_devices: str | None = pydantic.Field(
        None, description="CUDA's own variable: the GPUs the workers share out (and the GPU metrics report)"
    )
    worker_state_dir: Path | None = pydantic.Field(
        None, description="set by serve.py: each worker writes its state here for the health probes"
    )

    @pydantic.field_validator("scoring_api_key")
    @classmethod
    def _visible_ascii_key(cls, key: pydantic.SecretStr | None) -> pydantic.SecretStr | None:
        # A Secret made from a file often ends in a newline; a key must match what a client can send in a header.
        value = key.get_secret_value().strip() if key else ""
        if any(not "!" <= char <= "~" for char in value):
            raise ValueError("must be printable ASCII without spaces (it is sent as `Authorization: Bearer <key>`)")
        return pydantic.SecretStr(value) if value else None

    @pydantic.field_validator("metrics_bind")
    @classmethod
    def _ip_literal(cls, bind: str) -> str:
        try:
            return str(ipaddress.ip_address(bind))
        except ValueError:
            raise ValueError("must be an IP address such as 0.0.0.0 (all interfaces) or 127.0.0.1") from None

    @property
    def api_key(self) -> bytes | None:
        """The API key as bytes, or None when SCORING_API_KEY is unset or empty (no key check)."""
        key = self.scoring_api_key.get_secret_value() if self.scoring_api_key else ""
        return key.encode() or None

    @property
    def queue_rows(self) -> int:
        return self.max_queue_rows or 2 * self.max_request_rows

    @property
    def inflight_budget(self) -> int:
        """MAX_INFLIGHT_BYTES, or this worker's share of the memory the container may use."""
        if self.max_inflight_bytes:
            return self.max_inflight_bytes
        return sizing.inflight_bytes_per_worker(sizing.memory_limit(), self.worker_count, self.max_request_bytes)

    def served_folder(self) -> versions.ServedFolder:
        """The folder the model is loaded from, with the model's name and version: AZUREML_MODEL_DIR's highest
        <version>/ (or MODEL_VERSION's) where it holds versions, else AZUREML_MODEL_DIR itself, named by the
        registered-model layout <name>/<version>/ unless MODEL_NAME and MODEL_VERSION say otherwise.  Read from the
        file system on each call: a worker reads it once (StartupError: MODEL_VERSION is not there)."""
        return versions.served_folder(self.azureml_model_dir, self.model_version, self.model_name)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_otel_is_unset(cls, values: object) -> object:
        """OpenTelemetry's rule: an empty OTEL_* variable is an unset one (a manifest's `value: ""`)."""
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if not (k.lower().startswith("otel_") and v == "")}
        return values

    @pydantic.field_validator("otel_exporter_otlp_headers", "otel_exporter_otlp_traces_headers")
    @classmethod
    def _printable_headers(cls, headers: str | None) -> str | None:
        # A control character in a value would end the export's header block; the message must not show the value.
        if headers and any(not " " <= char <= "~" for char in unquote(headers)):
            raise ValueError("holds a character that cannot be sent in an HTTP header (after URL-decoding)")
        return headers

    @property
    def otlp_traces(self) -> OtlpTraces | None:
        """Where and how spans go over OTLP/HTTP, from OpenTelemetry's variables; None: not exported."""
        if self.otel_sdk_disabled or self.otel_traces_exporter == "none":
            return None
        if self.otel_exporter_otlp_traces_endpoint:
            endpoint = str(self.otel_exporter_otlp_traces_endpoint)
        elif self.otel_exporter_otlp_endpoint:  # <endpoint>/v1/traces, a query it has kept after the path
            base = urlsplit(str(self.otel_exporter_otlp_endpoint))
            endpoint = base._replace(path=base.path.rstrip("/") + "/v1/traces").geturl()
        else:
            return None
        headers = self.otel_exporter_otlp_traces_headers or self.otel_exporter_otlp_headers or ""
        pairs = (item.split("=", 1) for item in headers.split(",") if "=" in item)
        return OtlpTraces(
            endpoint=endpoint,
            headers={unquote(key).strip(): unquote(value).strip() for key, value in pairs},
            timeout_s=(self.otel_exporter_otlp_traces_timeout or self.otel_exporter_otlp_timeout) / 1e3,
            gzip=(self.otel_exporter_otlp_traces_compression or self.otel_exporter_otlp_compression) == "gzip",
            certificate=self.otel_exporter_otlp_traces_certificate or self.otel_exporter_otlp_certificate,
        )

    @property
    def checkpoint_prefix(self) -> Path:
        return self.served_folder().path / self.model_folder / self.model_file_prefix

    @property
    def checkpoint_search(self) -> Path | None:
        """Where start-up looks for the meta-graph when the checkpoint prefix is the default one and absent: under
        MODEL_FOLDER where that alone is set, else under the model directory.  None: MODEL_FILE_PREFIX is set, and
        the checkpoint prefix is used as it is."""
        if "model_file_prefix" in self.model_fields_set:
            return None
        return self.checkpoint_prefix.parent if "model_folder" in self.model_fields_set else self.served_folder().path

    @property
    def given_tensors(self) -> dict[str, str]:
        """INPUT_TENSOR and OUTPUT_TENSOR where they are set, by field name.  A side set serves the tensors it names;
        a side not set serves the serving signature's, where the meta-graph declares one, else its default's."""
        given = ("input_tensor", "output_tensor")
        return {name: getattr(self, name) for name in given if name in self.model_fields_set}

    @property
    def saved_model_tag_set(self) -> list[str]:
        """SAVED_MODEL_TAGS as the tags TensorFlow's loader takes, sorted: a meta-graph is chosen by its whole set."""
        return sorted({tag.strip() for tag in self.saved_model_tags.split(",") if tag.strip()})


@dataclass(frozen=True)
class OtlpTraces:
    endpoint: str
    headers: dict[str, str]
    timeout_s: float
    gzip: bool
    certificate: Path | None

    @property
    def shown(self) -> str:
        """The endpoint as a log line may show it: no user, password or query (a token may hide there)."""
        url = urlsplit(self.endpoint)
        host = f"[{url.hostname}]" if ":" in (url.hostname or "") else url.hostname
        return f"{url.scheme}://{host}{f':{url.port}' if url.port else ''}{url.path}"


def _shown(error: dict) -> str:
    """The rejected value as a log line may show it: never a secret's."""
    return "<hidden>" if error["loc"][0] in _SECRETS else repr(error["input"])


_SECRETS = {
    "scoring_api_key",
    "otel_exporter_otlp_headers",
    "otel_exporter_otlp_traces_headers",
    "otel_exporter_otlp_endpoint",
    "otel_exporter_otlp_traces_endpoint",
}  # may carry an exporter's key


class ServerSettings(_FromEnv):
    """What serve.py reads: the front door (nginx) and the process tree around azmlinfsrv."""

    @property
    def busy_limit_s(self) -> float:
        """WORKER_BUSY_S, or 30 s after the front door has answered the busy worker's client (504)."""
        return self.worker_busy_s or max(self.upstream_timeout_s + 30.0, self.worker_hang_s + 30.0)

    @pydantic.field_validator("worker_busy_s")
    @classmethod
    def _busy_after_frozen(cls, busy: float | None, info: pydantic.ValidationInfo) -> float | None:
        hang, upstream = info.data.get("worker_hang_s"), info.data.get("upstream_timeout_s")  # declared above
        if busy is None:
            return None  # busy_limit_s: UPSTREAM_TIMEOUT_S + 30
        if hang is not None and busy <= hang:
            raise ValueError(f"must be above WORKER_HANG_S ({hang:g}): a busy worker is given longer than a frozen one")
        if upstream is not None and busy <= upstream:
            raise ValueError(
                f"must be above UPSTREAM_TIMEOUT_S ({upstream}): the front door answers 504 first, and does not send "
                "the request on to another worker"
            )
        return busy

    front_door: bool = pydantic.Field(
        True, description="serve through nginx (buffering, timeouts, health); 0: azmlinfsrv on the port directly"
    )
    client_header_timeout_s: pydantic.PositiveInt = pydantic.Field(
        10, description="a client must send its request line and headers within this (connection closed after)"
    )
    client_body_timeout_s: pydantic.PositiveInt = pydantic.Field(
        30, description="longest pause between two reads of a request body (connection closed after, logged as 408)"
    )
    keepalive_timeout_s: pydantic.NonNegativeInt = pydantic.Field(
        65, description="an idle client connection is closed after this (0: no keep-alive)"
    )
    max_connections: int = pydantic.Field(
        8192, ge=64, le=65536, description="most connections the front door holds, clients and workers together"
    )
    upstream_timeout_s: pydantic.PositiveInt = pydantic.Field(
        120, description="longest the front door waits for a worker's answer (504 after)"
    )
    worker_hang_s: float = pydantic.Field(
        10.0, gt=0, description="a serving worker silent for this long (frozen) is killed and replaced"
    )
    worker_busy_s: float | None = pydantic.Field(
        None,
        gt=0,
        description="a serving worker silent but using CPU (in one long native call) is killed after this long; "
        "above UPSTREAM_TIMEOUT_S, so that its client gets the front door's 504 first and the request is not "
        "retried (default: UPSTREAM_TIMEOUT_S + 30)",
    )
    max_request_bytes: pydantic.PositiveInt = Settings.model_fields["max_request_bytes"]  # nginx's limit too
    cuda_visible_devices: str | None = Settings.model_fields["cuda_visible_devices"]  # GPUs to size the workers to
    azureml_model_dir: Path | None = pydantic.Field(
        None,
        description="the model folder (serve.py's --model_dir sets it, as azmlinfsrv's): where it holds <version>/ "
        "subfolders, serve.py watches it for a new version and swaps the workers onto it",
    )
    model_version: str | None = pydantic.Field(
        None, description="as the scoring script's MODEL_VERSION: a pinned version is never swapped for another"
    )
    model_poll_s: float = pydantic.Field(
        60.0,
        ge=0,
        description="seconds between two looks for a new <version>/ subfolder of a versioned model folder (0: only "
        "on SIGHUP to serve.py, which looks at once either way)",
    )
    model_load_timeout_s: float = pydantic.Field(
        600.0,
        gt=0,
        description="a new version's workers must all be serving (loaded and warm) within this; otherwise the swap "
        "is given up and the version served so far goes on serving",
    )
    worker_count: pydantic.PositiveInt | None = pydantic.Field(
        None, description="gunicorn workers (azmlinfsrv's WORKER_COUNT); default sized to the machine (sizing.py)"
    )

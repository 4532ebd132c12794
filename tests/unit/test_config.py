"""Configuration: environment variables with the how-to's defaults; a bad value stops start-up naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfscoring.config import ServerSettings, Settings
from tfscoring.errors import StartupError
from tfscoring.tf import devices


def test_defaults_match_the_howto(env):
    settings = Settings.from_env()
    assert settings.checkpoint_prefix == Path("/models/tf-dnn-mnist/1/model/mnist-tf.model")
    assert settings.input_tensor == "network/X:0"
    assert settings.output_tensor == "network/output/MatMul:0"
    assert (settings.max_batch_rows, settings.max_request_rows, settings.max_request_bytes) == (256, 4096, 64 << 20)
    assert settings.require_gpu is False


def test_environment_overrides(env):
    env.setenv("MODEL_FOLDER", "tf")
    env.setenv("MODEL_FILE_PREFIX", "net")
    env.setenv("MAX_BATCH_ROWS", "32")
    env.setenv("REQUIRE_GPU", "1")
    settings = Settings.from_env()
    assert settings.checkpoint_prefix == Path("/models/tf-dnn-mnist/1/tf/net")
    assert settings.max_batch_rows == 32
    assert settings.require_gpu is True


def test_missing_model_dir_is_named(env):
    env.delenv("AZUREML_MODEL_DIR")
    with pytest.raises(StartupError, match="AZUREML_MODEL_DIR is not set"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_BATCH_ROWS", "0"),
        ("MAX_BATCH_ROWS", "100000"),
        ("MAX_REQUEST_ROWS", "many"),
        ("REQUIRE_GPU", "perhaps"),
        ("GPU_MEMORY_LIMIT_MB", "0"),
    ],
)
def test_invalid_values_are_named_with_their_value(env, name, value):
    env.setenv(name, value)
    with pytest.raises(StartupError, match=f"invalid configuration: {name}='{value}': "):
        Settings.from_env()


def test_a_gpu_memory_limit_gives_the_session_one_virtual_device_of_that_size(env):
    # make gpu-check relies on it: on an H100, a 65,536-row call ran out of 128 MiB and was split.
    env.setenv("GPU_MEMORY_LIMIT_MB", "128")
    limited = devices.Placement(0, "GPU 0").session_config(Settings.from_env().gpu_memory_limit_mb)
    assert list(limited.gpu_options.experimental.virtual_devices[0].memory_limit_mb) == [128.0]
    assert limited.gpu_options.visible_device_list == "0" and limited.gpu_options.allow_growth
    unlimited = devices.Placement(0, "GPU 0").session_config(None)
    assert not unlimited.gpu_options.experimental.virtual_devices


def test_opentelemetrys_variables_give_where_and_how_spans_go(env):
    assert Settings.from_env().otlp_traces is None  # no endpoint: no export
    env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:pw@collector.example:4318")
    env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%3Db, tenant=7")
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500")
    env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    otlp = Settings.from_env().otlp_traces
    assert otlp.endpoint == "https://user:pw@collector.example:4318/v1/traces"
    assert otlp.headers == {"api-key": "a=b", "tenant": "7"} and otlp.timeout_s == 2.5 and otlp.gzip
    assert otlp.shown == "https://collector.example:4318/v1/traces"  # no password in a log line
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:4318/custom")
    assert Settings.from_env().otlp_traces.endpoint == "http://other:4318/custom"
    env.setenv("OTEL_SDK_DISABLED", "true")
    assert Settings.from_env().otlp_traces is None


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "'grpc'"),  # not silently sent as HTTP
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "<hidden>"),  # no scheme; a URL may hold a token
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret%0Atoken", "<hidden>"),  # a newline would end the headers
        ("OTEL_TRACES_EXPORTER", "zipkin", "'zipkin'"),
    ],
)
def test_opentelemetry_settings_this_server_cannot_honour_stop_start_up_without_showing_secrets(
    env, name, value, shown
):
    env.setenv(name, value)
    with pytest.raises(StartupError) as refused:
        Settings.from_env()
    assert f"{name}={shown}" in str(refused.value) and "s3cret" not in str(refused.value)


def test_an_empty_opentelemetry_variable_is_an_unset_one(env):
    """OpenTelemetry's rule, and what a manifest's `value: ""` gives: no export, no stopped start-up."""
    env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    env.setenv("OTEL_SDK_DISABLED", "")
    env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "")
    assert Settings.from_env().otlp_traces is None


def test_an_endpoints_query_stays_after_the_traces_path_and_a_log_line_shows_no_secret(env):
    env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/base/?tenant=7")
    assert Settings.from_env().otlp_traces.endpoint == "http://collector:4318/base/v1/traces?tenant=7"
    env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1]:4318")
    assert Settings.from_env().otlp_traces.shown == "http://[::1]:4318/v1/traces"


def test_a_certificate_that_is_not_there_stops_start_up(env, tmp_path):
    env.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tmp_path / "missing.pem"))
    with pytest.raises(StartupError, match="OTEL_EXPORTER_OTLP_CERTIFICATE"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("busy", "other", "why"),
    [
        ("10", {}, "WORKER_HANG_S"),
        ("100", {}, "UPSTREAM_TIMEOUT_S"),
        ("200", {"UPSTREAM_TIMEOUT_S": "300"}, "UPSTREAM"),
    ],
)
def test_a_busy_worker_is_given_longer_than_a_frozen_one_and_than_the_front_door_waits(env, busy, other, why):
    env.setenv("WORKER_BUSY_S", busy)
    for name, value in other.items():
        env.setenv(name, value)
    with pytest.raises(StartupError, match=f"WORKER_BUSY_S='{busy}': .*must be above {why}"):
        ServerSettings.from_env()

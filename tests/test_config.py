"""Configuration: environment variables with the how-to's defaults; a bad value stops start-up naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfscoring.config import Settings
from tfscoring.errors import StartupError


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
    [("MAX_BATCH_ROWS", "0"), ("MAX_BATCH_ROWS", "100000"), ("MAX_REQUEST_ROWS", "many"), ("REQUIRE_GPU", "perhaps")],
)
def test_invalid_values_are_named_with_their_value(env, name, value):
    env.setenv(name, value)
    with pytest.raises(StartupError, match=f"invalid configuration: {name}='{value}': "):
        Settings.from_env()

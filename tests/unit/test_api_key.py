"""SCORING_API_KEY as a setting: stripped, empty meaning none, and a key no client could send stops start-up
without showing it.  The key over HTTP: tests/http/test_api_key.py."""

from __future__ import annotations

import pytest

from tfscoring.config import Settings
from tfscoring.errors import StartupError


@pytest.mark.parametrize(("configured", "key"), [(" k-1 \n", b"k-1"), ("k-1", b"k-1"), ("", None), (" \n", None)])
def test_a_configured_key_is_stripped_and_an_empty_one_means_no_key(configured, key, tmp_path):
    assert Settings(azureml_model_dir=tmp_path, scoring_api_key=configured).api_key == key


@pytest.mark.parametrize("configured", ["two words", "caf\u00e9", "tab\there"])
def test_a_key_no_client_could_send_stops_start_up_without_showing_it(configured, monkeypatch, tmp_path):
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SCORING_API_KEY", configured)
    with pytest.raises(StartupError) as stopped:
        Settings.from_env()
    assert "SCORING_API_KEY=<hidden>: Value error, must be printable ASCII without spaces" in str(stopped.value)
    assert configured not in str(stopped.value)

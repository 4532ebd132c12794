"""Fixtures of the unit tests, which run without the trained model (make unit builds none): where a test needs the
how-to's graph, it loads `howto_model_dir`, the how-to's network with its untrained initial weights (tests/graphs.py).
What only the trained model shows (its accuracy, the build) is in tests/system/test_model_build.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import graphs


@pytest.fixture(scope="session")
def howto_model_dir(tmp_path_factory) -> Path:
    """The how-to's graph, untrained, in the registered-model layout <name>/<version>/model/mnist-tf.model.*."""
    model_dir = tmp_path_factory.mktemp("models") / "tf-dnn-mnist" / "1"
    graphs.howto(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The trained model (tests/conftest.py) is not the unit tests': they pass without it."""
    pytest.fail("a unit test runs without the trained model: load howto_model_dir, or test the model in tests/system")

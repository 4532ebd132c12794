"""METRICS_BIND, the metrics port's bind address: every interface by default, IPv4 and IPv6 addresses, nothing else
(the port itself: tests/http/test_metrics_port.py)."""

from __future__ import annotations

import pytest

from tfscoring.config import Settings
from tfscoring.errors import StartupError


def test_metrics_bind_defaults_to_every_interface(env):
    assert Settings.from_env().metrics_bind == "0.0.0.0"


@pytest.mark.parametrize("bind", ["0.0.0.0", "127.0.0.1", "::", "::1", "10.1.2.3"])
def test_metrics_bind_takes_ipv4_and_ipv6_addresses(env, bind):
    env.setenv("METRICS_BIND", bind)
    assert Settings.from_env().metrics_bind == bind


@pytest.mark.parametrize("bind", ["localhost", "", "0.0.0.0:8002", "256.0.0.1"])
def test_metrics_bind_refuses_anything_else(env, bind):
    env.setenv("METRICS_BIND", bind)
    with pytest.raises(StartupError, match=f"invalid configuration: METRICS_BIND='{bind}': .*must be an IP address"):
        Settings.from_env()

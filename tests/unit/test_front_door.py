"""The front door's nginx configuration as serve.py writes it, checked by nginx itself (nginx -t).  The front door
serving: tests/http/test_front_door.py."""

from __future__ import annotations

import re

from tests.support import (
    free_port,
)
from tfscoring import frontdoor
from tfscoring.config import ServerSettings


def test_the_configuration_written_for_nginx_is_one_nginx_accepts(tmp_path, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "1234567")
    monkeypatch.setenv("CLIENT_HEADER_TIMEOUT_S", "7")
    config = frontdoor.write_config(ServerSettings.from_env(), free_port(), tmp_path)
    frontdoor.check(config)  # nginx -t
    text = config.read_text()
    assert "client_max_body_size 1234567;" in text and "client_header_timeout 7s;" in text
    assert not re.search(r"@[A-Z_]+@", text)

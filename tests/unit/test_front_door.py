"""The front door's nginx configuration as serve.py writes it, checked by nginx itself (nginx -t), and the gunicorn
arguments serve.py adds.  The front door serving: tests/http/test_front_door.py."""

from __future__ import annotations

import re
import runpy
import shlex
import subprocess
import sys

import pytest
from gunicorn.config import Config

import serve  # server/serve.py (pytest's pythonpath has server/)
from tests.support import (
    REPO,
    free_port,
)
from tfscoring import shared
from tfscoring.config import ServerSettings
from tfscoring.observability import requestlog, tracing
from tfscoring.process import frontdoor


def test_the_configuration_written_for_nginx_is_one_nginx_accepts(tmp_path, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "1234567")
    monkeypatch.setenv("CLIENT_HEADER_TIMEOUT_S", "7")
    config = frontdoor.write_config(ServerSettings.from_env(), free_port(), tmp_path)
    frontdoor.check(config)  # nginx -t
    text = config.read_text()
    assert "client_max_body_size 1234567;" in text and "client_header_timeout 7s;" in text
    assert not re.search(r"@[A-Z_]+@", text)


@pytest.mark.parametrize(
    "given",
    ["-c my.py", "-cmy.py", "--config my.py", "--config=my.py", "--conf my.py", "--confi=my.py", "-Rc my.py"],
)
def test_a_users_own_gunicorn_configuration_file_is_kept_in_every_spelling(given):
    """serve.py adds its -c only where GUNICORN_CMD_ARGS names no file: one added after the user's would be the one
    gunicorn's argparse keeps, the user's silently ignored."""
    args = serve.gunicorn_args(f"--threads 4 {given}", front_door=True)
    assert Config().parser().parse_args(shlex.split(args)).config == "my.py"
    assert str(serve.GUNICORN_CONF) not in args


def test_gunicorn_args_add_ours_where_the_user_sets_nothing():
    parsed = Config().parser().parse_args(shlex.split(serve.gunicorn_args("--threads 4", front_door=True)))
    assert parsed.config == str(serve.GUNICORN_CONF) and parsed.control_socket_disable and parsed.keepalive == 75
    kept = serve.gunicorn_args("--keep-alive=5 --control-socket=/tmp/g.ctl", front_door=True)
    parsed = Config().parser().parse_args(shlex.split(kept))
    assert parsed.keepalive == 5 and parsed.control_socket == "/tmp/g.ctl" and not parsed.control_socket_disable
    assert "--keep-alive 75" not in serve.gunicorn_args("--threads 4", front_door=False)


def test_the_supervisor_imports_no_flask():
    """serve.py, the supervisor and frontdoor.py (nginx's configuration) run in the process that stays up all along:
    none of them imports Flask, azmlinfsrv or TensorFlow."""
    heavy = "{'flask', 'azureml_inference_server_http', 'tensorflow'}"
    code = f"import sys, serve; print(sorted({{name.split('.')[0] for name in sys.modules}} & {heavy}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO / "server", capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_log_field_cap_is_one_number(tmp_path):
    """requestlog's, gunicorn_conf's (loaded by gunicorn's master from its path), tracing's and nginx's."""
    conf = runpy.run_path(str(serve.GUNICORN_CONF))
    assert conf["FIELD_CHARS"] == requestlog.FIELD_CHARS == tracing.FIELD_CHARS == shared.FIELD_CHARS
    config = frontdoor.write_config(ServerSettings.from_env(), free_port(), tmp_path).read_text()
    assert f".{{0,{shared.FIELD_CHARS}}})" in config

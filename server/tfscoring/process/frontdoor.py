"""nginx as the front door: its configuration for one start, and the command that runs it in the foreground."""

from __future__ import annotations

import grp
import os
import pwd
import re
import resource
import shutil
import subprocess
from pathlib import Path

from tfscoring.config import ServerSettings
from tfscoring.errors import StartupError
from tfscoring.process import rundir
from tfscoring.shared import CORS_EXPOSE, FIELD_CHARS, PATH_HEADER

TEMPLATE = Path(__file__).with_name("nginx.conf.in")
_UNPRIVILEGED = "nobody"  # nginx's own default worker user when started as root
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
UPSTREAM_KEEPALIVE = 64  # idle kept-alive connections nginx keeps to the workers
# An origin nginx's map can hold as a plain string: scheme://host[:port], nothing nginx or a regex would read.
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9.-]+(:[0-9]+)?")


def write_config(settings: ServerSettings, port: int, run_dir: Path) -> Path:
    """nginx.conf for this start in run_dir, with the temp folders nginx writes to (no root needed)."""
    for name in _TEMP_DIRS:
        (run_dir / name).mkdir(mode=0o700, exist_ok=True)
    values = {
        "USER": f"user {_UNPRIVILEGED} {grp.getgrgid(pwd.getpwnam(_UNPRIVILEGED).pw_gid).gr_name};" if _root() else "",
        "RUN_DIR": str(run_dir),
        "PORT": str(port),
        "MAX_CONNECTIONS": str(settings.max_connections),
        # Each client connection may hold a worker connection too; nginx raises its own limit this far.
        "NOFILE": str(min(2 * settings.max_connections + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1])),
        "CLIENT_HEADER_TIMEOUT": str(settings.client_header_timeout_s),
        "CLIENT_BODY_TIMEOUT": str(settings.client_body_timeout_s),
        "KEEPALIVE_TIMEOUT": str(settings.keepalive_timeout_s),
        "MAX_BODY": str(settings.max_request_bytes),
        "UPSTREAM_TIMEOUT": str(settings.upstream_timeout_s),
        "UPSTREAM_KEEPALIVE": str(UPSTREAM_KEEPALIVE),
        "SCORING_SERVERS": f"        server unix:{run_dir}/gunicorn.sock max_fails=0;\n" * (UPSTREAM_KEEPALIVE + 2),
        "CORS_ORIGINS": _cors_map(os.environ.get("AML_CORS_ORIGINS", "")),
        "CORS_EXPOSE": CORS_EXPOSE,  # the answer headers a browser page may read with CORS on
        "FIELD_CHARS": str(FIELD_CHARS),  # the longest URI in nginx's log line
        "PATH_HEADER": PATH_HEADER,  # the header that hands an Open Inference Protocol path to /score
    }
    text = re.sub(r"@([A-Z_]+)@", lambda m: values[m[1]], TEMPLATE.read_text())
    path = run_dir / "nginx.conf"
    path.write_text(text)
    return path


def _cors_map(origins: str) -> str:
    """The entries of nginx's map from a request's Origin to the Access-Control-Allow-Origin of nginx's own
    errors: the origins of AML_CORS_ORIGINS (azmlinfsrv's, comma-separated), as flask_cors answers them (the
    origin itself; `*` for any).  flask_cors also reads an entry with regex characters as a regex: such an
    entry gets no CORS headers on nginx's own errors (azmlinfsrv's answers still have them)."""
    lines = []
    for origin in (part.strip() for part in origins.split(",")):
        if origin == "*":
            lines.append('        "~." "*";\n')
        elif _ORIGIN.fullmatch(origin):
            lines.append(f'        "{origin}" $http_origin;\n')
    return "".join(lines)


def give_to_workers(run_dir: Path, paths: list[Path] | None = None) -> None:
    """As root, nginx's workers run as nobody: hand them the run folder, its sockets and temp folders (or only
    `paths`: a socket made later, for a new version's workers)."""
    if not _root():
        return
    user = pwd.getpwnam(_UNPRIVILEGED)
    for path in [run_dir, *run_dir.iterdir()] if paths is None else paths:
        # The workers' states stay theirs, the metrics theirs too, the lock file the server's.
        if not path.name.startswith(("workers", "metrics", rundir.LOCK)):
            os.chown(path, user.pw_uid, user.pw_gid)


def _root() -> bool:
    return os.geteuid() == 0


def command(config: Path) -> list[str]:
    """nginx in the foreground on `config`, its prefix (relative paths, early log) in config's folder."""
    # Debian puts nginx in /usr/sbin, which a non-root user's PATH may lack.
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        raise StartupError("nginx is not installed (apt-get install nginx), or set FRONT_DOOR=0 to serve without it")
    argv = [nginx, "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"]
    if _version(nginx) >= (1, 19, 5):  # -e: no attempt at the packaged log file, which only root may open
        argv[1:1] = ["-e", "stderr"]
    return argv


def check(config: Path) -> None:
    """nginx -t: a configuration nginx refuses stops start-up with its own words."""
    result = subprocess.run([*command(config), "-t", "-q"], capture_output=True, text=True)
    if result.returncode:
        raise StartupError(f"nginx refuses its configuration {config}: {result.stderr.strip()}")


def _version(nginx: str) -> tuple[int, ...]:
    text = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr  # "nginx version: nginx/1.22.1"
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in match.groups()) if match else (0,)

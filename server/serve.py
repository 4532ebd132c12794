"""Start the scoring server as `make serve` and the image do: nginx in front, azmlinfsrv behind it.

    python server/serve.py --model_dir models/tf-dnn-mnist/1 --port 5001

The port is the front door's (nginx); azmlinfsrv serves score.py behind it on a
Unix socket (tfscoring/process/supervisor.py).  Other arguments go to azmlinfsrv as they
are.  WORKER_COUNT and GUNICORN_CMD_ARGS are filled in only where the environment
does not set them (tfscoring/process/sizing.py has the reasoning); to GUNICORN_CMD_ARGS, set
or not, serve.py adds gunicorn's configuration file (-c tfscoring/process/gunicorn_conf.py) and
--no-control-socket unless it names a configuration file or control socket itself.  Where the model folder
holds <version>/ subfolders, the supervisor swaps the workers onto a new version as it appears (every
MODEL_POLL_S, and at once on SIGHUP to this process).  FRONT_DOOR=0 runs azmlinfsrv on the port itself, as
before, without swaps.  Azure ML, when it builds its own image from myenv.yml, starts azmlinfsrv itself behind
its own front end; there the deployment sets WORKER_COUNT and GUNICORN_CMD_ARGS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

from gunicorn.config import Config

from tfscoring.config import ServerSettings
from tfscoring.errors import StartupError

# tfscoring is beside this file (a script's folder is first on sys.path), and installed too (pip install -e .).
from tfscoring.process import supervisor
from tfscoring.process.sizing import default_size, memory_limit, usable_cpus, visible_gpus

HERE = Path(__file__).resolve().parent

# Behind nginx, gunicorn keeps idle worker connections longer than nginx does (60 s), so that nginx
# always closes an idle one first and never sends a request on a connection gunicorn is closing; and
# nginx is the only gate for request lines and headers (16 KiB each, answered in JSON): gunicorn's own
# lower limits would answer requests between the two with its plain-text errors.
BEHIND_NGINX = "--keep-alive 75 --limit-request-line 0 --limit-request-field_size 16384 --limit-request-fields 32768"
# glibc maps every allocation above 1 MiB on its own and returns it to the kernel when freed.  Without
# it, glibc raises its threshold as large bodies come and go, and keeps their memory in heaps that never
# shrink: measured, workers grew 1.2 -> 2.4 GB over three rounds of 32 maximum-size bodies and stayed
# there; with it they return to 1.45 GB after every round (bench/results/memory-allocators.md).
MMAP_THRESHOLD = str(1024 * 1024)
# gunicorn's configuration file (tfscoring/process/gunicorn_conf.py): its own errors (a header value with a control
# character, which nginx passes on) answered in JSON, and client-supplied fields in its log lines cut short.
GUNICORN_CONF = HERE / "tfscoring" / "process" / "gunicorn_conf.py"
# gunicorn 27 binds a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl, unlinking what is
# there: two servers of one user on one host would take each other's.  Nothing of ours uses it (gunicornc): off.
NO_CONTROL_SOCKET = "--no-control-socket"


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s serve.py %(levelname)s %(message)s", stream=sys.stdout)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--entry_script", default=str(HERE / "score.py"))
    known, rest = parser.parse_known_args(argv)
    try:
        settings = ServerSettings.from_env()
    except StartupError as err:
        logging.critical("start-up failed: %s", err)
        sys.exit(3)
    cpus, gpus = usable_cpus(), visible_gpus(settings.cuda_visible_devices)
    size = default_size(cpus, memory_limit(), settings.max_request_bytes)  # GPUs are shared round-robin
    env = dict(os.environ)
    env["WORKER_COUNT"] = str(settings.worker_count or size.workers)
    env.setdefault("GUNICORN_CMD_ARGS", f"--threads {size.threads}")
    env.setdefault("AML_APP_ROOT", str(HERE))  # the entry script's folder, as Azure ML sets it
    env.setdefault("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD)
    env["GUNICORN_CMD_ARGS"] = gunicorn_args(env["GUNICORN_CMD_ARGS"], settings.front_door)
    print(
        f"serve.py: {cpus} usable CPU core(s), {gpus} GPU(s): WORKER_COUNT={env['WORKER_COUNT']} "
        f"GUNICORN_CMD_ARGS={env['GUNICORN_CMD_ARGS']!r}",
        flush=True,
    )
    server = shutil.which("azmlinfsrv") or str(Path(sys.executable).with_name("azmlinfsrv"))
    server_argv = [server, "--entry_script", known.entry_script, *rest, "--port", str(known.port)]
    if not settings.front_door:  # no swaps: gunicorn's HUP starts new workers, which load the highest version
        os.execve(server, server_argv, env)
    try:
        supervisor.main(settings, known.port, server_argv, env, model_root(rest, settings))
    except StartupError as err:
        logging.critical("start-up failed: %s", err)
        sys.exit(3)


def model_root(args: list[str], settings: ServerSettings) -> Path | None:
    """The model folder azmlinfsrv is given: its --model_dir (which it puts in AZUREML_MODEL_DIR), else
    AZUREML_MODEL_DIR; the supervisor watches it for new versions."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model_dir")
    given = parser.parse_known_args(args)[0].model_dir
    return Path(given) if given else settings.azureml_model_dir


def gunicorn_args(given: str, front_door: bool) -> str:
    """GUNICORN_CMD_ARGS with ours added where `given` does not set the same thing itself: BEHIND_NGINX (unless it
    sets --keep-alive), our configuration file (unless it names one) and NO_CONTROL_SOCKET (unless it sets either
    control-socket option).  `given` is read with gunicorn's own parser, as gunicorn reads it (shlex, then
    argparse), so that every spelling counts (`-c my.py`, `-cmy.py`, `--config=my.py`, `--conf my.py`): a `-c` of
    ours after the user's would be the one argparse keeps, the user's file silently ignored."""
    settings = _gunicorn_settings(given)
    if settings is None:  # gunicorn will refuse these arguments with its own words when azmlinfsrv starts it
        return given
    args = given
    if front_door and settings["keepalive"] is None:
        args += " " + BEHIND_NGINX
    if settings["config"] is None:
        args += " -c " + shlex.quote(str(GUNICORN_CONF))
    if settings["control_socket"] is None and not settings["control_socket_disable"]:
        args += " " + NO_CONTROL_SOCKET
    return args


def _gunicorn_settings(args: str) -> dict | None:
    """The settings `args` gives (None for each it does not), as gunicorn's parser reads GUNICORN_CMD_ARGS; None
    where gunicorn cannot read them."""

    def refuse(message: str):
        raise ValueError(message)

    parser = Config().parser()
    parser.error = refuse  # not argparse's print-and-exit
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # --help, --version: printed, then SystemExit
            return vars(parser.parse_args(shlex.split(args)))
    except (ValueError, SystemExit):
        return None


if __name__ == "__main__":
    main(sys.argv[1:])

"""Start azmlinfsrv on score.py with worker and thread counts sized to this machine.

    python server/serve.py --model_dir models/tf-dnn-mnist/1 --port 5001

Arguments go to azmlinfsrv as they are.  WORKER_COUNT and GUNICORN_CMD_ARGS
are filled in only where the environment does not set them (see
tfscoring/sizing.py for the reasoning).  Azure ML on AKS starts azmlinfsrv
itself, so there the deployment sets the same two variables.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tfscoring.sizing import default_size, usable_cpus, visible_gpus  # noqa: E402 - needs the path above


def main(args: list[str]) -> None:
    cpus, gpus = usable_cpus(), visible_gpus()
    size = default_size(cpus, gpus)
    env = dict(os.environ)
    env.setdefault("WORKER_COUNT", str(size.workers))
    env.setdefault("GUNICORN_CMD_ARGS", f"--threads {size.threads}")
    env.setdefault("AML_APP_ROOT", str(HERE))  # azmlinfsrv serves swagger2.json / swagger3.json from here
    print(
        f"serve.py: {cpus} usable CPU core(s), {gpus} GPU(s): WORKER_COUNT={env['WORKER_COUNT']} "
        f"GUNICORN_CMD_ARGS={env['GUNICORN_CMD_ARGS']!r}",
        flush=True,
    )
    server = shutil.which("azmlinfsrv") or str(Path(sys.executable).with_name("azmlinfsrv"))
    os.execve(server, [server, "--entry_script", str(HERE / "score.py"), *args], env)


if __name__ == "__main__":
    main(sys.argv[1:])

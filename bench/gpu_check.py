"""make gpu-check: the server on a real NVIDIA GPU, checked end to end, with a short benchmark.

    python bench/gpu_check.py --model-dir models/tf-dnn-mnist/1 --data-dir /usr/share/datasets/fashion-mnist

Runs as a plain program in any Python that has GPU TensorFlow and the server's packages
(no venv, no network, no make): it needs this repository, the model directory and the
Fashion-MNIST t10k files.  Each check starts the server as `make serve` does
(server/serve.py, REQUIRE_GPU=1), speaks HTTP to it on 127.0.0.1, prints PASS or FAIL
with the reason, and goes on to the next:

  placement   every worker pinned to a GPU; TensorFlow ran the output op on /device:GPU:N
  accuracy    t10k through HTTP gives the CPU model's class id on every image
  workers-2, workers-4   two and four workers share the GPU(s), round-robin, and answer
  oom         GPU_MEMORY_LIMIT_MB caps each session: a call larger than fits is split, answers exact
  hidden-gpu  REQUIRE_GPU=1 with CUDA_VISIBLE_DEVICES= stops start-up with one clear line
  bench       1/64-row JSON and raw bodies (and 4096-row raw) at c=1/16/64, 1 worker vs several,
              GPU utilisation and memory read through NVML (nvidia-ml-py) during each cell

Writes gpu-<gpu name>.md and .json in --out (bench/results by default).  On a machine
without a GPU every GPU check fails and says why; --allow-cpu runs the same checks
without REQUIRE_GPU, to try the program itself on a CPU.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Run as a program (python bench/gpu_check.py), its own folder is first on sys.path, not the repository root, where the
# checkout's bench/ and model/ are (they are never installed).  It also runs in a GPU host's own Python with no venv
# and nothing installed (the docstring), where server/'s tfscoring cannot be imported either.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if importlib.util.find_spec("tfscoring") is None:
    sys.path.insert(0, str(REPO / "server"))

from bench import loadgen  # noqa: E402
from model import idx  # noqa: E402
from tfscoring.config import RETRY_LARGER_AFTER, ServerSettings, Settings  # noqa: E402
from tfscoring.process.sizing import default_size, memory_limit, usable_cpus  # noqa: E402

SERVE_PY = REPO / "server" / "serve.py"
_SETTINGS = set(Settings.model_fields) | set(ServerSettings.model_fields)  # environment names, lower-cased
CHECKS = ("placement", "accuracy", "workers-2", "workers-4", "oom", "hidden-gpu", "bench")
OOM_LIMIT_MB = 128  # the model needs ~4.8 KB a row on the GPU: 65,536 rows (~300 MB) cannot fit, 16,384 can
OOM_BATCH_ROWS = 65536
NO_GPU_LINE = "REQUIRE_GPU is set but TensorFlow sees no GPU"
BENCH_CELLS = [
    (body, rows, concurrency) for rows in (1, 64) for body in ("json", "raw") for concurrency in (1, 16, 64)
] + [("raw", 4096, 1), ("raw", 4096, 2)]  # more would be shed: MAX_QUEUE_ROWS is 2 x 4096 per worker
CONTENT_TYPES = {"json": "application/json", "raw": "application/octet-stream"}


@dataclass
class Check:
    name: str
    ok: bool | None = None  # None: not run
    summary: str = ""
    details: list[str] = field(default_factory=list)

    def passed(self, summary: str) -> Check:
        self.ok, self.summary = True, summary
        return self

    def failed(self, summary: str) -> Check:
        self.ok, self.summary = False, summary
        return self


class Server:
    """server/serve.py on a free loopback port, its output in a log file, in its own process group."""

    running: ClassVar[set[Server]] = set()  # every server started and not yet stopped: stopped on any exit

    def __init__(self, name: str, work: Path, model_dir: Path, env: dict[str, str]):
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/score"
        self.log_path = work / f"server-{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, str(SERVE_PY), "--model_dir", str(model_dir), "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        Server.running.add(self)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, workers: int, timeout: float) -> None:
        """Until `workers` workers logged that their model is ready; raises with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count("model ready on") >= workers and _answers(self.url):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with code {self.process.returncode}: {self.tail()}")
            time.sleep(0.5)
        raise RuntimeError(f"{workers} worker(s) not ready within {timeout:.0f} s: {self.tail()}")

    def tail(self, lines: int = 6) -> str:
        """The start-up failure the log names, else its last lines."""
        useful = [line.strip() for line in self.log().splitlines() if line.strip()]
        causes = [line for line in useful if "start-up failed" in line]
        return causes[0] if causes else " | ".join(useful[-lines:])

    def stop(self) -> None:
        Server.running.discard(self)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class Checker:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="tfscoring-gpu-check-"))
        self.deadline = time.monotonic() + args.budget_s
        self.images, self.labels = idx.load_split(args.data_dir, "t10k")
        self.reference: np.ndarray | None = None
        self.reference_info: dict = {}
        self.device_lines: list[str] = []
        self.bench_rows: list[dict] = []
        self.gpu = gpu_description()
        self.log_excerpts: list[str] = []

    def cleanup(self, keep_logs: bool) -> None:
        """Remove the work directory; where a check failed, keep the servers' logs and say where."""
        self.log_excerpts = _log_excerpts(self.work)
        if keep_logs:
            for array in self.work.glob("*.npy"):
                array.unlink()
            print(f"gpu-check: the servers' logs are in {self.work}", flush=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- servers -----------------------------------------------------------------------------------------------

    def server_env(self, workers: int, **extra: str) -> dict[str, str]:
        # The caller's server settings stay out (an API key would make every request a 401): each check sets its own.
        env = {k: v for k, v in os.environ.items() if k.lower() not in _SETTINGS and not k.startswith("GUNICORN_")}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "TF_CPP_MIN_LOG_LEVEL": "0",  # TensorFlow's "Created device ... GPU" lines are INFO
                "WORKER_COUNT": str(workers),
                "METRICS_PORT": "0",
                "LOG_REQUESTS": "errors",
                "FRONT_DOOR": "1" if _has_nginx() else "0",
            }
        )
        if not self.args.allow_cpu:
            env["REQUIRE_GPU"] = "1"
        env.update(extra)
        return env

    def start(self, name: str, workers: int, **extra: str) -> Server:
        return Server(name, self.work, self.args.model_dir, self.server_env(workers, **extra))

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    # -- checks ------------------------------------------------------------------------------------------------

    def compute_reference(self) -> None:
        """The CPU model's class ids for t10k, in a process that sees no GPU."""
        out = self.work / "reference.npy"
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
        env["AZUREML_MODEL_DIR"] = str(self.args.model_dir)
        env.pop("REQUIRE_GPU", None)
        code = (
            "import json, sys, numpy as np, tensorflow as tf\n"
            "from tfscoring.config import Settings\nfrom tfscoring.tf.model import GraphModel\n"
            "model = GraphModel.load(Settings.from_env())\n"
            f"np.save({str(out)!r}, model.predict((np.load({str(self.work / 'images.npy')!r}),))[0].argmax(axis=1))\n"
            "print(json.dumps({'tensorflow': tf.__version__, 'build': {k: str(v) for k, v in "
            "tf.sysconfig.get_build_info().items()\n"
            "  if k in ('cuda_version', 'cudnn_version', 'cuda_compute_capabilities')}}))\n"
        )
        np.save(self.work / "images.npy", self.images)
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO / "server",
            env={**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "server"), env.get("PYTHONPATH")]))},
            capture_output=True,
            text=True,
            timeout=max(30.0, self.remaining()),
        )
        if done.returncode != 0:
            raise RuntimeError(f"the CPU reference failed: {done.stderr.strip().splitlines()[-1:]}")
        self.reference = np.load(out)
        self.reference_info = json.loads(done.stdout.strip().splitlines()[-1])

    def check_placement(self, check: Check, server: Server, workers: int) -> None:
        log = server.log()
        pinned = re.findall(r"worker (\d+) \(slot (\d+)\) pinned to GPU (\d+) of (\d+): (.*)", log)
        on_cpu = re.findall(r"no GPU visible to TensorFlow: worker (\d+)", log)
        ran_on = re.findall(r"output op ran on ([^,\s]+)", log)
        self.device_lines += [line.strip() for line in log.splitlines() if "Created device" in line]
        self.device_lines += [f"{server.name}: output op ran on {d}" for d in ran_on]
        check.details += [
            f"worker {pid} (slot {slot}) -> GPU {gpu} of {count}: {name}" for pid, slot, gpu, count, name in pinned
        ]
        check.details += [f"worker {pid} on the CPU (no GPU visible)" for pid in on_cpu]
        check.details += [f"output op ran on {d}" for d in ran_on]
        on_gpu = [d for d in ran_on if re.search(r"/device:GPU:\d+$", d)]
        if len(pinned) < workers or len(on_gpu) < workers:
            check.failed(
                f"{len(pinned)} of {workers} worker(s) pinned to a GPU, {len(on_gpu)} ran the output op on one"
                + (f"; {len(on_cpu)} on the CPU: no GPU visible to TensorFlow" if on_cpu else "")
                + (f"; ran on {sorted(set(ran_on))}" if ran_on else "")
            )
            return
        gpus = int(pinned[0][3])
        used = {int(gpu) for _, _, gpu, _, _ in pinned}
        astray = [(int(slot), int(gpu)) for _, slot, gpu, _, _ in pinned if int(gpu) != int(slot) % gpus]
        if astray:
            check.failed(
                f"not round-robin over {gpus} GPU(s): (slot, GPU) {astray}; slot n should use GPU n mod {gpus}"
            )
            return
        if "mapped to multiple CUDA devices" in log:
            check.failed("TensorFlow: a GPU mapped to multiple CUDA devices")
            return
        check.passed(f"{workers} worker(s) on GPU(s) {sorted(used)} of {gpus}: {sorted(set(on_gpu))}")

    def check_accuracy(self, check: Check, server: Server) -> None:
        if self.reference is None:
            check.failed("no CPU reference to compare with")
            return
        answers = []
        for start in range(0, len(self.images), 100):
            body = json.dumps({"data": self.images[start : start + 100].tolist()}).encode()
            answers += _post(server.url, body, "application/json")
        raw = _post(server.url, self.images[:1000].astype("<f4").tobytes(), "application/octet-stream")
        gpu = np.asarray(answers)
        differ = int((gpu != self.reference).sum()) + int((np.asarray(raw) != self.reference[:1000]).sum())
        accuracy = float((gpu == self.labels).mean())
        cpu_accuracy = float((self.reference == self.labels).mean())
        check.details.append(f"accuracy {accuracy:.4f} through HTTP, {cpu_accuracy:.4f} on the CPU")
        if differ:
            where = np.flatnonzero(gpu != self.reference)[:10].tolist()
            check.failed(
                f"{differ} of {len(gpu) + 1000} answers differ from the CPU model's (images {where}...); "
                "GPU kernels round differently: near-ties between two classes can flip"
            )
            return
        check.passed(f"all {len(gpu)} t10k images (JSON) and 1000 (raw) equal the CPU model; accuracy {accuracy:.4f}")

    def check_workers(self, check: Check, workers: int) -> None:
        server = self.start(f"workers-{workers}", workers)
        try:
            server.wait_ready(workers, min(240.0, self.remaining()))
            self.check_placement(check, server, workers)
            if check.ok:
                with concurrent.futures.ThreadPoolExecutor(4 * workers) as pool:
                    body = json.dumps({"data": self.images[:8].tolist()}).encode()
                    answers = list(pool.map(lambda _: _post(server.url, body, "application/json"), range(16 * workers)))
                expected = self.reference[:8].tolist() if self.reference is not None else answers[0]
                wrong = sum(answer != expected for answer in answers)
                if wrong:
                    check.failed(f"{wrong} of {len(answers)} concurrent answers differ from the CPU model")
                else:
                    check.summary += f"; {len(answers)} concurrent requests answered"
        finally:
            server.stop()

    def check_oom(self, check: Check) -> None:
        """GPU_MEMORY_LIMIT_MB caps the session: the warm-up's 65,536-row call runs out and is split; after
        RETRY_LARGER_AFTER calls that fit, the worker tries larger calls again, so a large request runs out
        too, in front of us, and is split and retried with every answer exact."""
        server = self.start(
            "oom",
            1,
            GPU_MEMORY_LIMIT_MB=str(OOM_LIMIT_MB),
            MAX_BATCH_ROWS=str(OOM_BATCH_ROWS),
            MAX_REQUEST_ROWS=str(OOM_BATCH_ROWS),
            MAX_QUEUE_ROWS=str(2 * OOM_BATCH_ROWS),
            MAX_REQUEST_BYTES=str(4 * OOM_BATCH_ROWS * 784 + 1024),
        )
        try:
            server.wait_ready(1, min(240.0, self.remaining()))
            if self.reference is None:
                check.failed("no CPU reference to compare the answers with")
                return
            warm_up = split_lines(server.log())
            check.details += [
                f"warm-up: {rows} rows did not fit in {OOM_LIMIT_MB} MiB -> {fits}" for rows, fits in warm_up
            ]
            if not warm_up:
                check.failed(
                    f"no out-of-memory split with GPU_MEMORY_LIMIT_MB={OOM_LIMIT_MB} and {OOM_BATCH_ROWS}-row calls"
                    + (
                        ""
                        if "pinned to GPU" in server.log()
                        else ": the worker runs on the CPU, which has no such limit"
                    )
                )
                return
            one_row = self.images[:1].astype("<f4").tobytes()
            for _ in range(RETRY_LARGER_AFTER):  # calls that fit: the worker then tries twice the rows again
                _post(server.url, one_row, "application/octet-stream")
            fits = int(warm_up[-1][1])
            rows = self.images[np.arange(2 * fits) % len(self.images)]
            answers = np.asarray(_post(server.url, rows.astype("<f4").tobytes(), "application/octet-stream"))
            expected = self.reference[np.arange(2 * fits) % len(self.images)]
            in_request = split_lines(server.log())[len(warm_up) :]
            check.details += [f"request: {r} rows did not fit -> {f}" for r, f in in_request]
            differ = int((answers != expected).sum())
            if not in_request:
                check.failed(f"a {2 * fits}-row request after {RETRY_LARGER_AFTER} small ones was not split")
            elif differ:
                check.failed(f"after the split, {differ} of {len(answers)} answers differ from the CPU model")
            else:
                check.passed(
                    f"{OOM_LIMIT_MB} MiB: warm-up split {warm_up[0][0]} -> {fits} rows a call; a {2 * fits}-row "
                    f"request ran out, was split to {in_request[-1][1]} and retried, all answers exact "
                    "(the single-row 503 is not reachable with this model: see details)"
                )
            check.details.append(
                "a single row that cannot fit (503) is not reachable with this model (4.8 KB a row); "
                "tests/unit/test_out_of_memory.py covers it on the CPU"
            )
        finally:
            server.stop()

    def check_hidden_gpu(self, check: Check) -> None:
        server = self.start("hidden-gpu", 1, REQUIRE_GPU="1", CUDA_VISIBLE_DEVICES="")
        try:
            try:
                code = server.process.wait(min(180.0, max(10.0, self.remaining())))
            except subprocess.TimeoutExpired:
                check.failed("the server still runs 180 s after start with REQUIRE_GPU=1 and no GPU visible")
                return
            lines = [line for line in server.log().splitlines() if NO_GPU_LINE in line]
            check.details += lines[:2]
            if code == 0 or not lines:
                check.failed(f"exit code {code}; {len(lines)} line(s) naming the cause: {server.tail()}")
            else:
                check.passed(f"start-up stopped (exit code {code}): {lines[0].strip()[-160:]}")
        finally:
            server.stop()

    def bench(self, server: Server, workers: int, seconds: float, nvml: Nvml) -> None:
        for body_kind, rows, concurrency in BENCH_CELLS:
            if self.remaining() < seconds + 5:
                print(f"  bench: out of time, {body_kind} rows={rows} c={concurrency} skipped", flush=True)
                continue
            batch = self.images[np.arange(rows) % len(self.images)]
            body = (
                json.dumps({"data": batch.tolist()}).encode() if body_kind == "json" else batch.astype("<f4").tobytes()
            )
            loadgen.run(server.url, body, CONTENT_TYPES[body_kind], concurrency, 0.5)  # warm
            with nvml.sampling() as gpu_load:
                result = loadgen.run(server.url, body, CONTENT_TYPES[body_kind], concurrency, seconds)
            row = {
                "workers": workers,
                "body": body_kind,
                "rows": rows,
                "concurrency": concurrency,
                "req_s": round(result.rps, 1),
                "rows_s": round(result.rps * rows, 1),
                "p50_ms": round(result.p50_ms, 2),
                "p99_ms": round(result.p99_ms, 2),
                "errors": result.errors,
                "shed_503": result.shed,
                **gpu_load,
            }
            self.bench_rows.append(row)
            print(
                f"  bench workers={workers} {body_kind:4} rows={rows:<4} c={concurrency:<2} {result.rps:8.1f} req/s "
                f"{result.rps * rows:10.0f} rows/s p50 {result.p50_ms:7.2f} ms p99 {result.p99_ms:7.2f} ms "
                f"errors {result.errors} shed {result.shed} GPU util {gpu_load.get('gpu_util_mean', '-')}%",
                flush=True,
            )


# -- the run -------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "tf-dnn-mnist" / "1")
    parser.add_argument("--data-dir", type=Path, default=idx.DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated, of: {', '.join(CHECKS)}")
    parser.add_argument(
        "--workers", type=int, help="the several workers of placement, accuracy and bench; default: as make serve sizes"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one benchmark cell")
    parser.add_argument("--budget-s", type=float, default=280.0, help="checks not started by then are skipped")
    parser.add_argument("--report", default="gpu", help="the report's file name: <report>-<gpu name>.md and .json")
    parser.add_argument("--allow-cpu", action="store_true", help="no REQUIRE_GPU: try the program on a CPU")
    args = parser.parse_args(argv)
    args.workers = args.workers or max(2, default_size(usable_cpus(), memory_limit()).workers)
    args.model_dir, args.data_dir = args.model_dir.resolve(), args.data_dir.resolve()
    if not (args.model_dir / "model").is_dir():
        parser.error(f"no model at {args.model_dir} (a folder holding model/): run make model, or pass --model-dir")
    try:
        idx.find_split(args.data_dir, "t10k", "images")
    except FileNotFoundError as err:
        parser.error(f"{err}: pass --data-dir, the folder of Fashion-MNIST's t10k files")
    wanted = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(CHECKS))
    if unknown:
        parser.error(f"unknown check(s) {unknown}; choose from {', '.join(CHECKS)}")

    started = time.monotonic()
    checker = Checker(args)
    print(f"gpu-check: {checker.gpu['summary']}", flush=True)
    checks = {name: Check(name) for name in CHECKS if name in wanted}
    nvml = Nvml()

    def run(name: str, body) -> None:
        if name not in checks:
            return
        check = checks[name]
        if checker.remaining() < 10:
            check.summary = "not run: out of time"
        else:
            try:
                body(check)
            except Exception as err:  # a check's failure is its result; the next check still runs
                check.failed(f"{type(err).__name__}: {err}")
                check.details.append(traceback.format_exc(limit=3))
        print(f"{_verdict(check):4} {name}: {check.summary}", flush=True)
        for line in check.details[:12]:
            print(f"       {line}", flush=True)

    # SIGTERM (a timeout, a cancelled job) unwinds like Ctrl-C, so that the finally below stops every server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run_checks(checker, checks, args, nvml, run)
    finally:
        for server in list(Server.running):
            server.stop()
        nvml.close()
        checker.cleanup(keep_logs=any(c.ok is False for c in checks.values()))

    report = write_report(checker, checks, args, time.monotonic() - started)
    print(f"gpu-check: wrote {report}")
    failed = [c.name for c in checks.values() if c.ok is not True]
    print(
        f"gpu-check: {len(checks) - len(failed)} of {len(checks)} passed"
        + (f"; not passed: {failed}" if failed else "")
    )
    return 1 if failed else 0


def run_checks(checker: Checker, checks: dict[str, Check], args: argparse.Namespace, nvml: Nvml, run) -> None:
    # The several-workers server first: its start-up overlaps the CPU reference.
    several: Server | None = None
    if {"placement", "accuracy", "bench"} & set(checks):
        several = checker.start(f"workers-{args.workers}-main", args.workers)
    try:
        checker.compute_reference()
        print(f"reference: {len(checker.reference)} t10k class ids from the CPU model {checker.reference_info}")
    except Exception as err:
        print(f"FAIL reference: {err}", flush=True)
    if several:
        try:
            several.wait_ready(args.workers, min(300.0, checker.remaining()))
        except RuntimeError as err:
            for name in ("placement", "accuracy", "bench"):
                if name in checks:
                    checks[name].failed(f"the {args.workers}-worker server did not start: {err}")
                    print(f"FAIL {name}: {checks[name].summary}", flush=True)
        else:
            run("placement", lambda c: checker.check_placement(c, several, args.workers))
            run("accuracy", lambda c: checker.check_accuracy(c, several))
            if "bench" in checks:
                try:
                    checker.bench(several, args.workers, args.seconds, nvml)
                except Exception as err:  # its verdict; the checks after it still run
                    checks["bench"].failed(f"{args.workers} workers: {type(err).__name__}: {err}")
                    print(f"FAIL bench: {checks['bench'].summary}", flush=True)
        finally:
            several.stop()
    if "bench" in checks and checks["bench"].ok is not False:
        run("bench", lambda c: bench_one_worker(checker, c, args, nvml))
    # Independent short checks, side by side (each is its own server), unless the GPU has little room.
    side_by_side = 4 if nvml.free_mib() is None or nvml.free_mib() > 8192 else 1
    with concurrent.futures.ThreadPoolExecutor(side_by_side) as pool:
        jobs = {
            "workers-2": lambda c: checker.check_workers(c, 2),
            "workers-4": lambda c: checker.check_workers(c, 4),
            "oom": checker.check_oom,
            "hidden-gpu": checker.check_hidden_gpu,
        }
        list(pool.map(lambda item: run(*item), jobs.items()))


def bench_one_worker(checker: Checker, check: Check, args: argparse.Namespace, nvml: Nvml) -> None:
    server = checker.start("workers-1-bench", 1)
    try:
        server.wait_ready(1, min(240.0, checker.remaining()))
        checker.bench(server, 1, args.seconds, nvml)
    finally:
        server.stop()
    rows = checker.bench_rows
    errors = sum(row["errors"] for row in rows)
    missing = 2 * len(BENCH_CELLS) - len(rows)
    if not rows:
        check.failed("no benchmark cell ran")
    elif errors:
        check.failed(f"{errors} error(s) over {len(rows)} cells")
    elif missing:
        check.failed(f"{missing} of {2 * len(BENCH_CELLS)} cells not run (out of time: raise --budget-s)")
    elif checker.gpu["names"] and not any("gpu_util_mean" in row for row in rows):
        check.failed(f"{len(rows)} cells, but no GPU utilisation read: NVML (nvidia-ml-py) unavailable")
    else:
        check.passed(
            f"{len(rows)} cells ({args.workers} workers and 1), no errors"
            + ("" if checker.gpu["names"] else "; no GPU, so no utilisation")
        )


# -- NVML ----------------------------------------------------------------------------------------------------------


class Nvml:
    """GPU utilisation and memory through NVML (nvidia-ml-py), sampled every 100 ms; empty where absent."""

    def __init__(self):
        self.handles: list = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # no library, no driver, no GPU: no samples
            self.nvml = None

    def sampling(self) -> _Sampling:
        return _Sampling(self)

    def free_mib(self) -> float | None:
        """The least free memory of the GPUs, in MiB; None where NVML cannot tell."""
        if not self.handles:
            return None
        return min(self.nvml.nvmlDeviceGetMemoryInfo(h).free for h in self.handles) / 2**20

    def sample(self) -> tuple[float, float] | None:
        if not self.handles:
            return None
        util = [self.nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self.handles]
        memory = [self.nvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles]
        return sum(util) / len(util), sum(memory) / 2**20

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml.nvmlShutdown()


class _Sampling:
    def __init__(self, nvml: Nvml):
        self.nvml = nvml
        self.samples: list[tuple[float, float]] = []
        self.result: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            sample = self.nvml.sample()
            if sample:
                self.samples.append(sample)

    def __enter__(self) -> dict:
        self._thread.start()
        return self.result

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        if self.samples:
            util = [s[0] for s in self.samples]
            self.result.update(
                gpu_util_mean=round(sum(util) / len(util), 1),
                gpu_util_max=round(max(util), 1),
                gpu_memory_mib=round(max(s[1] for s in self.samples)),
            )


def gpu_description() -> dict:
    """The GPUs' names, the driver and its CUDA version, from NVML, else nvidia-smi; 'no GPU' and why otherwise."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            names = [_text(pynvml.nvmlDeviceGetName(h)) for h in handles]
            memory = [pynvml.nvmlDeviceGetMemoryInfo(h).total >> 20 for h in handles]
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}"
        finally:
            pynvml.nvmlShutdown()
    except ImportError:
        return _from_nvidia_smi("nvidia-ml-py (pynvml) is not installed")
    except Exception as err:
        return _from_nvidia_smi(f"NVML: {err}")
    summary = ", ".join(f"{n} ({m} MiB)" for n, m in zip(names, memory, strict=True)) or "no GPU"
    return {
        "names": names,
        "memory_mib": memory,
        "driver": driver,
        "cuda": cuda_text,
        "summary": f"{summary}; driver {driver}, CUDA {cuda_text}",
    }


def _from_nvidia_smi(why: str) -> dict:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return {"names": [], "summary": f"no GPU found ({why}; nvidia-smi: {err})"}
    rows = [[part.strip() for part in line.split(",")] for line in out.strip().splitlines()]
    names = [r[0] for r in rows]
    return {
        "names": names,
        "memory_mib": [int(r[1]) for r in rows],
        "driver": rows[0][2] if rows else "",
        "cuda": "",
        "summary": ", ".join(names) + f" (from nvidia-smi; {why})",
    }


# -- the report ----------------------------------------------------------------------------------------------------


def write_report(checker: Checker, checks: dict[str, Check], args: argparse.Namespace, elapsed: float) -> Path:
    gpu = checker.gpu
    slug = re.sub(r"[^a-z0-9]+", "-", (gpu["names"][0] if gpu["names"] else "none").lower()).strip("-")
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {
        "gpu": gpu,
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "tensorflow": checker.reference_info,
        "front_door": _has_nginx(),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(elapsed, 1),
    }
    data = {
        "machine": machine,
        "checks": [asdict(c) for c in checks.values()],
        "device_lines": checker.device_lines,
        "log_excerpts": checker.log_excerpts,
        "bench": checker.bench_rows,
    }
    (args.out / f"{args.report}-{slug}.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [
        f"# {'make gpu-check' if set(checks) == set(CHECKS) else 'GPU checks: ' + ', '.join(checks)} "
        f"on {gpu['summary']}",
        "",
        f"{machine['date']}; {machine['cpus']} CPU cores, Python {machine['python']}, TensorFlow "
        f"{checker.reference_info.get('tensorflow', '?')} (built for {checker.reference_info.get('build', {})}); "
        + ("through the nginx front door; " if machine["front_door"] else "azmlinfsrv directly (no nginx here); ")
        + f"the whole run took {elapsed:.0f} s (`python bench/gpu_check.py`).",
        "",
        "| check | result | what was seen |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {_verdict(c)} | {c.summary.replace('|', '/')} |" for c in checks.values()]
    lines += ["", "## TensorFlow's devices, as logged", "", "```"]
    lines += sorted(set(checker.device_lines))[:40] or ["(none)"]
    lines += ["```", "", "## From the servers' logs", "", "```"]
    lines += checker.log_excerpts[:60] or ["(none)"]
    lines += ["```", "", "## Details", ""]
    for c in checks.values():
        lines += [f"- **{c.name}**"] + [f"  - {d.strip().splitlines()[-1] if d.strip() else d}" for d in c.details[:16]]
    if checker.bench_rows:
        lines += [
            "",
            f"## Benchmark ({args.seconds:g} s a cell; load from bench/loadgen.py, pure Python, on the same machine)",
            "",
            "| workers | body | rows | conc. | req/s | rows/s | p50 ms | p99 ms | errors | 503 "
            "| GPU util mean / max % | GPU MiB |",
            "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in checker.bench_rows:
            lines.append(
                f"| {r['workers']} | {r['body']} | {r['rows']} | {r['concurrency']} | {r['req_s']:.0f} "
                f"| {r['rows_s']:.0f} | "
                f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['shed_503']} | "
                f"{r.get('gpu_util_mean', '-')} / {r.get('gpu_util_max', '-')} | {r.get('gpu_memory_mib', '-')} |"
            )
    path = args.out / f"{args.report}-{slug}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- helpers -------------------------------------------------------------------------------------------------------


_EXCERPT = re.compile(
    r"Booting worker|pinned to GPU|model ready on|out of device memory|ran out of memory|start-up failed|cuInit"
    r"|mapped to multiple|unable to allocate"
)


def _log_excerpts(work: Path) -> list[str]:
    """The lines of each server's log that tell what happened on the device, each with the server's name."""
    lines = []
    for log in sorted(work.glob("server-*.log")):
        name = log.stem.removeprefix("server-")
        text = log.read_text(errors="replace")
        lines += [f"{name}: {line.strip()[:300]}" for line in text.splitlines() if _EXCERPT.search(line)]
    return lines


def split_lines(log: str) -> list[tuple[str, str]]:
    """(rows that did not fit, rows a call from then on) for each out-of-memory split a worker logged."""
    return re.findall(r"out of device memory scoring (\d+) rows .*?at most (\d+) rows per session call", log)


def _verdict(check: Check) -> str:
    return {True: "PASS", False: "FAIL", None: "SKIP"}[check.ok]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _has_nginx() -> bool:
    return any((Path(d) / "nginx").is_file() for d in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        _post(url, json.dumps({"data": [[0.0] * 784]}).encode(), "application/json", timeout=5)
        return True
    except (OSError, RuntimeError):
        return False


def _post(url: str, body: bytes, content_type: str, timeout: float = 120) -> list:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"HTTP {err.code}: {err.read()[:300]!r}") from None


if __name__ == "__main__":
    sys.exit(main())

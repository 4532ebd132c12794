"""Model versions through the front door: a folder of <version>/ subfolders serves the highest, and serve.py swaps
the workers onto a new one, blue/green, without a failed request.

- A new version folder is found by polling (MODEL_POLL_S) and swapped in under load: every request answered 200,
  the answers switch from version 1's to version 2's, and the old gunicorn master exits (its memory with it).
- SIGHUP to serve.py looks at once (here with polling off).
- A version that cannot load leaves the one served before serving, the server alive and ready, and one log line
  that says why.
- SIGTERM during a swap stops both generations and exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

from tests import graphs
from tests.support import SETTLE_S, FrontDoorProcess, data_body, wait_for, worker_pids

ROWS = 16  # rows per request, each answered differently by the two versions
CLIENTS = 6
LOAD_S = 240  # the longest the load runs: a bound, never a wait (each test stops it once it has seen what it needs)
SWAP_S = 180  # a new version's workers load TensorFlow and the model on a loaded 2-core machine
SEED_2 = 7  # version 2: the how-to's network with these initial weights, untrained
ENV = {"WORKER_COUNT": "2", "GUNICORN_CMD_ARGS": "--threads 4"}


@dataclass
class Versions:
    """A versioned model folder, <root>/1 the trained how-to model, and what each version answers for `rows`."""

    root: Path
    rows: np.ndarray
    answers: dict[str, list[int]] = field(default_factory=dict)

    def add(self, version: str, seed: int) -> None:
        """Build the how-to's network with `seed`'s initial weights as <version>/, atomically: made under a name that
        is no version, then renamed (as docs/operations.md tells operators to)."""
        staging = self.root / f".{version}.partial"
        graphs.howto(staging, seed=seed)
        staging.rename(self.root / version)

    def add_broken(self, version: str) -> None:
        """A copy of version 1 whose meta-graph is not one."""
        staging = self.root / f".{version}.partial"
        shutil.copytree(self.root / "1", staging)
        (staging / "model" / "mnist-tf.model.meta").write_bytes(b"not a meta graph")
        staging.rename(self.root / version)

    def which(self, answer: list[int]) -> str | None:
        """The version that gives `answer`; None for any other answer."""
        return next((version for version, expected in self.answers.items() if answer == expected), None)


@pytest.fixture
def versions(model_dir, t10k, t10k_class_ids, tmp_path) -> Versions:
    """Version 1 (the trained model, linked in as a mounted version is) and the rows that tell it from version 2."""
    from tfscoring.config import Settings
    from tfscoring.tf.model import GraphModel

    root = tmp_path / "tf-dnn-mnist"
    root.mkdir()
    (root / "1").symlink_to(model_dir.resolve())
    built = tmp_path / "reference-2"
    graphs.howto(built, seed=SEED_2)  # version 2's answers, from TensorFlow in this process
    reference = GraphModel.load(Settings(azureml_model_dir=built))
    try:
        ids_2 = reference.predict((t10k[0][:600],))[0].argmax(axis=1)
    finally:
        reference.close()
    differ = np.flatnonzero(ids_2 != t10k_class_ids)[:ROWS]
    assert len(differ) == ROWS  # untrained weights agree with the trained model on about a tenth of the rows
    made = Versions(root, t10k[0][:600][differ])
    made.answers = {"1": t10k_class_ids[differ].tolist(), "2": ids_2[differ].tolist()}
    return made


@dataclass
class Answer:
    at: float
    status: int
    version: str | None
    text: str


class Load:
    """CLIENTS threads posting the same request in a loop through the front door, each on its own kept-alive
    connection, until stopped (or LOAD_S has passed)."""

    def __init__(self, server: FrontDoorProcess, versions: Versions):
        self._url, self._versions, self._body = server.score_url, versions, data_body(versions.rows)
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _client(self) -> None:
        deadline = time.monotonic() + LOAD_S
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = session.post(
                        self._url, data=self._body, headers={"Content-Type": "application/json"}, timeout=60
                    )
                    status, text = response.status_code, response.text
                except requests.RequestException as err:  # a dropped connection counts as a failure
                    status, text = 0, repr(err)
                version = self._versions.which(json.loads(text)) if status == 200 else None
                with self._lock:
                    self.answers.append(Answer(time.monotonic(), status, version, text[:300]))

    def since(self, at: float) -> list[Answer]:
        with self._lock:
            return [answer for answer in self.answers if answer.at >= at]

    def wait_for_version(self, version: str, after: float, timeout: float) -> float:
        """When the first answer of `version` came after `after`."""
        found = wait_for(
            lambda: next((a for a in self.since(after) if a.version == version), None),
            timeout,
            f"an answer of version {version}",
        )
        return found.at


def rss_mib(pids: set[int]) -> float:
    """The resident memory of `pids` together (VmRSS), in MiB."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total / 1024


def masters(server: FrontDoorProcess) -> set[int]:
    """The gunicorn masters serve.py runs: one, or two while a swap runs."""
    return {pid for pid in worker_pids(server.process.pid) if "azmlinfsrv" in _command_line(pid)}


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start(versions: Versions, tmp_path: Path, **env: str) -> FrontDoorProcess:
    return FrontDoorProcess(versions.root, tmp_path, {**ENV, **env}).wait_healthy()


def test_a_new_version_folder_is_swapped_in_under_load_without_a_failed_request(versions, tmp_path):
    server = start(versions, tmp_path, MODEL_POLL_S="1")
    try:
        old_master = server.gunicorn_pid()
        before_mib = rss_mib(worker_pids(old_master))
        with Load(server, versions) as load:
            began = time.monotonic()
            load.wait_for_version("1", began, SETTLE_S)
            versions.add("2", SEED_2)
            created = time.monotonic()
            first_2 = load.wait_for_version("2", created, SWAP_S)
            wait_for(lambda: old_master not in masters(server), SETTLE_S + 40, "the old gunicorn master exits")
            old_gone = time.monotonic()
            load.wait_for_version("2", old_gone, SETTLE_S)  # and answers go on after it
        answers = load.since(began)
        after_mib = rss_mib(worker_pids(server.gunicorn_pid()))
        failed = [a for a in answers if a.status != 200 or a.version is None]
        assert failed == [], failed[:5]
        assert {a.version for a in answers if a.at < created} == {"1"}
        assert {a.version for a in answers if a.at > old_gone} == {"2"}
        assert server.process.poll() is None and server.probe("ready") == 200
        log = server.log()
        assert "version 2 found under" in log and "(poll)" in log
        # Each generation runs on its version's folder, which azmlinfsrv reads as one registered model.
        assert "Error while fetching model IDs" not in log
        during = [a for a in answers if created <= a.at <= old_gone]
        print(f"\nswap under load: {len(answers)} requests ({len(during)} between the new folder and the old master's "
              f"exit), {len(failed)} failed; version 2 answered {first_2 - created:.1f} s after its folder appeared; "
              f"workers' RSS {before_mib:.0f} MiB before, {after_mib:.0f} MiB after")  # fmt: skip
    finally:
        server.stop()


def test_sighup_looks_for_a_new_version_at_once(versions, tmp_path):
    server = start(versions, tmp_path, MODEL_POLL_S="0")
    try:
        server.wait_for_log("a newer version is looked for on SIGHUP (MODEL_POLL_S=0)")
        versions.add("2", SEED_2)
        with Load(server, versions) as load:
            began = time.monotonic()
            load.wait_for_version("1", began, SETTLE_S)
            os.kill(server.process.pid, signal.SIGHUP)
            load.wait_for_version("2", time.monotonic(), SWAP_S)
        answers = load.since(began)
        assert [a for a in answers if a.status != 200 or a.version is None] == []
        assert "version 2 found under" in server.log() and "(SIGHUP)" in server.log()
        assert server.process.poll() is None
    finally:
        server.stop()


def test_a_version_that_cannot_load_leaves_the_served_one_serving(versions, tmp_path):
    server = start(versions, tmp_path, MODEL_POLL_S="1")
    try:
        master = server.gunicorn_pid()
        with Load(server, versions) as load:
            began = time.monotonic()
            load.wait_for_version("1", began, SETTLE_S)
            versions.add_broken("2")
            line = server.wait_for_log("version 2 under", timeout=SWAP_S)
            failed = time.monotonic()
            load.wait_for_version("1", failed, SETTLE_S)  # still answering, after the failure
        answers = load.since(began)
        assert [a for a in answers if a.status != 200 or a.version != "1"] == []
        why = [row for row in line.splitlines() if "version 2 under" in row]
        assert len(why) == 1 and "is not served" in why[0] and "start-up failed" in why[0], why
        assert "version 1 serves on" in why[0]
        assert server.process.poll() is None and server.probe("ready") == 200
        assert masters(server) == {master}  # the broken version's azmlinfsrv is gone
    finally:
        server.stop()


def test_sigterm_during_a_swap_stops_both_generations(versions, tmp_path):
    server = start(versions, tmp_path, MODEL_POLL_S="0")
    try:
        old_master = server.gunicorn_pid()
        versions.add("2", SEED_2)
        os.kill(server.process.pid, signal.SIGHUP)
        server.wait_for_log("starting its workers beside")
        both = wait_for(lambda: len(found := masters(server)) == 2 and found, SETTLE_S, "the new version's master")
        assert old_master in both
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(DRAIN_WAIT_S) == 0
        assert not [pid for pid in both if Path(f"/proc/{pid}").exists()]
    finally:
        server.stop()


DRAIN_WAIT_S = 120  # nginx, then both generations, each drained within 35 s


def test_a_served_version_whose_folder_went_is_replaced_by_the_highest_left_when_its_workers_die(versions, tmp_path):
    # Polling off: the folder's removal is not seen by a look.  A worker dies; gunicorn's replacement cannot load the
    # version, exits 3 and gunicorn halts: serve.py starts version 1 in its place instead of stopping.
    versions.add("2", SEED_2)
    server = start(versions, tmp_path, MODEL_POLL_S="0")
    try:
        halted = server.gunicorn_pid()
        (versions.root / "2").rename(tmp_path / "version-2-moved-away")
        for pid in worker_pids(halted):
            os.kill(pid, signal.SIGKILL)
        server.wait_for_log("starting version 1 of", timeout=SETTLE_S + 30)
        with Load(server, versions) as load:
            load.wait_for_version("1", time.monotonic(), SWAP_S)
        assert server.process.poll() is None and server.probe("ready") == 200
        assert halted not in masters(server)
        assert "stopping the server" not in server.log()
    finally:
        server.stop()


def test_a_killed_master_is_replaced_by_the_version_it_served_not_one_that_failed(versions, tmp_path):
    server = start(versions, tmp_path, MODEL_POLL_S="1")
    try:
        versions.add_broken("2")
        server.wait_for_log("version 2 under", timeout=SWAP_S)  # failed, version 1 serves on
        killed = server.gunicorn_pid()
        os.kill(killed, signal.SIGKILL)
        server.wait_for_log("starting version 1 of", timeout=SETTLE_S + 30)
        with Load(server, versions) as load:
            load.wait_for_version("1", time.monotonic(), SWAP_S)
        assert server.process.poll() is None and server.probe("ready") == 200
        assert "starting version 2 of" not in server.log()
    finally:
        server.stop()

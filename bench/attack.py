"""Normal clients while attackers hold connections, a frozen worker and a cut-short body, with and without nginx.

    python -m bench.attack [--front-door 1|0|both] [--out bench/results/attack.json]

A measurement, not a test: it asserts nothing and writes what it saw.  For each mode (FRONT_DOOR=1: nginx in
front of azmlinfsrv; FRONT_DOOR=0: azmlinfsrv on the port itself) the server is started as `make serve`
starts it (server/serve.py with its own sizing: no WORKER_COUNT or GUNICORN_CMD_ARGS given), and then:

1. baseline: NORMAL 1-row JSON requests of t10k images from CLIENTS concurrent clients, each on a new
   connection with TIMEOUT_S in all; answered (200 within TIMEOUT_S), correct (the class the same image got
   in one reference request made first), p50/p99 latency of the answered ones;
2. the same requests while an attack is held (each alone, then all three together): slow headers (one
   byte a second), slow bodies (full headers, Content-Length 100000, ten bytes a second) and silent
   connections (connect, send nothing).  An attack is held at least HOLD_S, past nginx's 10 s
   client_header_timeout, and what each attacker got is noted: held open, closed or reset by the server (and
   when), or an answer.  A phase stops sending new requests after PHASE_CAP_S (counted as not sent), so that
   a server that answers nothing cannot stretch the run; afterwards the time until a request is answered
   again is measured (recovered_s);
3. a cut-short body: two raw float32 rows announced, one sent, the write side shut; the status line, or
   "no answer";
4. a frozen worker: SIGSTOP one gunicorn worker while FROZEN_CLIENTS clients send one request each per
   FROZEN_EVERY_S; when its pid is gone, when a replacement is listed, when readiness (front door) fails
   and is back to 200, and the statuses the requests got meanwhile.  Without the front door only gunicorn's
   own worker timeout (300 s) applies: the wait is capped at DIRECT_FROZEN_CAP_S, then the worker gets SIGCONT.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import requests

from bench.servers import REPO, FrontDoorProcess, cut_short_request, data_body, send_raw, wait_for_health, worker_pids
from model import idx

NORMAL = 80
CLIENTS = 8
TIMEOUT_S = 20.0
PHASE_CAP_S = 60.0
HOLD_S = 15.0
ATTACKS = {
    "slow_headers": {"slow_headers": 64},
    "slow_bodies": {"slow_bodies": 64},
    "silent": {"silent": 2000},
    "all_three": {"slow_headers": 64, "slow_bodies": 64, "silent": 2000},
}
FROZEN_CLIENTS = 4
FROZEN_EVERY_S = 0.1
FRONT_DOOR_FROZEN_CAP_S = 120.0  # a replacement loads TensorFlow and the model: seconds on a busy machine
DIRECT_FROZEN_CAP_S = 60.0
# About 300 bytes at one a second: the headers never complete while an attack is held.
SLOW_HEADER = (
    b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: "
    + b"a" * 200
    + b"\r\nContent-Length: 100000\r\n\r\n"
)
BODY_HEAD = (
    b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
)


# --- normal clients -------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: str  # "200", "502", ..., "timeout", or the error (e.g. "ConnectionResetError")
    seconds: float
    payload: bytes = b""

    def first_class(self) -> int | None:
        return json.loads(self.payload)[0] if self.status == "200" else None


def score(port: int, body: bytes, timeout: float = TIMEOUT_S) -> Answer:
    """POST body to /score on a new connection; "timeout" unless answered within `timeout` seconds in all."""
    start = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.connect()
        connection.sock.settimeout(max(0.01, timeout - (time.monotonic() - start)))
        connection.request("POST", "/score", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        status, payload = str(response.status), response.read()
    except TimeoutError:
        status, payload = "timeout", b""
    except (OSError, http.client.HTTPException) as err:
        status, payload = type(err).__name__, b""
    finally:
        connection.close()
    seconds = time.monotonic() - start
    return Answer("timeout" if seconds > timeout else status, seconds, payload)


@dataclass
class Load:
    sent: int
    answered: int  # 200 within TIMEOUT_S
    correct: int
    statuses: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    seconds: float
    not_sent: int = 0  # left when the phase reached PHASE_CAP_S


def normal_load(port: int, bodies: list[bytes], expected: list[int]) -> Load:
    start = time.monotonic()

    def one(i: int) -> Answer | None:
        return score(port, bodies[i]) if time.monotonic() - start < PHASE_CAP_S else None

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(one, range(len(bodies))))
    sent = [a for a in answers if a is not None]
    answered = [a.seconds * 1000 for a in sent if a.status == "200"]
    return Load(
        sent=len(sent),
        answered=len(answered),
        correct=sum(a is not None and a.first_class() == e for a, e in zip(answers, expected, strict=True)),
        statuses=dict(Counter(a.status for a in sent)),
        p50_ms=round(float(np.percentile(answered, 50)), 1) if answered else None,
        p99_ms=round(float(np.percentile(answered, 99)), 1) if answered else None,
        seconds=round(time.monotonic() - start, 1),
        not_sent=len(answers) - len(sent),
    )


def recovered_s(port: int, body: bytes, limit: float = 60.0) -> float | None:
    """Seconds until a request is answered within 5 s again (None: not within `limit`)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if score(port, body, timeout=5).status == "200":
            return round(time.monotonic() - start, 1)
        time.sleep(0.5)
    return None


# --- attackers ------------------------------------------------------------------------------------------------


@dataclass
class Attacker:
    kind: str
    sock: socket.socket | None
    opened: float = field(default_factory=time.monotonic)
    fate: str = "held open"  # or closed / reset by the server, an answer, a failed connect or send
    ended_after_s: float | None = None


class Attack:
    """Attack connections on a thread of their own: a drip each second, and a note when the server ends one."""

    def __init__(self, port: int, counts: dict[str, int]):
        self._selector = selectors.DefaultSelector()
        self.attackers = [self._open(port, kind) for kind, count in counts.items() for _ in range(count)]
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self, port: int, kind: str) -> Attacker:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if kind == "slow_bodies":
                sock.sendall(BODY_HEAD)
        except OSError as err:
            return Attacker(kind, None, fate=f"connect failed: {type(err).__name__}")
        attacker = Attacker(kind, sock)
        self._selector.register(sock, selectors.EVENT_READ, attacker)
        return attacker

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            next_drip = time.monotonic() + 1.0
            while (left := next_drip - time.monotonic()) > 0 and not self._stop.is_set():
                for key, _ in self._selector.select(min(left, 0.2)):
                    self._ended(key.data)
            for attacker in self.attackers:
                drip = {"slow_headers": SLOW_HEADER[tick : tick + 1], "slow_bodies": b"[" * 10}.get(attacker.kind)
                if drip and attacker.sock and attacker.fate == "held open":
                    try:
                        attacker.sock.sendall(drip)
                    except OSError as err:
                        self._ended(attacker, f"send failed: {type(err).__name__}")
            tick += 1

    def _ended(self, attacker: Attacker, fate: str | None = None) -> None:
        if fate is None:
            try:
                data = attacker.sock.recv(256)
            except OSError as err:
                fate = "reset by the server" if isinstance(err, ConnectionResetError) else type(err).__name__
            else:
                fate = "answered " + data.split(b"\r\n")[0].decode(errors="replace") if data else "closed by the server"
        attacker.fate, attacker.ended_after_s = fate, round(time.monotonic() - attacker.opened, 1)
        self._selector.unregister(attacker.sock)

    def stop(self, hold_s: float) -> dict[str, dict]:
        """Hold the attack until `hold_s` after it began, end it, and say what each kind of attacker got."""
        time.sleep(max(0.0, self.started + hold_s - time.monotonic()))
        self._stop.set()
        self._thread.join()
        held_s = round(time.monotonic() - self.started, 1)
        for attacker in self.attackers:
            if attacker.sock:
                attacker.sock.close()
        self._selector.close()
        fates = {}
        for kind in dict.fromkeys(a.kind for a in self.attackers):
            group = [a for a in self.attackers if a.kind == kind]
            ended = sorted(a.ended_after_s for a in group if a.ended_after_s is not None)
            fates[kind] = {
                "connections": len(group),
                "held_s": held_s,
                "ended_by_server": len(ended),
                "ended_after_s": {"first": ended[0], "median": statistics.median(ended), "last": ended[-1]}
                if ended
                else None,
                "fates": dict(Counter(a.fate for a in group)),
            }
        return fates


def under_attack(port: int, bodies: list[bytes], expected: list[int], counts: dict[str, int]) -> dict:
    attack = Attack(port, counts)
    load = normal_load(port, bodies, expected)
    attackers = attack.stop(HOLD_S)
    return {"normal": asdict(load), "attackers": attackers, "recovered_s": recovered_s(port, bodies[0])}


# --- a cut-short body and a frozen worker ---------------------------------------------------------------------


def cut_short(port: int) -> str:
    """Announce two raw float32 rows, send one, shut the write side: the status line, or "no answer"."""
    try:
        answer = send_raw(port, cut_short_request(), timeout=30)
    except TimeoutError:
        return "no answer within 30 s"
    except OSError as err:
        return f"no answer ({type(err).__name__})"
    return answer.split(b"\r\n")[0].decode(errors="replace") if answer else "no answer (closed)"


@dataclass
class Frozen:
    pid: int
    cap_s: float
    gone_s: float | None = None  # SIGSTOP to the pid no longer among the master's children
    replacement_s: float | None = None  # to a new worker listed
    ready_lost_s: float | None = None  # to readiness first not 200 (front door)
    ready_back_s: float | None = None  # to readiness 200 again, with the replacement listed (front door)
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    slowest_ms: float | None = None
    verdict: str = ""


def frozen_worker(server: FrontDoorProcess, master: int, front_door: bool, bodies: list[bytes]) -> Frozen:
    before = worker_pids(master)
    frozen = Frozen(min(before), FRONT_DOOR_FROZEN_CAP_S if front_door else DIRECT_FROZEN_CAP_S)
    stop, answers = threading.Event(), []

    def client(n: int) -> None:
        while not stop.is_set():
            began = time.monotonic()
            answers.append(score(server.port, bodies[n % len(bodies)]))
            n += FROZEN_CLIENTS
            stop.wait(max(0.0, FROZEN_EVERY_S - (time.monotonic() - began)))

    os.kill(frozen.pid, signal.SIGSTOP)
    start = time.monotonic()
    clients = [threading.Thread(target=client, args=(n,)) for n in range(FROZEN_CLIENTS)]
    for thread in clients:
        thread.start()
    while (elapsed := round(time.monotonic() - start, 1)) < frozen.cap_s:
        workers = worker_pids(master)
        if frozen.gone_s is None and frozen.pid not in workers:
            frozen.gone_s = elapsed
        if frozen.replacement_s is None and workers - before:
            frozen.replacement_s = elapsed
        if front_door:
            ready = _probe(server, "ready") == 200
            if not ready and frozen.ready_lost_s is None:
                frozen.ready_lost_s = elapsed
            if ready and frozen.replacement_s is not None:
                frozen.ready_back_s = elapsed
                break
        elif frozen.replacement_s is not None:
            break
        time.sleep(0.1)
    stop.set()
    for thread in clients:
        thread.join()
    if frozen.pid in worker_pids(master):
        os.kill(frozen.pid, signal.SIGCONT)
        frozen.verdict = f"not replaced within {frozen.cap_s:.0f} s (SIGCONT sent)"
    else:
        frozen.verdict = "killed and replaced"
    frozen.requests, frozen.statuses = len(answers), dict(Counter(a.status for a in answers))
    frozen.slowest_ms = round(max(a.seconds for a in answers) * 1000, 1) if answers else None
    return frozen


def _probe(server: FrontDoorProcess, name: str) -> int | None:
    try:
        return server.probe(name)
    except requests.RequestException:
        return None


# --- one mode, the table, the command -------------------------------------------------------------------------


def measure(front_door: bool, model_dir: Path, images: np.ndarray, log_dir: Path) -> dict:
    server = FrontDoorProcess(model_dir, log_dir, {"FRONT_DOOR": "1" if front_door else "0"})
    try:
        wait_for_health(server.url + ("/health/ready" if front_door else "/"), server.process, server.log, 300)
        master = server.gunicorn_pid() if front_door else server.process.pid  # FRONT_DOOR=0: serve.py execs it
        reference = score(server.port, data_body(images[:NORMAL]), timeout=60)
        if reference.status != "200":
            raise RuntimeError(f"the reference request got {reference.status}: {reference.payload[:300]!r}")
        expected = json.loads(reference.payload)
        bodies = [data_body(images[i : i + 1]) for i in range(NORMAL)]
        sizing = next((line for line in server.log().splitlines() if line.startswith("serve.py:")), "")
        result = {
            "server": sizing.partition(": ")[2],
            "baseline": {"normal": asdict(normal_load(server.port, bodies, expected))},
        }
        for name, counts in ATTACKS.items():
            print(f"  {name} ...", flush=True)
            result[name] = under_attack(server.port, bodies, expected, counts)
        result["cut_short"] = cut_short(server.port)
        print("  frozen worker ...", flush=True)
        result["frozen_worker"] = asdict(frozen_worker(server, master, front_door, bodies))
        return result
    finally:
        server.stop()


def table(results: dict[str, dict]) -> str:
    """Both modes side by side: the normal requests per phase, what the attackers got, the cut-short body and
    the frozen worker."""
    modes = list(results)
    rows = [("", modes), (f"normal requests: answered within {TIMEOUT_S:.0f} s / correct, latency", None)]
    for phase in ["baseline", *ATTACKS]:
        rows.append((phase, [_load_cell(results[m][phase]["normal"]) for m in modes]))
    rows.append(("attackers ended by the server (s after connecting)", None))
    for phase, counts in ATTACKS.items():
        for kind in counts:
            label = kind if len(counts) == 1 else f"all three: {kind}"
            rows.append((label, [_attackers_cell(results[m][phase]["attackers"][kind]) for m in modes]))
    rows.append(("cut-short body", [results[m]["cut_short"] for m in modes]))
    rows.append(("frozen worker (s after SIGSTOP)", None))
    for key in ["gone_s", "replacement_s", "ready_lost_s", "ready_back_s", "statuses", "slowest_ms", "verdict"]:
        rows.append((key, [str(results[m]["frozen_worker"][key]) for m in modes]))
    return "\n".join(
        (f"{label:24}" + "".join(f"{cell:54}" for cell in cells)).rstrip() if cells else label for label, cells in rows
    )


def _load_cell(load: dict) -> str:
    cell = f"{load['answered']}/{load['sent'] + load['not_sent']}, {load['correct']} correct"
    if load["answered"]:
        cell += f", p50 {load['p50_ms']} p99 {load['p99_ms']} ms"
    cell += "".join(f", {count} {status}" for status, count in load["statuses"].items() if status != "200")
    return cell + (f", {load['not_sent']} not sent" if load["not_sent"] else "")


def _attackers_cell(fate: dict) -> str:
    cell = f"{fate['ended_by_server']}/{fate['connections']}"
    if when := fate["ended_after_s"]:
        how = Counter({k: v for k, v in fate["fates"].items() if k != "held open"}).most_common(1)[0][0]
        cell += f" {how.removesuffix(' by the server')} at {when['first']}-{when['last']}"
    return cell + f" (held {fate['held_s']})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--front-door", choices=["1", "0", "both"], default="both")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "attack.json")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "tf-dnn-mnist" / "1")
    parser.add_argument("--data-dir", type=Path, default=idx.DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the attacks hold thousands of sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * 2000)), hard))
    images, _ = idx.load_split(args.data_dir, "t10k")
    log_dir = Path(tempfile.mkdtemp(prefix="tfscoring-attack-"))
    modes = {"1": [True], "0": [False], "both": [True, False]}[args.front_door]
    results = {}
    for front_door in modes:
        name = "front_door" if front_door else "direct"
        print(f"{name} (FRONT_DOOR={int(front_door)}) ...", flush=True)
        results[name] = measure(front_door, args.model_dir, images, log_dir)
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "modes": results}, indent=2) + "\n")
    print(f"written to {args.out}")
    shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

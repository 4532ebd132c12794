"""Aggregate py-spy raw (collapsed) stacks of one azmlinfsrv worker into the components of the request path.

    python bench/profile_stacks.py NAME=busy.raw[,gil.raw[,requests]] ...

Each sample (one thread's stack at one tick; "other" is mostly stacks py-spy --nonblocking read only
in part) goes to exactly one component: the frames are walked from the leaf towards the root and the
first frame that matches a rule below decides (so "flask/werkzeug" is
Flask's own code, not the score.run it calls).  Frames of the stdlib's
logging module are skipped over and the sample is counted as "logging (called from <component>)".
Samples whose leaf is a blocking call (the thread pool's
queue get, the main loop's epoll, a Condition/Event wait, sleep) are counted as waits, apart from the
busy work.  py-spy (without --idle) already drops threads the OS reports as sleeping; what remains at a
blocking call is a thread that was runnable there: just woken, or waiting for a CPU or the GIL.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

WAIT_LEAVES = [
    ("wait: pool thread idle (queue.get)", r"concurrent/futures/thread\.py:81\)"),
    ("wait: main loop epoll", r"^EpollSelector\.select"),
    ("wait: batcher Condition/Event", r"^(Condition\.wait|Event\.wait).*threading\.py"),
    ("wait: sleep (heartbeats)", r"workerstate\.py:65\)|time\.sleep"),
]

# (component, regex on a frame "func (file:line)"), first match from the leaf wins
RULES = [
    ("TF session run (native, GIL released)", r"_call_tf_sessionrun"),
    ("TF Python wrappers (session.run, feeds)", r"\(tensorflow/"),
    ("gthread: hand-back to main loop (defer pipe write)", r"PollableMethodQueue\.defer"),
    ("gunicorn heartbeat (WorkerTmp.notify utime)", r"WorkerTmp\.notify"),
    ("gunicorn socket send (sendall)", r"^write \(gunicorn/util\.py"),
    ("logging (gunicorn access log)", r"gunicorn/glogging\.py"),
    ("logging (request log)", r"tfscoring/observability/(requestlog|observer|record)\.py"),
    ("metrics (ours + prometheus_client)", r"tfscoring/observability/metrics\.py|prometheus_client/"),
    ("batcher (batching/)", r"tfscoring/batching/(batcher|calls)\.py"),
    ("decode (body -> arrays)", r"tfscoring/protocols/|tfscoring/http/body\.py|howto_score\.py:36\)"),
    ("responses (encode answer)", r"tfscoring/http/responses\.py|howto_score\.py:(39|40)\)"),
    ("budget / workerstate", r"tfscoring/(batching/budget|batching/cost|process/workerstate)\.py"),
    ("score.run (own lines, auth, model)", r"score\.py:|tfscoring/(app|tf/model|http/auth|errors)\.py"),
    ("azmlinfsrv (routes, user_script, blueprint)", r"azureml_inference_server_http/"),
    ("flask / werkzeug", r"\((flask|werkzeug)/"),
    ("gunicorn HTTP parse / WSGI response", r"gunicorn/http/"),
    ("gthread dispatch (main loop, pool, futures)", r"gunicorn/|concurrent/futures/|selectors\.py"),
]
LOGGING_RE = re.compile(r"\(logging/")  # the stdlib's logging module
WAIT_RE = [(name, re.compile(rx)) for name, rx in WAIT_LEAVES]
RULE_RE = [(name, re.compile(rx)) for name, rx in RULES]
ORDER = [n for n, _ in WAIT_LEAVES] + [n for n, _ in RULES]
ORDER += [f"logging (called from {n.split(' (')[0]})" for n, _ in RULES if not n.startswith("logging")]
ORDER += ["logging (other)", "other"]


def read(path: str):
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack:
            yield [f.strip() for f in stack.split(";")], int(count)


def classify(frames: list[str]) -> str:
    leaf = frames[-1]
    for name, rx in WAIT_RE:
        if rx.search(leaf):
            return name
    in_logging = False
    for frame in reversed(frames[1:]):
        if LOGGING_RE.search(frame):
            in_logging = True
            continue
        for name, rx in RULE_RE:
            if rx.search(frame):
                if in_logging and not name.startswith("logging"):
                    return f"logging (called from {name.split(' (')[0]})"
                return name
    return "logging (other)" if in_logging else "other"


def tally(path: str) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for frames, n in read(path):
        counts[classify(frames)] += n
    return counts


def main(args: list[str]) -> None:
    runs = []
    for arg in args:
        name, _, files = arg.partition("=")
        parts = files.split(",")
        busy = tally(parts[0])
        gil = tally(parts[1]) if len(parts) > 1 and parts[1] else None
        requests = float(parts[2]) if len(parts) > 2 else None
        runs.append((name, busy, gil, requests))
    head = "| component |"
    rule = "|---|"
    for name, _, gil, req in runs:
        head += f" {name} % busy |"
        rule += "---:|"
        if gil is not None:
            head += f" {name} % GIL |"
            rule += "---:|"
            if req:
                head += f" {name} µs/req (GIL) |"
                rule += "---:|"
    print(head)
    print(rule)
    for comp in ORDER:
        cells = []
        any_value = False
        for _, busy, gil, req in runs:
            nbusy = sum(v for k, v in busy.items() if not k.startswith("wait:"))
            if comp.startswith("wait:"):
                cells.append(f"({100 * busy[comp] / nbusy:.1f})")
            else:
                cells.append(f"{100 * busy[comp] / nbusy:.1f}")
            any_value |= busy[comp] > 0
            if gil is not None:
                ngil = sum(v for k, v in gil.items() if not k.startswith("wait:"))
                mark = "({:.1f})" if comp.startswith("wait:") else "{:.1f}"
                cells.append(mark.format(100 * gil[comp] / ngil))
                any_value |= gil[comp] > 0
                if req:
                    cells.append(mark.format(gil[comp] / 500 / req * 1e6))
        if any_value:
            print(f"| {comp} | " + " | ".join(cells) + " |")
    totals = []
    for _, busy, gil, req in runs:
        nbusy = sum(v for k, v in busy.items() if not k.startswith("wait:"))
        totals.append(f"{nbusy} samples")
        if gil is not None:
            ngil = sum(v for k, v in gil.items() if not k.startswith("wait:"))
            totals.append(f"{ngil} samples")
            if req:
                totals.append(f"{ngil / 500 / req * 1e6:.0f} µs")
    print("| busy total (waits excluded) | " + " | ".join(totals) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

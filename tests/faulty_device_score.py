"""server/score.py on a device the test controls through files, to test hangs and device failures on a CPU.

- While $STALL_FILE exists, session calls wait (a slow or hung device): the queue fills behind them;
  $STALL_FILE-reached appears when one does.
- While $BREAK_FILE exists, session calls raise TensorFlow's InternalError, as a CUDA error would, and a
  worker starting meanwhile waits in init() (a replacement stays "loading" until the test lets it go).
- While $FLAKY_FILE exists, a worker's first session call raises InternalError and every later one waits
  (a device that fails, then hangs).
- When $HOLD_FILE exists, the one session call that removes it first holds the GIL in one C call that never
  ends and uses a core (a regular expression backtracking without end), as a native decoder stuck on a
  hostile body would: its heartbeat stops, its CPU time grows.

Everything else is the real entry script.
"""

import contextlib
import os
import re
import time
from pathlib import Path

import tensorflow as tf

import score  # the real entry script, in AML_APP_ROOT (server/), which azmlinfsrv puts on sys.path

run = score.run  # decorated with @rawhttp: the server calls it with the Flask request


def init():
    stall, broken, flaky, hold = (
        Path(os.environ.get(name, "/nonexistent")) for name in ("STALL_FILE", "BREAK_FILE", "FLAKY_FILE", "HOLD_FILE")
    )
    failed_once = []
    deadline = time.monotonic() + 120
    while broken.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    score.init()
    session_call = score.app.model.session_call

    def faulty_device(*arrays):  # one array per input, as TensorFlow's callable takes them
        with contextlib.suppress(FileNotFoundError):
            hold.unlink()  # this call, and no other, holds
            re.fullmatch(r"(a|aa)+b", "a" * 80)  # 2**55 steps in C, the GIL held throughout
        if flaky.exists() and not failed_once:
            failed_once.append(True)
            raise tf.errors.InternalError(None, None, "CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure (pretend)")
        while flaky.exists():
            time.sleep(0.01)
        if stall.exists():
            stall.with_name(stall.name + "-reached").touch()  # the test's sign that a call is stalled
        while stall.exists():
            time.sleep(0.01)
        if broken.exists():
            raise tf.errors.InternalError(None, None, "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access (pretend)")
        return session_call(*arrays)

    score.app.model.session_call = faulty_device

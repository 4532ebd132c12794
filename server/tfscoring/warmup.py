"""Warm-up with real requests: `warmup.jsonl` beside the model, scored at start-up before the worker says it is ready.

TF Serving warms a model with requests shipped beside it (`assets.extra/tf_serving_warmup_requests`); this is the
same idea in this server's own terms.  The served version folder (`<model>/<version>/warmup.jsonl`) may hold one
request body per line, in any JSON form POST /score takes (the how-to's `{"data": ...}`, TF Serving's rows or
columns, the Open Inference Protocol's JSON).  Each is decoded by the codec a request to /score gets, against the
same limits, scored through the same session calls the batcher makes, and encoded; a graph with a free dimension,
which zero rows cannot warm, is warmed by real ones this way.  Bounded: at most WARMUP_MAX_REQUESTS lines (more is
an error, as in TF Serving), each at most MAX_REQUEST_BYTES, read one line at a time.  A line that the codec refuses
or whose session call fails stops start-up with one line naming the file, the line and the reason: a version whose
warm-up fails is not served.  Like app.py, this module puts layers together (protocols and the batching's calls).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from tfscoring.errors import ScoringError, StartupError
from tfscoring.interface import Interface, Predict
from tfscoring.protocols import registry
from tfscoring.protocols.codec import Codec
from tfscoring.protocols.limits import Limits

FILE_NAME = "warmup.jsonl"
# TF Serving's own warm-up file: a TFRecord of PredictionLog protos, which only tensorflow-serving-api's generated
# classes read (a package pinning its own TensorFlow); its presence is said in the log, and it is not read.
TF_SERVING_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def lines(path: Path, max_requests: int, max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """The requests of a warm-up file: (line number, body) for each line that is not blank, one line read at a time
    (StartupError: a line longer than `max_bytes`, more than `max_requests` requests, the file unreadable)."""
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below, also when the caller stops early
    except OSError as err:
        raise StartupError(f"warm-up file {path}: cannot be read: {err.strerror}") from None
    with file:
        count = 0
        for number in range(1, 1 << 62):
            try:
                line = file.readline(max_bytes + 1)  # bounded: a line never costs more than one request's body
            except OSError as err:
                raise StartupError(f"warm-up file {path}, line {number}: cannot be read: {err.strerror}") from None
            if not line:
                return
            if len(line) > max_bytes and not (len(line) == max_bytes + 1 and line.endswith(b"\n")):
                raise StartupError(
                    f"warm-up file {path}, line {number}: longer than MAX_REQUEST_BYTES ({max_bytes} bytes)"
                )
            if not line.strip():
                continue
            count += 1
            if count > max_requests:
                raise StartupError(
                    f"warm-up file {path}: more than WARMUP_MAX_REQUESTS ({max_requests}) requests; from line "
                    f"{number} on, split it or raise the setting"
                )
            yield number, line


def run(
    folder: Path,
    interface: Interface,
    limits: Limits,
    predict: Predict,
    max_requests: int,
    max_bytes: int,
) -> str:
    """Score each request of `folder`'s warm-up file through `predict` (the worker's session calls); what was done,
    for the log (StartupError: a request that is refused or fails, with its file and line)."""
    path = folder / FILE_NAME
    if not path.exists():
        if (folder / TF_SERVING_FILE).exists():
            return f"none ({TF_SERVING_FILE}, TF Serving's format, is not read: write {FILE_NAME} instead)"
        return f"none (no {FILE_NAME} in {folder})"
    if max_requests == 0:
        return f"off (WARMUP_MAX_REQUESTS=0: {path} is not read)"
    if not path.is_file():
        raise StartupError(f"warm-up file {path}: not a file")
    codec = registry.find("application/json", {})  # a JSON body at POST /score
    started = time.perf_counter()
    requests = rows = 0
    for number, body in lines(path, max_requests, max_bytes):
        rows += _score(codec, body, interface, limits, predict, f"warm-up file {path}, line {number}")
        requests += 1
    return f"{requests} requests ({rows} rows) from {path} in {(time.perf_counter() - started) * 1e3:.0f} ms"


def _score(codec: Codec, body: bytes, interface: Interface, limits: Limits, predict: Predict, where: str) -> int:
    """Decode, score and encode one request as /score would; its rows.  No reservation: the in-flight budget lets a
    lone request through whatever its size (batching/budget.py), and at start-up each is alone; the limits (rows,
    values, bytes) bound it as they bound a request."""
    try:
        decoded = codec.decode(body, interface, limits)
    except ScoringError as err:
        raise StartupError(f"{where}: refused ({err.status_code}): {err.message}") from None
    try:
        outputs = predict(decoded.arrays)
        codec.encode(decoded, outputs, interface)
    except ScoringError as err:
        raise StartupError(f"{where}: scoring failed ({err.status_code}): {err.message}") from None
    except Exception as err:  # TensorFlow's error, or a graph that mixes rows (tf/model.py): said in one line
        reason = (str(err).strip().splitlines() or [""])[0]
        raise StartupError(f"{where}: scoring failed: {type(err).__name__}: {reason}") from None
    return decoded.rows

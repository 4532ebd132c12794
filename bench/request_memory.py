"""Each body kind at its limit: the worker's peak memory growth against what the request reserved.

    python -m bench.request_memory [--model-dir models/tf-dnn-mnist/1] [--out bench/results/request-memory.md]

The server is started as `make serve` starts it (server/serve.py, nginx in front) with one worker, so that one
request at a time is measured alone.  For each body kind, the largest such body the how-to's model accepts (or
an attacker's body of that kind), sent once: before it, the worker's peak resident size is reset to its current
one (writing 5 to /proc/<pid>/clear_refs); after its answer, the peak (VmHWM) less the size before is the
request's real peak, and the request log line's `reserved_bytes` is what it held of the in-flight budget at its
largest (budget.py).  The ratio must be at most 1 for every kind: then the budget keeps the worker's memory
inside the share sizing.py gives it, whatever clients send.  Writes a Markdown table and a JSON file beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import requests
from PIL import Image

from bench.servers import REPO, FrontDoorProcess, wait_for, worker_pids

ROWS = 4096  # MAX_REQUEST_ROWS
WIDTH = 784
SIDE = 4096  # images.MAX_PIXELS = SIDE x SIDE
LIMIT = 64 * 1024 * 1024  # MAX_REQUEST_BYTES


def _kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1))


def _image(array: np.ndarray | Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    (array if isinstance(array, Image.Image) else Image.fromarray(array)).save(out, fmt, **options)
    return out.getvalue()


def _png_16bit(height: int, width: int, noise: bool) -> bytes:
    array = np.random.default_rng(1).integers(0, 65536, (height, width), dtype=np.uint16) if noise else None
    if array is None:
        array = np.zeros((height, width), np.uint16)
    return _image(array, "PNG")


def _tall_png() -> bytes:
    """1 x SIDE*SIDE pixels, 8-bit gray, all zero: some 16 KiB of body."""
    return _image(np.zeros((1, SIDE * SIDE), np.uint8), "PNG")


def _png_with(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A 28 x 28 gray PNG carrying `chunks` after its IHDR: metadata that Pillow copies, not pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = _image(np.zeros((28, 28), np.uint8), "PNG")
    return png[:33] + b"".join(chunk(kind, data) for kind, data in chunks) + png[33:]


def _metadata_bodies() -> dict[str, tuple[bytes, dict[str, str]]]:
    """Images that are mostly metadata: the most the header walk takes (images.MAX_METADATA_BYTES,
    MAX_PNG_COMPRESSED) and the attacks it refuses."""
    import zlib

    blob = np.random.default_rng(4).integers(0, 256, 60 << 20, dtype=np.uint8).tobytes()
    taken = (1 << 20) - 4096  # under images.MAX_METADATA_BYTES with the chunks' own keys and headers
    inflating = zlib.compress(b"a" * ((1 << 20) - 1), 9)  # 1 KB of zlib: Pillow's MAX_TEXT_CHUNK once inflated
    png, webp = {"Content-Type": "image/png"}, {"Content-Type": "image/webp"}
    gray = np.zeros((28, 28), np.uint8)
    return {
        "PNG 28x28, 8 zTXt chunks of 1 MiB inflated (taken)": (
            _png_with([(b"zTXt", b"k%d\x00\x00" % i + inflating) for i in range(8)]),
            png,
        ),
        "PNG 28x28, 63 zTXt chunks of 1 MiB inflated (attack)": (
            _png_with([(b"zTXt", b"k%d\x00\x00" % i + inflating) for i in range(63)]),
            png,
        ),
        "PNG 28x28, 1 MiB eXIf (taken)": (_png_with([(b"eXIf", b"MM\x00*" + blob[:taken])]), png),
        "PNG 28x28, 60 MiB eXIf (attack)": (_png_with([(b"eXIf", b"MM\x00*" + blob)]), png),
        "PNG 28x28, 1 MiB unknown chunk (taken)": (_png_with([(b"abCd", blob[:taken])]), png),
        "PNG 28x28, 60 MiB unknown chunk (attack)": (_png_with([(b"abCd", blob)]), png),
        "WebP 28x28, 1 MiB EXIF (taken)": (_image(gray, "WEBP", exif=b"MM\x00*" + blob[:taken]), webp),
        "WebP 28x28, 60 MiB EXIF (attack)": (_image(gray, "WEBP", exif=b"MM\x00*" + blob), webp),
    }


def _json_rows(short: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    if short:
        return rng.integers(0, 2, (ROWS, WIDTH)).astype(np.float64)  # "0" and "1": the most values per byte
    rows = rng.random((ROWS, WIDTH))
    # Long floats, as many rows as fit under the body limit.
    per_row = len(orjson.dumps(rows[0].tolist())) + 1
    return rows[: min(ROWS, (LIMIT - 64) // per_row)]


def _rows_list(rows: np.ndarray) -> list:
    return [[int(v) if v.is_integer() else v for v in row] for row in rows.tolist()]


def bodies(input_name: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Each body kind: (body, headers)."""
    json_type = {"Content-Type": "application/json"}
    out: dict[str, tuple[bytes, dict[str, str]]] = {}
    for short in (False, True):
        rows = _json_rows(short)
        values = _rows_list(rows)
        tag = "0/1 values" if short else "long floats"
        out[f'JSON {{"data"}}, {tag}'] = (orjson.dumps({"data": values}), json_type)
        out[f'JSON {{"instances"}}, {tag}'] = (orjson.dumps({"instances": values}), json_type)
        out[f'JSON {{"inputs"}}, {tag}'] = (orjson.dumps({"inputs": values}), json_type)
        flat = [v for row in values for v in row]
        oip = {"inputs": [{"name": input_name, "shape": [len(values), WIDTH], "datatype": "FP32", "data": flat}]}
        out[f"OIP JSON flat, {tag}"] = (orjson.dumps(oip), json_type)
        oip["inputs"][0]["data"] = values
        out[f"OIP JSON nested, {tag}"] = (orjson.dumps(oip), json_type)
    array = np.random.default_rng(2).random((ROWS, WIDTH), dtype=np.float32)
    out["raw float32"] = (array.tobytes(), {"Content-Type": "application/octet-stream"})
    npy = io.BytesIO()
    np.save(npy, array)
    out[".npy float32"] = (npy.getvalue(), {"Content-Type": "application/x-npy"})
    tensor = {"name": input_name, "shape": [ROWS, WIDTH], "datatype": "FP32"}
    header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": array.nbytes}}]})
    out["OIP binary FP32"] = (
        header + array.tobytes(),
        {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
    rgb = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    png = {"Content-Type": "image/png"}
    out["PNG 8-bit gray 4096x4096 noise"] = (_image(gray, "PNG", compress_level=1), png)
    out["PNG 8-bit RGB 4096x4096 noise"] = (_image(rgb, "PNG", compress_level=1), png)
    out["PNG palette 4096x4096"] = (_image(Image.fromarray(rgb).quantize(256), "PNG", compress_level=1), png)
    out["PNG 16-bit gray 4096x4096 noise"] = (_png_16bit(SIDE, SIDE, noise=True), png)
    out["PNG 16-bit gray 4096x4096 zeros (small body)"] = (_png_16bit(SIDE, SIDE, noise=False), png)
    out["PNG 1 x 16777216 (tall)"] = (_tall_png(), png)
    jpeg = {"Content-Type": "image/jpeg"}
    out["JPEG RGB 4096x4096 q95"] = (_image(rgb, "JPEG", quality=95), jpeg)
    out["JPEG progressive 4096x4096 q95"] = (_image(rgb, "JPEG", quality=95, progressive=True), jpeg)
    out["WebP RGB 4096x4096 q90"] = (_image(rgb, "WEBP", quality=90), {"Content-Type": "image/webp"})
    out['JSON {"inputs": [[], [], ...]} (attack)'] = (b'{"inputs": [' + b"[]," * ((18 << 20) // 3) + b"[]]}", json_type)
    # The worst bodies that pass the count of values (protocols/jsonbounds.py): empty objects and lists.
    from bench.gil_hold import build_other

    for name, kind in (
        ("json-instances-empty-objects", '{"instances": [{}, {}, ...]}'),
        ("json-inputs-empty-lists", '{"inputs": [[], [], ...]}'),
    ):
        out[f"JSON {kind} just under the count"] = (build_other(name)[0], json_type)
    # Twice the rows of 0/1 values: decode_fast's own count (2 x a request's values) lets simdjson parse it first.
    out['JSON {"data"}, 0/1 values, 8192 rows (over the rows)'] = (build_other("json-data-01-8192rows")[0], json_type)
    out.update(_metadata_bodies())
    return {name: value for name, value in out.items() if len(value[0]) <= LIMIT}


def measure(server: FrontDoorProcess, worker: int, name: str, body: bytes, headers: dict[str, str]) -> dict:
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _kib(worker, "VmRSS")
    request_id = f"request-memory-{time.monotonic_ns()}"
    headers = {**headers, "x-request-id": request_id}
    answer = requests.post(server.url + "/score", data=body, headers=headers, timeout=300)
    peak = _kib(worker, "VmHWM")
    line = wait_for(lambda: _log_line(server.log(), request_id), 30, f"the request log line of {name}")
    reserved = line.get("reserved_bytes") or 0
    growth = max(0, peak - before) * 1024
    return {
        "kind": name,
        "body_bytes": len(body),
        "status": answer.status_code,
        "answer": answer.text[:120] if answer.status_code != 200 else "",
        "ms": line.get("ms"),
        "peak_growth_bytes": growth,
        "reserved_bytes": reserved,
        "ratio": round(growth / reserved, 3) if reserved else None,
    }


def _log_line(log: str, request_id: str) -> dict | None:
    for text in log.splitlines():
        if request_id in text and '"event": "request"' in text.replace('"event":"request"', '"event": "request"'):
            return json.loads(text[text.index("{") :])
    return None


def table(results: list[dict]) -> str:
    lines = [
        "| body kind | body | status | ms | peak RSS growth | reserved | growth / reserved |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['kind']} | {_mib(r['body_bytes'])} | {r['status']} | {r['ms']} | {_mib(r['peak_growth_bytes'])} "
            f"| {_mib(r['reserved_bytes'])} | {ratio} |"
        )
    return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def run(model_dir: Path, only: Callable[[str], bool]) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="request-memory-") as logs:
        env = {"WORKER_COUNT": "1", "GUNICORN_CMD_ARGS": "--threads 4", "MAX_INFLIGHT_BYTES": str(8 << 30)}
        with FrontDoorProcess(model_dir, Path(logs), env) as server:
            (worker,) = worker_pids(server.gunicorn_pid())
            metadata = requests.get(server.url + "/score", timeout=30).json()
            results = []
            for name, (body, headers) in bodies(metadata["inputs"][0]["name"]).items():
                if only(name):
                    results.append(measure(server, worker, name, body, headers))
                    print(json.dumps(results[-1]), flush=True)
            return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "tf-dnn-mnist" / "1")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "request-memory.md")
    parser.add_argument("--only", default="", help="measure only the kinds whose name holds this text")
    args = parser.parse_args(argv)
    results = run(args.model_dir, lambda name: args.only in name)
    text = write(results, args.out)
    print(text)
    worst = max((r["ratio"] or 0) for r in results)
    sys.exit(0 if worst <= 1 else 1)


def write(results: list[dict], out: Path) -> str:
    """The Markdown table (and the kinds over their reservation, if any) to `out`, the results beside it."""
    over = [r for r in results if (r["ratio"] or 0) > 1]
    text = (
        "# Peak memory of one request against its reservation\n\n"
        f"`python -m bench.request_memory` on {platform.node() and 'this machine'} ({os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}), one worker, one request at a time; the how-to's model "
        f"({ROWS} rows x {WIDTH} values at most, {LIMIT >> 20} MiB bodies, {SIDE}x{SIDE} images).\n\n"
        + table(results)
        + "\n"
    )
    if over:
        text += "\nOver their reservation (ratio > 1): " + "; ".join(f"{r['kind']} ({r['ratio']:.2f})" for r in over)
        text += ".\n"
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    return text


if __name__ == "__main__":
    main()

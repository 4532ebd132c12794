"""How long each body decoder holds the GIL, and how its peak memory compares with what the request reserved.

    .venv/bin/python -m bench.gil_hold [--out bench/results/gil-hold.md] [--only NAME ...]

Two tables: the images, and the other decoders (JSON in every form, raw float32, .npy, the Open Inference
Protocol's binary extension) for the how-to's model (4096 rows x 784 values, 64 MiB bodies).

For each case (a decoder at its limit: 4096 x 4096 noise, or a 16384-pixel side; and the attacks that must be
refused cheaply), for each of two inputs (the how-to's (N, 784) grayscale, fixed 28 x 28; and a free-size
(-1, -1, 3) float32 input, the worst case as nothing is scaled down):
- GIL: tfscoring.protocols.images.decode_image runs in the main thread while a second thread loops time.sleep(0.001),
  recording the largest gap between its wake-ups (less 1 ms: the longest the GIL was held from it; the
  interpreter's switch interval, 5 ms, is the floor where the main thread runs Python); best of 3 runs.
- Memory: the same decode in a fresh subprocess, which resets its peak RSS (/proc/self/clear_refs 5) once the
  body is read, then reads VmHWM after the decode: the growth against ImageHeader.decoded_bytes (from inspect),
  every ratio must be <= 1.
The other decoders run as the server runs them: the codec its registry finds (tfscoring/protocols/registry.py), a
JSON body through the how-to's fast path, and where that declines it the count, the parse and the validation; raw
and .npy through their codecs.  Their bodies: each JSON form at 4096 rows of long floats (as many rows as
fit 64 MiB) and of
0/1 values (the most values per byte), and the worst bodies that pass the count of values (registry.JSON.most_values):
`{"instances": [{}, {}, ...]}` and `{"inputs": [[], [], ...]}` just under it; and `{"data"}` of 8192 rows of 0/1,
which holds more values than a request may: refused on its count, before any parse.  Their memory ratio is the
growth against what the codec reserves of the budget for the step that answered, the body left out (it is read
before): the fast path its body size and commas, the careful path jsonbounds.parse_cost, binary BINARY_WEIGHT x body.
Prints Markdown tables and writes them to --out.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from tfscoring.errors import ScoringError  # noqa: E402
from tfscoring.interface import Interface, TensorSpec  # noqa: E402
from tfscoring.protocols import images, npy, oip_binary, raw, registry  # noqa: E402
from tfscoring.protocols.image import header as image_header  # noqa: E402
from tfscoring.protocols.limits import Limits  # noqa: E402

MAX_ROWS = 4096  # MAX_REQUEST_ROWS
MAX_BYTES = 64 << 20  # MAX_REQUEST_BYTES
HOWTO_INPUT = TensorSpec("network/X", "network/X:0", np.dtype("float32"), (784,))
# The how-to's model as the server reads it from its graph (tests/support.py howto_interface).
HOWTO = Interface(
    "tf-dnn-mnist",
    "1",
    (HOWTO_INPUT,),
    (TensorSpec("network/output/MatMul", "network/output/MatMul:0", np.dtype("float32"), (10,)),),
)

SPECS = {
    "784": TensorSpec("x", "network/X:0", np.dtype("float32"), (784,)),
    "free-rgb": TensorSpec("image", "x:0", np.dtype("float32"), (-1, -1, 3)),
}


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _noise(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int, rows: int) -> bytes:
    chunk = _chunk
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes((1 + width) * rows), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def build(name: str) -> bytes:
    side = 4096
    if name == "jpeg-8bit":
        return _encode(Image.fromarray(_noise(side, side, 3), "RGB"), "JPEG", quality=90)
    if name == "jpeg-progressive":
        return _encode(Image.fromarray(_noise(side, side, 3), "RGB"), "JPEG", quality=90, progressive=True)
    if name == "jpeg-cmyk":
        return _encode(Image.fromarray(_noise(side, side, 4), "CMYK"), "JPEG", quality=90)
    if name == "png-8bit-rgb":
        return _encode(Image.fromarray(_noise(side, side, 3), "RGB"), "PNG", compress_level=1)
    if name == "png-16bit-gray":
        wide = np.random.default_rng(0).integers(0, 65536, (side, side), dtype=np.uint16)
        return _encode(Image.fromarray(wide), "PNG", compress_level=1)
    if name == "png-palette":
        palette = Image.fromarray(_noise(side, side, 1), "P")
        palette.putpalette(list(range(256)) * 3)
        return _encode(palette, "PNG", compress_level=1)
    if name == "webp-lossy":
        return _encode(Image.fromarray(_noise(side, side, 3), "RGB"), "WEBP", quality=80, method=0)
    if name == "webp-lossless":
        return _encode(Image.fromarray(_noise(side, side, 3), "RGB"), "WEBP", lossless=True, quality=0, method=0)
    if name == "png-tall-1x16384":
        return _encode(Image.fromarray(_noise(image_header.MAX_SIDE, 1, 1), "L"), "PNG")
    if name == "png-wide-16384x1024":
        return _encode(Image.fromarray(_noise(1024, image_header.MAX_SIDE, 3), "RGB"), "PNG", compress_level=1)
    if name in ("png-8-ztxt-1mib-each", "png-eXIf-1mib", "webp-exif-1mib"):  # the most metadata taken
        small = np.zeros((28, 28), np.uint8)
        if name == "webp-exif-1mib":
            return _encode(
                Image.fromarray(small), "WEBP", exif=b"MM\x00*" + bytes(image_header.MAX_METADATA_BYTES - 4096)
            )
        png = _encode(Image.fromarray(small), "PNG")
        if name == "png-eXIf-1mib":
            chunks = _chunk(b"eXIf", b"MM\x00*" + bytes(image_header.MAX_METADATA_BYTES - 4096))
        else:
            inflating = zlib.compress(b"a" * ((1 << 20) - 1), 9)
            chunks = b"".join(_chunk(b"zTXt", b"k%d\x00\x00" % i + inflating) for i in range(8))
        return png[:33] + chunks + png[33:]
    if name == "attack-png-63-ztxt":  # 66 KB: Pillow's text chunks took +66 MiB
        png = _encode(Image.fromarray(np.zeros((28, 28), np.uint8)), "PNG")
        inflating = zlib.compress(b"a" * ((1 << 20) - 1), 9)
        return png[:33] + b"".join(_chunk(b"zTXt", b"k%d\x00\x00" % i + inflating) for i in range(63)) + png[33:]
    if name == "attack-png-1x16777216":
        return _png_declaring(1, 16_777_216, 16_777_216)
    if name == "attack-jpeg-16.5M-app1":
        small = _encode(Image.new("RGB", (8, 8)), "JPEG")
        return small[:2] + b"\xff\xe1\x00\x02" * 16_500_000 + small[2:]
    raise KeyError(name)


CASES = (
    "jpeg-8bit",
    "jpeg-progressive",
    "jpeg-cmyk",
    "png-8bit-rgb",
    "png-16bit-gray",
    "png-palette",
    "webp-lossy",
    "webp-lossless",
    "png-tall-1x16384",
    "png-wide-16384x1024",
    "png-8-ztxt-1mib-each",
    "png-eXIf-1mib",
    "webp-exif-1mib",
    "attack-png-1x16777216",
    "attack-jpeg-16.5M-app1",
    "attack-png-63-ztxt",
)


def _json_values(short: bool) -> list[list]:
    """4096 rows of 0/1 values, or of long floats as many rows as fit under the body limit."""
    import orjson

    rng = np.random.default_rng(0)
    if short:
        return rng.integers(0, 2, (MAX_ROWS, 784)).tolist()
    rows = rng.random((MAX_ROWS, 784))
    per_row = len(orjson.dumps(rows[0].tolist())) + 1
    return rows[: min(MAX_ROWS, (MAX_BYTES - 256) // per_row)].tolist()


def _just_under(head: bytes, item: bytes, tail: bytes) -> bytes:
    """head + item, item, ... + tail with as many items as keep its count of values within registry.JSON.most_values."""
    from tfscoring.protocols import decode

    most = registry.JSON.most_values(HOWTO, Limits(max_rows=MAX_ROWS))
    one = decode.count(head + item + tail, depth=False).values
    two = decode.count(head + item + b"," + item + tail, depth=False).values
    items = 1 + (most - one) // (two - one)
    body = head + b",".join([item] * items) + tail
    assert decode.count(body, depth=False).values <= most < decode.count(body + b"," + item, depth=False).values
    return body


def build_other(name: str) -> tuple[bytes, str, str | None]:
    """(body, decoder: "json", "raw" or "npy", the Inference-Header-Content-Length header or None)."""
    import orjson

    if name == "json-instances-empty-objects":
        return _just_under(b'{"instances": [', b"{}", b"]}"), "json", None
    if name == "json-inputs-empty-lists":
        return _just_under(b'{"inputs": [', b"[]", b"]}"), "json", None
    if name == "json-data-01-8192rows":  # twice the rows: refused on its count, the fast path declining it unparsed
        rows = np.random.default_rng(0).integers(0, 2, (2 * MAX_ROWS, 784)).tolist()
        return orjson.dumps({"data": rows}), "json", None
    if name.startswith("json-"):
        form, values = name[5:].rsplit("-", 1)
        rows = _json_values(values == "01")
        if form in ("data", "instances", "inputs"):
            return orjson.dumps({form: rows}), "json", None
        data = [v for row in rows for v in row] if form == "oip-flat" else rows
        tensor = {"name": HOWTO_INPUT.name, "shape": [len(rows), 784], "datatype": "FP32", "data": data}
        return orjson.dumps({"inputs": [tensor]}), "json", None
    array = np.random.default_rng(2).random((MAX_ROWS, 784), dtype=np.float32)
    if name == "raw-float32":
        return array.tobytes(), "raw", None
    if name == "npy-float32":
        out = io.BytesIO()
        np.save(out, array)
        return out.getvalue(), "npy", None
    if name == "oip-binary-fp32":
        tensor = {"name": HOWTO_INPUT.name, "shape": [MAX_ROWS, 784], "datatype": "FP32"}
        header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": array.nbytes}}]})
        return header + array.tobytes(), "json", str(len(header))
    raise KeyError(name)


OTHER_CASES = (
    *(
        f"json-{form}-{values}"
        for values in ("floats", "01")
        for form in ("data", "instances", "inputs", "oip-flat", "oip-nested")
    ),
    "json-instances-empty-objects",
    "json-inputs-empty-lists",
    "json-data-01-8192rows",
    "raw-float32",
    "npy-float32",
    "oip-binary-fp32",
)


def decode_other(body: bytes, decoder: str, header_length: str | None) -> tuple[str, int]:
    """The server's decode of a JSON, raw or .npy body, by the codec its registry finds: (answer, what the codec
    reserved for the step that answered, the body left out)."""
    content_type = {"raw": raw.CONTENT_TYPE, "npy": npy.CONTENT_TYPE}.get(decoder, "application/json")
    headers = {} if header_length is None else {oip_binary.HEADER_LENGTH: header_length}
    held = [0]

    def reserve(bound: int) -> None:
        held[0] = bound

    try:
        registry.find(content_type, headers).decode(body, HOWTO, Limits(max_rows=MAX_ROWS), reserve)
    except ScoringError as err:
        return f"{err.status_code}", held[0]
    return "200", held[0]


def _decode(body: bytes, spec: TensorSpec) -> str:
    try:
        images.decode_image(body, spec, "unit")
    except ScoringError as err:
        return f"{err.status_code}"
    return "200"


def gil_hold(
    body: bytes, spec: TensorSpec | None, other: tuple[str, str | None] = ("", None)
) -> tuple[float, float, str]:
    """(decode seconds, longest gap in the sleeper's wake-ups less its 1 ms sleep, outcome); an image decode for
    `spec`, else decode_other(body, *other)."""
    stop = threading.Event()
    gaps = [0.0]

    def sleeper() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last - 0.001)
            last = now

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.05)
    gaps[0] = 0.0
    start = time.perf_counter()
    outcome = _decode(body, spec) if spec is not None else decode_other(body, *other)[0]
    took = time.perf_counter() - start
    stop.set()
    thread.join()
    return took, gaps[0], outcome


def _status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmHWM", "VmRSS")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values


def rss_child(path: str, spec_name: str) -> None:
    """In a fresh process: the decode's peak RSS growth, and the header's decoded_bytes."""
    import gc

    body = Path(path).read_bytes()
    spec = SPECS[spec_name]
    _decode(_png_declaring(8, 8, 8), spec)  # import-time and first-call allocations out of the way
    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := VmRSS
    before = _status()["VmRSS"]
    try:
        bound = image_header.inspect(body, spec).decoded_bytes
    except ScoringError:
        bound = 0
    _decode(body, spec)
    print(_status()["VmHWM"] - before, bound)


def rss_other(path: str, decoder: str, header_length: str) -> None:
    """In a fresh process: decode_other's peak RSS growth, and what its codec reserves (the body left out)."""
    import gc

    body = Path(path).read_bytes()
    header = header_length or None
    small = io.BytesIO()
    np.save(small, np.zeros((2, 784), np.float32))
    decode_other(small.getvalue(), "npy", None)  # imports and first calls out of the way
    decode_other(bytes(784 * 4), "raw", None)
    decode_other(b'{"instances": [' + b"[0]," * 10 + b"[0]]}", "json", None)
    decode_other(b'{"data": [[' + b"0," * 783 + b"0]]}", "json", None)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := VmRSS
    before = _status()["VmRSS"]
    _, reserved = decode_other(body, decoder, header)
    print(_status()["VmHWM"] - before, reserved)


def other_rows(names: list[str], work: str) -> list[str]:
    lines = [
        "",
        "JSON, raw and .npy bodies for the how-to's model (4096 rows x 784 values, 64 MiB), decoded by the codec the "
        "server's registry finds; reserved: what it reserves for the step that answered, the body left out.",
        "",
        "| case | body bytes | answer | decode ms | longest GIL hold ms | peak RSS growth MB | reserved MB | ratio |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name in names:
        body, decoder, header_length = build_other(name)
        path = Path(work) / name
        path.write_bytes(body)
        runs = [gil_hold(body, None, (decoder, header_length)) for _ in range(3)]
        took, hold, outcome = min(runs, key=lambda run: run[1])
        growth, reserved = _in_child("--rss-other", str(path), decoder, header_length or "")
        ratio = f"{growth / reserved:.2f}" if reserved else "-"
        line = (
            f"| {name} | {len(body):,} | {outcome} | {took * 1000:.0f} | {hold * 1000:.1f} "
            f"| {growth / 1e6:.1f} | {reserved / 1e6:.1f} | {ratio} |"
        )
        lines.append(line)
        print(line, flush=True)
        path.unlink()
        del body
    return lines


def _in_child(*args: str) -> tuple[int, int]:
    """(peak RSS growth, what is reserved) of one decode, measured in a fresh Python (`--rss-child`/`--rss-other`)."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.gil_hold", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    growth, bound = (int(v) for v in child.stdout.split())
    return growth, bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench/results/gil-hold.md"))
    parser.add_argument("--only", nargs="*", default=list(CASES) + list(OTHER_CASES))
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--rss-other", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    if args.rss_other:
        rss_other(*args.rss_other)
        return
    floor = gil_hold(b"", SPECS["784"])[1]
    lines = [
        "Body decode (images, then JSON, raw and .npy): GIL hold and peak memory "
        f"({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; `python -m bench.gil_hold`). Idle floor of the gap: "
        f"{floor * 1000:.1f} ms.",
        "",
        "| case | input | body bytes | answer | decode ms | longest GIL hold ms | peak RSS growth MB "
        "| decoded_bytes MB | ratio |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as work:
        for name in (name for name in args.only if name in CASES):
            body = build(name)
            path = Path(work) / name
            path.write_bytes(body)
            for spec_name, spec in SPECS.items():
                runs = [gil_hold(body, spec) for _ in range(3)]
                took, hold, outcome = min(runs, key=lambda run: run[1])
                growth, bound = _in_child("--rss-child", str(path), spec_name)
                ratio = f"{growth / bound:.2f}" if bound else "-"
                line = (
                    f"| {name} | {spec_name} | {len(body):,} | {outcome} | {took * 1000:.0f} | {hold * 1000:.1f} "
                    f"| {growth / 1e6:.1f} | {bound / 1e6:.1f} | {ratio} |"
                )
                lines.append(line)
                print(line, flush=True)
            path.unlink()
    with tempfile.TemporaryDirectory() as work:
        lines += other_rows([name for name in args.only if name in OTHER_CASES], work)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

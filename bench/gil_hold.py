"""How long each image decoder holds the GIL, and how its peak memory compares with its ImageHeader.decoded_bytes.

    .venv/bin/python -m bench.gil_hold [--out bench/results/gil-hold.md] [--only NAME ...]

For each case (a decoder at its limit: 4096 x 4096 noise, or a 16384-pixel side; and the attacks that must be
refused cheaply), for each of two inputs (the how-to's (N, 784) grayscale, fixed 28 x 28; and a free-size
(-1, -1, 3) float32 input, the worst case as nothing is scaled down):
- GIL: tfscoring.images.decode_image runs in the main thread while a second thread loops time.sleep(0.001),
  recording the largest gap between its wake-ups (less 1 ms: the longest the GIL was held from it; the
  interpreter's switch interval, 5 ms, is the floor where the main thread runs Python); best of 3 runs.
- Memory: the same decode in a fresh subprocess, which resets its peak RSS (/proc/self/clear_refs 5) once the
  body is read, then reads VmHWM after the decode: the growth against ImageHeader.decoded_bytes (from inspect),
  every ratio must be <= 1.
Prints a Markdown table and writes it to --out.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from tfscoring import images  # noqa: E402
from tfscoring.errors import ScoringError  # noqa: E402
from tfscoring.interface import TensorSpec  # noqa: E402

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


def _png_declaring(width: int, height: int, rows: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

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
        return _encode(Image.fromarray(_noise(images.MAX_SIDE, 1, 1), "L"), "PNG")
    if name == "png-wide-16384x1024":
        return _encode(Image.fromarray(_noise(1024, images.MAX_SIDE, 3), "RGB"), "PNG", compress_level=1)
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
    "attack-png-1x16777216",
    "attack-jpeg-16.5M-app1",
)


def _decode(body: bytes, spec: TensorSpec) -> str:
    try:
        images.decode_image(body, spec, "unit")
    except ScoringError as err:
        return f"{err.status_code}"
    return "200"


def gil_hold(body: bytes, spec: TensorSpec) -> tuple[float, float, str]:
    """(decode seconds, longest gap in the sleeper's wake-ups less its 1 ms sleep, outcome)."""
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
    outcome = _decode(body, spec)
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
        bound = images.inspect(body, spec).decoded_bytes
    except ScoringError:
        bound = 0
    _decode(body, spec)
    print(_status()["VmHWM"] - before, bound)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench/results/gil-hold.md"))
    parser.add_argument("--only", nargs="*", default=list(CASES))
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    floor = gil_hold(b"", SPECS["784"])[1]
    lines = [
        f"Image decode: GIL hold and peak memory ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; `python -m bench.gil_hold`). Idle floor of the gap: "
        f"{floor * 1000:.1f} ms.",
        "",
        "| case | input | body bytes | answer | decode ms | longest GIL hold ms | peak RSS growth MB "
        "| decoded_bytes MB | ratio |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as work:
        for name in args.only:
            body = build(name)
            path = Path(work) / name
            path.write_bytes(body)
            for spec_name, spec in SPECS.items():
                runs = [gil_hold(body, spec) for _ in range(3)]
                took, hold, outcome = min(runs, key=lambda run: run[1])
                child = subprocess.run(
                    [sys.executable, "-m", "bench.gil_hold", "--rss-child", str(path), spec_name],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                growth, bound = (int(v) for v in child.stdout.split())
                ratio = f"{growth / bound:.2f}" if bound else "-"
                line = (
                    f"| {name} | {spec_name} | {len(body):,} | {outcome} | {took * 1000:.0f} | {hold * 1000:.1f} "
                    f"| {growth / 1e6:.1f} | {bound / 1e6:.1f} | {ratio} |"
                )
                lines.append(line)
                print(line, flush=True)
            path.unlink()
    worst = ", ".join(f"{name} {images.decoded_bytes(spec) / 1e6:.1f} MB" for name, spec in SPECS.items())
    lines += ["", f"decoded_bytes(spec), the worst case reserved before the body is read: {worst}."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()

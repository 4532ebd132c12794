"""Decoding, this checkout against another (an older commit's worktree), in-process, alternating rounds.

    git worktree add /tmp/before <commit>
    python -m bench.decode_ab --before /tmp/before [--rounds 3] [--out bench/results/decode-ab.md]

Each round runs, in a fresh Python for each checkout in turn, every body kind's decode as the server runs it
before the session call (the codec its registry finds: the bounds, then the parse and validation; images: the
header, then the pixels; an older checkout's functions in the same order), each
for 0.15 s seven times; the median time per decode is kept, then the median over the rounds.  The how-to's
interface (784 float32 values a row).  A measurement: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run inside the checkout measured: only what that checkout has is called (the codecs' registry where it has one;
# else its functions, as its score.py called them: an older one has no bounds step).
_MEASURE = r"""
import io, json, statistics, sys, time
sys.path.insert(0, sys.argv[1] + "/server")
import numpy as np
from PIL import Image
from tfscoring.interface import Interface, TensorSpec
try:
    from tfscoring.protocols import registry
    from tfscoring.protocols.limits import Limits
except ImportError:  # before the codecs: the JSON forms in one module, flat (tfscoring/) or in protocols/
    registry = None
    try:
        from tfscoring.protocols import binary, images, forms as protocols
    except ImportError:
        from tfscoring import binary, images, protocols

spec = TensorSpec("network/X", "network/X:0", np.dtype(np.float32), (784,))
out = TensorSpec("network/output/MatMul", "network/output/MatMul:0", np.dtype(np.float32), (10,))
interface = Interface("tf-dnn-mnist", "1", (spec,), (out,))
rng = np.random.default_rng(0)
rows = (rng.integers(0, 256, (64, 784)) / 255).astype(np.float32)


def image(array, fmt, **options):
    out = io.BytesIO()
    Image.fromarray(array).save(out, fmt, **options)
    return out.getvalue()


def as_json(document):
    return json.dumps(document).encode()


if registry is not None:  # the codec the server's registry finds for each content type
    limits = Limits()

    def decoder(content_type):
        codec = registry.find(content_type, {})
        return lambda body: codec.decode(body, interface, limits)

    decode_json, decode_raw = decoder("application/json"), decoder("application/octet-stream")
    decode_image = decoder("image/png")
else:

    def decode_json(body):
        if not hasattr(protocols, "check_json_body"):
            return protocols.decode_json(body, interface, 4096)
        fast = protocols.decode_fast(body, interface, 4096)
        if fast:
            return fast
        counts = protocols.check_json_body(body, interface, 4096)
        protocols.parse_cost(counts, interface)
        return protocols.decode_json(body, interface, 4096, counts=counts)

    def decode_raw(body):
        return binary.decode_raw(body, spec, 4096)

    def decode_image(body):
        if hasattr(images, "inspect"):
            return images.decode(images.inspect(body, spec), spec, "unit")
        return images.decode_image(body, spec, "unit")


digit = (rows[0].reshape(28, 28) * 255).astype(np.uint8)
photo = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
oip = {"inputs": [{"name": "network/X", "shape": [64, 784], "datatype": "FP32", "data": rows.ravel().tolist()}]}
cases = {
    'JSON {"data"}, 1 row': (decode_json, as_json({"data": rows[:1].tolist()})),
    'JSON {"data"}, 64 rows': (decode_json, as_json({"data": rows.tolist()})),
    'JSON {"instances"}, 64 rows': (decode_json, as_json({"instances": rows.tolist()})),
    "OIP JSON, 64 rows": (decode_json, as_json(oip)),
    "raw float32, 64 rows": (decode_raw, rows.tobytes()),
    "PNG 28x28": (decode_image, image(digit, "PNG")),
    "JPEG 28x28": (decode_image, image(digit, "JPEG", quality=95)),
    "JPEG 224x224 RGB": (decode_image, image(photo, "JPEG", quality=90)),
    "PNG 224x224 RGB": (decode_image, image(photo, "PNG")),
    "WebP 224x224 RGB": (decode_image, image(photo, "WEBP")),
}
result = {}
for name, (decode, body) in cases.items():
    decode(body)
    times = []
    for _ in range(7):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < 0.15:
            decode(body)
            count += 1
        times.append((time.perf_counter() - start) / count * 1e6)
    result[name] = statistics.median(times)
print(json.dumps(result))
"""


def measure(root: Path) -> dict[str, float]:
    output = subprocess.run([sys.executable, "-c", _MEASURE, str(root)], capture_output=True, text=True, check=True)
    return json.loads(output.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "decode-ab.md")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        runs["before"].append(measure(args.before.resolve()))
        runs["after"].append(measure(REPO))
    lines = [
        "# Decoding before and after, in-process",
        "",
        f"`python -m bench.decode_ab --before <checkout of {_commit(args.before)}>` against {_commit(REPO)}, "
        f"{args.rounds} alternating rounds, median microseconds per decode (the bounds, the parse and validation).",
        "",
        "| body | before µs | after µs | after / before |",
        "|---|---:|---:|---:|",
    ]
    for name in runs["before"][0]:
        before = statistics.median(run[name] for run in runs["before"])
        after = statistics.median(run[name] for run in runs["after"])
        lines.append(f"| {name} | {before:.1f} | {after:.1f} | {after / before:.2f} |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


def _commit(root: Path) -> str:
    run = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return run.stdout.strip() or "?"


if __name__ == "__main__":
    main()

"""The how-to's client, fixed: send t10k images as real JSON and print label and prediction.

    python -m client.score_client                       # local server, one random image
    python -m client.score_client --count 10000         # every image, prints accuracy
    python -m client.score_client --url https://<aks-endpoint>/score --key <key>

The how-to built its body with str(list(array)), which under numpy 2 prints
`np.float64(...)` and is not JSON; this client sends `{"data": rows.tolist()}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import requests

from model import idx

DEFAULT_URL = "http://127.0.0.1:5001/score"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=DEFAULT_URL, help="scoring URI (default: %(default)s)")
    p.add_argument(
        "--key",
        default=os.environ.get("SCORING_KEY"),
        help="service key or token, sent as 'Authorization: Bearer <key>' (AKS); default: $SCORING_KEY, which other "
        "users cannot read from the process list as they can an argument",
    )
    p.add_argument("--data-dir", type=Path, default=idx.DEFAULT_DATA_DIR, help="t10k idx files (default: %(default)s)")
    p.add_argument("--count", type=int, default=1, help="images to score (default: one random image)")
    p.add_argument("--batch", type=int, default=500, help="images per request when --count > 1")
    p.add_argument("--seed", type=int, help="random seed for choosing images")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer")
    return p.parse_args(argv)


def score(url: str, rows: np.ndarray, key: str | None, timeout: float) -> list[int]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    response = requests.post(url, data=json.dumps({"data": rows.tolist()}), headers=headers, timeout=timeout)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text}")
    return response.json()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images, labels = idx.load_split(args.data_dir, "t10k")
    chosen = np.random.default_rng(args.seed).permutation(len(images))[: args.count]
    try:
        if args.count == 1:
            prediction = score(args.url, images[chosen], args.key, args.timeout)
            print("POST to url", args.url)
            print("label:", labels[chosen[0]])
            print("prediction:", prediction)
            return 0
        predictions = np.concatenate(
            [score(args.url, images[part], args.key, args.timeout) for part in _batches(chosen, args.batch)]
        )
    except (requests.RequestException, RuntimeError) as err:
        print(f"score_client: {err}", file=sys.stderr)
        return 1
    correct = int((predictions == labels[chosen]).sum())
    print(f"POST to url {args.url}: {len(chosen)} images, accuracy {correct / len(chosen):.4f}")
    return 0


def _batches(indices: np.ndarray, size: int) -> list[np.ndarray]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


if __name__ == "__main__":
    sys.exit(main())

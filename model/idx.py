"""Read MNIST-format idx files (the format Fashion-MNIST ships in too).

An idx file is a big-endian header (two zero bytes, a type code, the number of
dimensions, then one uint32 per dimension) followed by the raw array.  Files may
be gzip-compressed, as they are distributed.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist

_UBYTE = 0x08


class IdxError(ValueError):
    """The file is not an unsigned-byte idx file."""


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != _UBYTE:
        raise IdxError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise IdxError(f"{path}: header says shape {shape}, file holds {data.size} values")
    return data.reshape(shape)


def find_split(data_dir: Path, split: str, kind: str) -> Path:
    """Locate `<split>-<kind>-idx?-ubyte[.gz]`, e.g. t10k-images-idx3-ubyte.gz."""
    for name in (f"{split}-{kind}-idx{n}-ubyte{ext}" for n in (1, 3) for ext in (".gz", "")):
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"no {split}-{kind}-idx?-ubyte[.gz] in {data_dir}")


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 rows scaled to [0, 1] (as the how-to's client sends them), labels as int64."""
    images = read_idx(find_split(data_dir, split, "images"))
    labels = read_idx(find_split(data_dir, split, "labels"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise IdxError(f"{data_dir}: {split} images {images.shape} and labels {labels.shape} do not match")
    rows = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return rows, labels.astype(np.int64)

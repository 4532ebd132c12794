"""The data reader model/ builds and the client read t10k with (model/idx.py).  The model it builds: its layout,
names and accuracy, the how-to loads it, and the build program itself, tests/system/test_model_build.py."""

from __future__ import annotations

import numpy as np
import pytest

from model import idx


def test_idx_reader_accepts_gzipped_and_raw_files(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    (tmp_path / "raw-idx3-ubyte").write_bytes(header + array.tobytes())
    assert (idx.read_idx(tmp_path / "raw-idx3-ubyte") == array).all()
    with pytest.raises(idx.IdxError, match="not an unsigned-byte idx file"):
        (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
        idx.read_idx(tmp_path / "bad")
    with pytest.raises(idx.IdxError, match=r"header says shape \(2, 3, 4\), file holds 23 values"):
        (tmp_path / "short").write_bytes(header + array.tobytes()[:-1])
        idx.read_idx(tmp_path / "short")


def test_debian_fashion_mnist_is_read_as_28x28_images(t10k):
    images, labels = t10k
    assert images.shape == (10000, 784) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(np.unique(labels)) == set(range(10))

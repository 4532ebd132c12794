"""Data collection of a model with byte-string tensors: their values reach the collector as text (base64 where they
are not UTF-8), and what a waiting sample holds is counted with its strings, not only their pointers."""

from __future__ import annotations

import base64

import numpy as np

from tfscoring.interface import BYTES, TensorSpec
from tfscoring.observability import collection


def strings(*values: bytes) -> np.ndarray:
    array = np.empty(len(values), BYTES)
    array[:] = list(values)
    return array


def test_byte_strings_are_collected_as_text_base64_where_not_utf8():
    spec = TensorSpec("raw", "raw:0", BYTES, ())
    frame = collection._frame((spec,), (strings("héllo".encode(), b"\xff\x00"),))
    assert frame["raw"].tolist() == ["héllo", base64.b64encode(b"\xff\x00").decode()]


def test_a_sample_of_strings_counts_their_bytes():
    big = strings(b"x" * 1_000_000, b"")
    assert collection._held_bytes(big) >= 1_000_000 * 4 // 3
    assert collection._held_bytes(big) > collection._held_bytes(strings(b"", b""))

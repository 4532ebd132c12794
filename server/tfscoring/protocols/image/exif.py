"""EXIF orientation: read from an image's EXIF payload, and applied as Pillow's ImageOps.exif_transpose applies it
(to a decoded array, or to a Pillow image)."""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image


def orientation(exif: bytes | memoryview) -> int:
    """Tag 0x0112 of IFD0 in an APP1 Exif segment (b"Exif\\0\\0" + TIFF): 1-8, or 1 where absent or invalid."""
    tiff = memoryview(exif)[6:]
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(bytes(tiff[:4]))
    if order is None or len(tiff) < 8:
        return 1
    ifd = struct.unpack_from(order + "I", tiff, 4)[0]
    if ifd + 2 > len(tiff):
        return 1
    count = struct.unpack_from(order + "H", tiff, ifd)[0]
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind = struct.unpack_from(order + "HH", tiff, entry)
        if tag == 0x0112 and kind == 3:
            value = struct.unpack_from(order + "H", tiff, entry + 8)[0]
            return value if 1 <= value <= 8 else 1
    return 1


def oriented(array: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation as Pillow's ImageOps.exif_transpose applies it, on a (H, W, C) array (views)."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, -1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, 1)
    return array


TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

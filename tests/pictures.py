"""Small encoded images for the tests: a picture in any format Pillow writes (several frames too), and a JPEG whose
frame header declares another size than its data (a decompression bomb's header, a few hundred bytes)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def picture(height: int, width: int, kind: str = "JPEG", frames: int = 1) -> bytes:
    """A grey picture of a pattern (each frame shifted, so that no encoder merges two frames)."""
    pattern = np.arange(height * width).reshape(height, width) * 7
    images = [Image.fromarray(((pattern + 40 * k) % 256).astype(np.uint8)) for k in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, kind, **({"save_all": True, "append_images": images[1:]} if frames > 1 else {}))
    return buffer.getvalue()


def jpeg_declaring(height: int, width: int) -> bytes:
    """An 8 x 8 JPEG whose frame header (SOF0) says `height` x `width`."""
    body = bytearray(picture(8, 8))
    at = body.index(b"\xff\xc0") + 5  # marker, length (2), precision (1): then height and width
    body[at : at + 4] = struct.pack(">HH", height, width)
    return bytes(body)

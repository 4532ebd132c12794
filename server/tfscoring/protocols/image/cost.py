"""The memory an image's decode takes, from its header alone: every buffer a path allocates, added up as if none
were freed (see header.ImageHeader.decoded_bytes)."""

from __future__ import annotations

import math

import numpy as np
from PIL import PngImagePlugin

from tfscoring.protocols.image.layout import ImageLayout

# Fixed allowance in every decoded_bytes for the codecs' own state (libjpeg, zlib, libwebp), Pillow's
# read blocks and the allocator's rounding.
CODEC_BYTES = 4 << 20
# 16-bit samples are scaled to 8 bits this many pixels at a time (in int32), not in one wide copy.
CHUNK_PIXELS = 1 << 18
# WebP through Pillow, bytes per canvas pixel: libwebp's own ARGB buffer (lossless) and alpha plane, the
# animation decoder's two RGBA canvases, the bytes Pillow copies them into, and Pillow's image.
_WEBP_BYTES_PER_PIXEL = 4 + 1 + 8 + 4 + 4
# Metadata bytes, each copy added up: PNG: _safe_read's blocks and their join, the split key and value, the str
# Pillow keeps; WebP: get_chunk's bytes and a margin.
_PNG_METADATA_COPIES = 4
_WEBP_METADATA_COPIES = 2
# A compressed PNG chunk, in MAX_TEXT_CHUNKs: the decompressed bytes and the str (measured: +1.05 MiB a chunk).
_PNG_INFLATED_COPIES = 2


def jpeg_blocks(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """8x8 blocks of every component, padded to whole MCUs as libjpeg allocates its coefficient arrays."""
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)
    total = 0
    for h, v in sampling:
        wide = -(-math.ceil(width * h / hmax) // 8)
        high = -(-math.ceil(height * v / vmax) // 8)
        total += (-(-wide // h) * h) * (-(-high // v) * v)
    return total


def _tail(src_width: int, src_height: int, layout: ImageLayout, dtype: np.dtype) -> int:
    """The resize from a src-sized image in the layout's mode (when the size differs), the uint8 row Pillow's
    tobytes gives and the row in the input's dtype."""
    out_height, out_width = layout.height or src_height, layout.width or src_width
    row = out_height * out_width * layout.channels
    cost = row + row * dtype.itemsize + 8 * CHUNK_PIXELS  # and np.take's intp indices, a chunk at a time
    if (out_width, out_height) != (src_width, src_height):
        pixel = 1 if layout.channels == 1 else 4  # Pillow keeps 1 byte a pixel for L, 4 for RGB and RGBA
        # The output image, the horizontal pass's image (out_width x src_height), and the coefficient
        # windows (at most 2 * in / out + 3 doubles per output pixel, each way) and their bounds.
        cost += out_height * out_width * pixel + out_width * src_height * pixel
        cost += 16 * (src_width + src_height) + 40 * (out_width + out_height)
    return cost


def png_cost(width: int, height: int, color: int, depth: int, layout: ImageLayout, dtype: np.dtype) -> int:
    pixels = width * height
    target = 1 if layout.channels == 1 else 4
    pixel = 1 if color in (0, 3) else 4  # Pillow's L, 1 and P: 1 byte a pixel; RGB, RGBA and LA: 4
    cost = pixels * pixel + 16 * height  # the image and Pillow's row pointers
    cost += 4 * (width * 8 + 1)  # the decoder's current and previous rows (8 bytes a pixel at most)
    if color == 0 and depth == 16:  # I;16 (2 bytes a pixel): its bytes, the uint8 copy, int32 chunks
        cost += pixels * 2 + pixels * 2 + pixels + 2 * 4 * CHUNK_PIXELS
    elif color == 3:  # palette -> RGBA
        cost += pixels * 4
    cost += pixels * target  # the conversion to the input's mode
    return CODEC_BYTES + cost + _tail(width, height, layout, dtype)


def webp_cost(width: int, height: int, layout: ImageLayout, dtype: np.dtype) -> int:
    pixels = width * height
    target = 1 if layout.channels == 1 else 4
    cost = pixels * _WEBP_BYTES_PER_PIXEL + 16 * height + pixels * target
    return CODEC_BYTES + cost + _tail(width, height, layout, dtype)


def png_metadata_cost(metadata: int, compressed: int, largest: int) -> int:
    """Pillow's copies of a PNG's metadata chunks (`metadata` bytes of data, `compressed` of them zTXt, iTXt or
    iCCP, each inflating to MAX_TEXT_CHUNK at most), and its read of the largest other chunk but IDAT (read in
    blocks, then joined)."""
    inflated = compressed * _PNG_INFLATED_COPIES * PngImagePlugin.MAX_TEXT_CHUNK
    return metadata * _PNG_METADATA_COPIES + inflated + 2 * largest


def webp_extra(body_bytes: int, metadata: int) -> int:
    """Pillow's WebP besides the pixels: libwebp's copy of the whole body (WebPAnimDecoder), and the EXIF, ICCP
    and XMP chunks copied out of it."""
    return body_bytes + metadata * _WEBP_METADATA_COPIES


def jpeg_cost(
    width: int,
    height: int,
    scaled_width: int,
    scaled_height: int,
    channels: int,
    rotated: bool,
    transposed: bool,
    blocks: int,
    components: int,
    layout: ImageLayout,
    dtype: np.dtype,
) -> int:
    pixels = scaled_width * scaled_height
    if transposed:  # the tail's sizes are the oriented image's (a free side takes it)
        scaled_width, scaled_height = scaled_height, scaled_width
    cost = pixels * channels  # simplejpeg's array: GRAY, RGB, RGBA or CMYK
    cost += blocks * 64 * 2  # the whole image's coefficients (int16), progressive or multi-scan
    cost += 64 * width * components  # libjpeg's row buffers: a few MCU rows of every component
    cost += pixels * channels if rotated else 0  # EXIF orientation's contiguous copy
    cost += pixels * 4 * 2  # a Pillow image of it (4 bytes a pixel), converted (CMYK) or resized
    return CODEC_BYTES + cost + _tail(scaled_width, scaled_height, layout, dtype)


def orientation_cost(width: int, height: int, orientation: int) -> int:
    """Pillow's transposed copy of the converted image (at most 4 bytes a pixel), where EXIF turns it."""
    return 4 * width * height if orientation > 1 else 0

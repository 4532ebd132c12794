"""Image request bodies (image/png, image/jpeg, image/webp): one image becomes a batch of one row.

Which inputs take an image (row shape, batch dimension left out; H or W may be free, -1):
- (H, W, C) with C = 1 (grayscale), 3 (RGB) or 4 (RGBA); a free C counts as 3;
- (H, W): grayscale;
- (H*W,): grayscale flattened, where H*W is a square > 1, e.g. the how-to's MNIST input (N, 784) = 28x28.
Anything else, and a bool or int8 input, is refused (400).

The format is read from the bytes, not the content type: a PNG, JPEG or WebP body is accepted under any of
the three types (a PNG sent as image/jpeg works); other formats (GIF, BMP, TIFF, ...) are refused.

Two steps, so that the cost is known and bounded before any pixel is decoded:
- `inspect(body, spec)` reads the header in Python, in time bounded by small caps: the JPEG marker segments
  up to the image data (at most MAX_JPEG_SEGMENTS), the PNG chunk headers (at most 64 + len(body) // 4096;
  encoders write IDAT chunks of 8-64 KiB) and the WebP RIFF chunks.  Over `max_pixels` (width x height) or
  a side over MAX_SIDE is a 413; a JPEG with more than MAX_JPEG_SCANS scans, or a structure no encoder
  writes, is a worded 400; so is one whose metadata (PNG ancillary chunks, WebP EXIF, ICCP and XMP), which
  Pillow copies, holds over MAX_METADATA_BYTES, or a PNG of more than MAX_PNG_COMPRESSED compressed chunks.
  Its `ImageHeader.decoded_bytes` is an upper bound of the memory the decode takes (every buffer of the path
  added up as if none were freed, the metadata's copies and libwebp's copy of a WebP body included: see
  `_png_cost`, `_png_metadata_cost`, `_webp_extra`, `_jpeg_cost`).
- `decode(header, spec, scale)` does the work.  JPEG goes through simplejpeg (libjpeg-turbo): it releases
  the GIL while it decodes, is strict (a premature end of data or a corrupt scan is a 400, where Pillow
  answered a grey-filled image), and decodes at 1/2 to 1/8 scale where the input's H and W are fixed and
  that much smaller.  PNG and WebP go through Pillow.

Bounds, measured on 2 cores by bench/gil_hold.py (bench/results/gil-hold.md): at the limits (4096 x 4096
noise, or a 16384-pixel side) no decode holds the GIL longer than 50 ms (WebP through Pillow, 35-45 ms;
JPEG and PNG under 15 ms), and every decode's peak RSS growth is under its `decoded_bytes` (WebP is the
costliest: about 20 bytes a pixel in Pillow and libwebp, 0.32 GB at 4096 x 4096).

MAX_SIDE exists because Pillow keeps a pointer and makes a decoder call per row, and its resize precomputes,
per output pixel, a window of coefficients as wide as the shrink factor: a 32 KB PNG 1 pixel wide and
16,777,216 high took 0.7 s and +152 MB to load, then 0.43 s and +270 MB to resize to 28 x 28 (369 ms of GIL
held at once, +419 MB in all; resize's reducing_gap cuts the resize to 30 ms, not the load).  Refusing a
side over 16384 costs nothing and still takes any panorama a camera or phone writes.

An animated image gives its first frame (an APNG or animated WebP: only that frame is decoded, the
others are never read); EXIF orientation is applied (JPEG: the first APP1 Exif segment, as Pillow
reads it; applied to the small decoded array); palette, 1-bit, CMYK and alpha modes are converted
(alpha is dropped, as Pillow's convert and Keras' load_img do); 16-bit grayscale is scaled to 0-255.  The
image is resized to the input's H x W where they are fixed (a free one keeps the image's own).  Pixels
reach a float input scaled by IMAGE_SCALE (unit = /255, signed = /127.5 - 1, raw = 0-255 as they are),
and an integer input raw.  Broken, truncated or unknown bodies are a worded 400, never an exception.

JPEG pixels against Pillow's (both libjpeg-turbo, islow DCT, fancy upsampling; tests/unit/test_images.py):
identical at full scale for an RGB input, for a grayscale JPEG (the how-to's case) and for CMYK; a grayscale
input takes a colour JPEG's luma (Y) plane, identical to Pillow's RGB -> L on a smooth picture, while on
colour noise a few pixels differ where Pillow's upsampled RGB clips (up to 16 levels at 4:2:0, mean under
0.1).  Where DCT scaling applies (a fixed H x W at least 2x smaller) the pixels are libjpeg's scaled IDCT
then the bilinear resize, as Pillow's draft() gave before.
"""

from __future__ import annotations

import io
import math
import re
import struct
from dataclasses import dataclass, field

import numpy as np
import simplejpeg
from PIL import Image, PngImagePlugin

from tfscoring.errors import BadRequest, PayloadTooLarge, ScoringError
from tfscoring.interface import TensorSpec
from tfscoring.protocols import containers

CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp")
MAX_PIXELS = 4096 * 4096
# The longest side taken (see the module docstring): 4 x the square limit's, e.g. a 16384 x 1024 panorama.
MAX_SIDE = 16384
# JPEG marker segments before the first scan: real files have under 300 even with a chunked ICC profile
# (and Pillow parses each in a Python loop, libjpeg in C: 16.5 M empty APP1 segments took Pillow 48 s).
MAX_JPEG_SEGMENTS = 1024
# JPEG scans: libjpeg's progressive script writes 10 (6 for grayscale), mozjpeg's optimised ones about 20;
# each scan is a pass over the whole image's coefficients, so 64 bounds that work at ~6x a normal file's.
MAX_JPEG_SCANS = 64
# PNG chunks: a base for the ancillary ones, plus one IDAT per 4 KiB of body (encoders write 8-64 KiB).
PNG_CHUNKS_BASE = 64
PNG_CHUNK_BODY = 4096
SCALES = ("unit", "signed", "raw")
# Metadata: Pillow reads every PNG ancillary chunk (text, EXIF, ICC, XMP, private chunks...) into bytes and keeps
# it in `info` (decompressing zTXt, iTXt and iCCP up to PngImagePlugin.MAX_TEXT_CHUNK, 1 MiB, each), and copies a
# WebP's EXIF, ICCP and XMP chunks out of libwebp's copy of the body: memory no pixel accounts for (a 66 KB PNG of
# 63 zTXt chunks took +66 MiB, a 60 MiB eXIf chunk +121 MiB).  Real photos carry an ICC profile of a few KB
# (rarely over 500 KB), EXIF under 64 KB (JPEG's APP1 limit, thumbnail included) and an XMP packet of a few KB
# to a few hundred, so a body whose metadata chunks hold more than MAX_METADATA_BYTES of data is refused (400),
# and what remains is counted in decoded_bytes.
MAX_METADATA_BYTES = 1 << 20
# PNG zTXt, iTXt and iCCP chunks: each may decompress to MAX_TEXT_CHUNK whatever its size (1 KB of zlib makes
# 1 MiB), so they are counted at that and at most this many are taken (an ICC profile and a few texts: ImageMagick
# writes up to 4 "Raw profile" zTXt chunks, EXIF, IPTC, XMP and 8BIM).
MAX_PNG_COMPRESSED = 8

# Fixed allowance in every decoded_bytes for the codecs' own state (libjpeg, zlib, libwebp), Pillow's
# read blocks and the allocator's rounding.
_CODEC_BYTES = 4 << 20
# 16-bit samples are scaled to 8 bits this many pixels at a time (in int32), not in one wide copy.
_CHUNK_PIXELS = 1 << 18
# WebP through Pillow, bytes per canvas pixel: libwebp's own ARGB buffer (lossless) and alpha plane, the
# animation decoder's two RGBA canvases, the bytes Pillow copies them into, and Pillow's image.
_WEBP_BYTES_PER_PIXEL = 4 + 1 + 8 + 4 + 4
# PNG chunks that make the pixels (the APNG ones included: only the first frame is decoded, the others are read
# and dropped a chunk at a time); any other chunk is metadata (MAX_METADATA_BYTES).
_PNG_IMAGE_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"acTL", b"fcTL", b"fdAT"}
_PNG_COMPRESSED = {b"zTXt", b"iTXt", b"iCCP"}  # iTXt may be compressed: counted as if it were
_WEBP_METADATA = {b"EXIF", b"ICCP", b"XMP "}  # the chunks Pillow copies into `info`; libwebp skips the others
# Metadata bytes, each copy added up: PNG: _safe_read's blocks and their join, the split key and value, the str
# Pillow keeps; WebP: get_chunk's bytes and a margin.
_PNG_METADATA_COPIES = 4
_WEBP_METADATA_COPIES = 2
# A compressed PNG chunk, in MAX_TEXT_CHUNKs: the decompressed bytes and the str (measured: +1.05 MiB a chunk).
_PNG_INFLATED_COPIES = 2

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_IMAGE_SHAPES = "(H, W, C) with C = 1, 3 or 4, (H, W) grayscale, or (H*W,) grayscale flattened with H*W a square > 1"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_KINDS = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
# SOF markers libjpeg-turbo's 8-bit decoder takes: baseline, extended, progressive, and their arithmetic forms.
_JPEG_SOF_TAKEN = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC9: "arithmetic", 0xCA: "progressive"}
_JPEG_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless and hierarchical
_FILL = re.compile(rb"\xff+")


@dataclass(frozen=True)
class ImageLayout:
    """How one image fills one row of an input: its size (None where free), channels, and row form."""

    height: int | None
    width: int | None
    channels: int  # 1, 3 or 4
    form: str  # "hwc", "hw" or "flat"

    @property
    def mode(self) -> str:
        return _MODES[self.channels]

    def row_shape(self, height: int, width: int) -> tuple[int, ...]:
        if self.form == "hwc":
            return (height, width, self.channels)
        if self.form == "hw":
            return (height, width)
        return (height * width,)


@dataclass(frozen=True)
class ImageHeader:
    """What `inspect` read from an image's header: enough to know the decode's cost before it runs.

    `decoded_bytes` is an upper bound of the memory `decode` takes for the spec it was inspected for: the
    codec's output (JPEG: at its DCT-scaled size) and its working buffers (a progressive or multi-scan JPEG's
    whole-image coefficients, Pillow's row pointers), each conversion (palette -> RGBA, 16-bit -> 8-bit, a
    Pillow image of the array), EXIF rotation's copy, the resize (its intermediate image and coefficients),
    the uint8 row and the row in the input's dtype, plus a fixed _CODEC_BYTES, all added up as if none were
    freed; and what Pillow copies besides (PNG: the metadata chunks, each compressed one at MAX_TEXT_CHUNK, and
    the largest other chunk it reads whole; WebP: libwebp's copy of the body and the EXIF, ICCP and XMP chunks).
    A JPEG's APPn segments cost nothing: libjpeg skips them and the EXIF orientation is read through a view.
    """

    format: str  # "PNG", "JPEG" or "WEBP"
    width: int
    height: int
    kind: str  # e.g. "8-bit RGB", "16-bit grayscale", "progressive YCbCr", "lossy", for messages
    frames: int  # 1, or the frames an animation declares: only the first is decoded
    decoded_bytes: int
    body: bytes = field(repr=False)
    # JPEG only: the size simplejpeg decodes to (DCT-scaled), its colorspace, and the EXIF orientation (1-8).
    scaled_width: int = 0
    scaled_height: int = 0
    colorspace: str = ""
    orientation: int = 1


def image_layout(spec: TensorSpec) -> ImageLayout:
    """The layout an image takes in `spec`, or BadRequest saying why the input does not take images."""

    def refuse(why: str) -> BadRequest:
        return BadRequest(f"the model's input {spec.name!r} {spec.datatype} {spec.shown()} does not take images: {why}")

    if spec.dtype == np.bool_:
        raise refuse("it is bool; image inputs are float or integer")
    if spec.dtype == np.int8:
        raise refuse("it is int8, which cannot hold pixel values 0-255")
    shape = spec.shape
    if any(n == 0 or n < -1 for n in shape):
        raise refuse(f"an image input's row shape is {_IMAGE_SHAPES}")

    def free(n: int) -> int | None:
        return None if n == -1 else n

    if len(shape) == 3 and shape[2] in (-1, 1, 3, 4):
        return ImageLayout(free(shape[0]), free(shape[1]), 3 if shape[2] == -1 else shape[2], "hwc")
    if len(shape) == 2:
        return ImageLayout(free(shape[0]), free(shape[1]), 1, "hw")
    if len(shape) == 1 and shape[0] > 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        return ImageLayout(side, side, 1, "flat")
    raise refuse(f"an image input's row shape is {_IMAGE_SHAPES}")


def decoded_bytes(spec: TensorSpec, body_bytes: int = 0) -> int:
    """The most memory decoding one image for `spec` may take, known before the body is read: the largest
    `ImageHeader.decoded_bytes` of any image `inspect` lets through at MAX_PIXELS and MAX_SIDE, whatever its
    format, mode, shape and metadata, for a body of `body_bytes` (libwebp's copy of a WebP body is counted)."""
    try:
        layout = image_layout(spec)
    except BadRequest:
        return 0  # refused before any pixel is decoded
    shapes = ((4096, 4096), (MAX_SIDE, MAX_PIXELS // MAX_SIDE), (MAX_PIXELS // MAX_SIDE, MAX_SIDE))
    worst = 0
    for width, height in shapes:
        for png_type, depth in ((3, 8), (0, 16), (6, 16), (4, 8)):
            cost = _png_cost(width, height, png_type, depth, layout, spec.dtype)
            worst = max(worst, cost + _png_metadata_cost(MAX_METADATA_BYTES, MAX_PNG_COMPRESSED, body_bytes))
        worst = max(worst, _webp_cost(width, height, layout, spec.dtype) + _webp_extra(body_bytes, MAX_METADATA_BYTES))
        # A progressive CMYK 4:4:4 JPEG (the most coefficients), rotated, decoded at the DCT scale libjpeg is
        # sure to take for a fixed input (powers of 2; simplejpeg may take a finer k/8, only ever smaller).
        blocks = _jpeg_blocks(width, height, [(1, 1)] * 4)
        factor = 8
        side = max(layout.height, layout.width) if layout.height and layout.width else MAX_SIDE
        while factor > 1 and -(-min(width, height) // factor) < side:
            factor //= 2
        scaled = (-(-width // factor), -(-height // factor))
        worst = max(worst, _jpeg_cost(width, height, *scaled, 4, True, False, blocks, 4, layout, spec.dtype))
    return worst


def takes_images(spec: TensorSpec) -> bool:
    try:
        image_layout(spec)
    except BadRequest:
        return False
    return True


def decode_image(body: bytes, spec: TensorSpec, scale: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One PNG, JPEG or WebP image as a batch of one row of `spec`: shape (1, *row shape), spec's dtype."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")  # IMAGE_SCALE is validated by config
    return decode(inspect(body, spec, max_pixels), spec, scale)


# The header: cheap, bounded, before any pixel


def inspect(body: bytes, spec: TensorSpec, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """Reads and checks the header of a PNG, JPEG or WebP body for `spec`, in time bounded by the caps of
    the module docstring: BadRequest for a body that is not a valid image of the three, PayloadTooLarge for
    one over `max_pixels` or MAX_SIDE.  No pixel is decoded."""
    layout = image_layout(spec)
    where = f"for input {spec.name!r} {spec.shown()}"
    if not body:
        raise BadRequest(f"body is empty; expected a PNG, JPEG or WebP image {where}")
    body = bytes(body)
    if body.startswith(_PNG_SIGNATURE):
        header = _png_header(body, layout, spec, where)
    elif body.startswith(b"\xff\xd8\xff"):
        header = _jpeg_header(body, layout, spec, where, max_pixels)
    elif body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        header = _webp_header(body, layout, spec, where)
    else:
        raise BadRequest(f"body is not a PNG, JPEG or WebP image {where} (other formats are refused)")
    _check_size(header.width, header.height, max_pixels, where)
    return header


def _check_size(width: int, height: int, max_pixels: int, where: str) -> None:
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels {where}; "
            f"the limit is {max_pixels} pixels (width x height)"
        )
    if max(width, height) > MAX_SIDE:
        raise PayloadTooLarge(f"image is {width}x{height} {where}; the limit is {MAX_SIDE} pixels a side")


def _invalid(where: str, why: str) -> BadRequest:
    return BadRequest(f"body is not a valid PNG, JPEG or WebP image {where}: {why}")


def _png_header(body: bytes, layout: ImageLayout, spec: TensorSpec, where: str) -> ImageHeader:
    """Walks the chunk headers (length and type; the data and CRCs are Pillow's and zlib's to check), adding up
    the metadata chunks' data (MAX_METADATA_BYTES, MAX_PNG_COMPRESSED)."""
    limit = PNG_CHUNKS_BASE + len(body) // PNG_CHUNK_BODY
    pos, chunks, ihdr, idat, frames = 8, 0, None, False, 1
    metadata, compressed, largest, exif = 0, 0, 0, None
    while True:
        if pos + 8 > len(body):
            raise _invalid(where, "the PNG is truncated: it ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", body, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(body):
            raise _invalid(where, f"the PNG is truncated: its {kind!r} chunk runs past the end of the body")
        chunks += 1
        if chunks > limit:
            raise BadRequest(
                f"PNG image has more than {limit} chunks {where}; the limit is {PNG_CHUNKS_BASE} + 1 per "
                f"{PNG_CHUNK_BODY} bytes of body (encoders write image data in chunks of 8-64 KiB)"
            )
        if ihdr is None:
            if kind != b"IHDR" or length != 13:
                raise _invalid(where, "the PNG does not start with its IHDR chunk")
            ihdr = struct.unpack_from(">IIBBBBB", body, pos + 8)
        elif kind == b"IDAT":
            idat = True
        elif kind == b"acTL" and length >= 8:
            frames = max(1, struct.unpack_from(">I", body, pos + 8)[0])
        elif kind == b"eXIf" and exif is None:
            exif = (pos + 8, length)
        elif kind == b"IEND":
            break
        if kind not in _PNG_IMAGE_CHUNKS:
            metadata += length
            compressed += kind in _PNG_COMPRESSED
            if metadata > MAX_METADATA_BYTES or compressed > MAX_PNG_COMPRESSED:
                raise BadRequest(
                    f"PNG image carries more metadata than is taken {where}: its chunks other than the image's "
                    f"({_names(_PNG_IMAGE_CHUNKS)}) may hold {MAX_METADATA_BYTES} bytes in all, at most "
                    f"{MAX_PNG_COMPRESSED} of them compressed (zTXt, iTXt, iCCP); real photos carry an ICC profile "
                    "and EXIF of a few KB"
                )
        elif kind != b"IDAT":
            largest = max(largest, length)  # read whole (fdAT of frames not decoded: one at a time)
        pos = end
    width, height, depth, color, compression, filtering, interlace = ihdr
    if color not in _PNG_DEPTHS or depth not in _PNG_DEPTHS[color] or compression or filtering or interlace > 1:
        raise _invalid(where, f"the PNG's header is invalid (bit depth {depth}, colour type {color})")
    if not (width and height):
        raise _invalid(where, f"the PNG is {width}x{height}")
    if not idat:
        raise _invalid(where, "the PNG has no image data (IDAT)")
    kind = f"{depth}-bit {_PNG_KINDS[color]}" + (" interlaced" if interlace else "")
    orientation = _exif_orientation(b"Exif\0\0" + body[exif[0] : exif[0] + exif[1]]) if exif else 1
    cost = _png_cost(width, height, color, depth, layout, spec.dtype)
    cost += _png_metadata_cost(metadata, compressed, largest) + _orientation_cost(width, height, orientation)
    return ImageHeader("PNG", width, height, kind, frames, cost, body, orientation=orientation)


def _webp_header(body: bytes, layout: ImageLayout, spec: TensorSpec, where: str) -> ImageHeader:
    """The RIFF header and the first chunk's (VP8, VP8L or VP8X) width and height; the chunks: an animation's
    frames, the metadata's size (MAX_METADATA_BYTES)."""
    riff = struct.unpack_from("<I", body, 4)[0]
    if riff + 8 > len(body) or riff < 12:
        raise _invalid(where, f"the WebP is truncated: its RIFF header says {riff + 8} bytes, the body has {len(body)}")
    end = riff + 8
    if end < 20:
        raise _invalid(where, "the WebP has no image chunk")
    kind, length = struct.unpack_from("<4sI", body, 12)
    data = body[20 : 20 + min(length, 30)]
    frames = 1
    if kind == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", data, 6))
        name = "lossy"
    elif kind == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = struct.unpack_from("<I", data, 1)[0]
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        name = "lossless"
    elif kind == b"VP8X" and len(data) >= 10:
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        name = "animated" if data[0] & 0x02 else "extended"
    else:
        raise _invalid(where, f"the WebP's first chunk {kind!r} is not a valid VP8, VP8L or VP8X header")
    # Every chunk, walked and checked (containers.py): libwebp's demuxer keeps a record per chunk, holding the GIL.
    try:
        info = containers.check_webp(body, max_frames=PNG_CHUNKS_BASE + len(body) // PNG_CHUNK_BODY)
    except containers.ContainerError as err:
        raise _invalid(where, str(err)) from None
    anmf, metadata = info.frames, info.iccp_bytes + info.exif_bytes + info.xmp_bytes
    if metadata > MAX_METADATA_BYTES:
        raise BadRequest(
            f"WebP image carries {metadata} bytes of metadata {where} (EXIF, ICCP and XMP chunks); the limit is "
            f"{MAX_METADATA_BYTES} (real photos carry an ICC profile and EXIF of a few KB)"
        )
    if name == "animated":
        frames = anmf
        if not frames:
            raise _invalid(where, "the animated WebP has no frame")
    exif = containers.webp_exif(body, info)
    orientation = _exif_orientation(exif) if exif else 1
    cost = _webp_cost(width, height, layout, spec.dtype) + _webp_extra(len(body), metadata)
    cost += _orientation_cost(width, height, orientation)
    return ImageHeader("WEBP", width, height, name, frames, cost, body, orientation=orientation)


def _jpeg_header(body: bytes, layout: ImageLayout, spec: TensorSpec, where: str, max_pixels: int) -> ImageHeader:
    """Walks the marker segments from SOI to the first SOS (at most MAX_JPEG_SEGMENTS), counts the scans, then
    asks libjpeg (simplejpeg.decode_jpeg_header) for the colorspace and the DCT-scaled size."""
    pos, segments, sof, exif = 2, 0, None, None
    while True:
        fill = _FILL.match(body, pos)
        if fill is None:
            if pos >= len(body):
                raise _invalid(where, "the JPEG is truncated: it ends before its image data")
            raise _invalid(where, f"the JPEG has no marker where one is due (byte {pos})")
        pos = fill.end()
        if pos >= len(body):
            raise _invalid(where, "the JPEG is truncated: it ends before its image data")
        marker = body[pos]
        pos += 1
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise BadRequest(
                f"JPEG image has more than {MAX_JPEG_SEGMENTS} marker segments before its image data {where}; "
                f"the limit is {MAX_JPEG_SEGMENTS} (real files have under 300)"
            )
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # standalone markers, no length
        if marker in (0x00, 0xD8, 0xD9):
            raise _invalid(where, "the JPEG ends or restarts before its image data")
        if pos + 2 > len(body):
            raise _invalid(where, "the JPEG is truncated: it ends before its image data")
        length = struct.unpack_from(">H", body, pos)[0]
        if length < 2 or pos + length > len(body):
            raise _invalid(where, "the JPEG is truncated: a marker segment runs past the end of the body")
        if marker in _JPEG_SOF_OTHER:
            raise _invalid(where, "lossless and hierarchical JPEGs are not supported")
        if marker in _JPEG_SOF_TAKEN:
            if sof is not None:
                raise _invalid(where, "the JPEG has two frame headers (SOF)")
            sof = (marker, body[pos + 2 : pos + length])
        elif marker == 0xE1 and exif is None and body.startswith(b"Exif\x00\x00", pos + 2):
            exif = memoryview(body)[pos + 2 : pos + length]  # a view: no copy of up to 64 KB
        elif marker == 0xDA:
            break
        pos += length
    if sof is None:
        raise _invalid(where, "the JPEG has no frame header (SOF) before its image data")
    marker, frame = sof
    if len(frame) < 6 or len(frame) < 6 + 3 * frame[5]:
        raise _invalid(where, "the JPEG's frame header (SOF) is invalid")
    precision, height, width, components = struct.unpack_from(">BHHB", frame)
    if precision != 8:
        raise _invalid(where, f"{precision}-bit JPEGs are not supported, only 8-bit")
    if not (width and height) or components not in (1, 3, 4):
        raise _invalid(where, f"the JPEG's frame header says {width}x{height} with {components} components")
    _check_size(width, height, max_pixels, where)  # before libjpeg reads the header again
    sampling = [(frame[7 + 3 * i] >> 4, frame[7 + 3 * i] & 15) for i in range(components)]
    if any(not (1 <= h <= 4 and 1 <= v <= 4) for h, v in sampling):
        raise _invalid(where, "the JPEG's sampling factors are invalid")
    # SOS markers from the first scan on: an upper bound of the scans, as entropy-coded data stuffs its 0xFF
    # bytes with 0x00 (an EXIF thumbnail's scan, before the first, is not counted).
    scans = _count_scans(body, pos - 2)
    if scans > MAX_JPEG_SCANS:
        raise BadRequest(
            f"JPEG image has {scans} scans {where}; the limit is {MAX_JPEG_SCANS} (each scan is a pass over the "
            "whole image; encoders write 1, or about 10 to 20 for a progressive JPEG)"
        )
    side = max(layout.height, layout.width) if layout.height and layout.width else 0
    try:
        # A square minimum keeps both sides at least the input's whichever way EXIF turns the image.
        scaled_height, scaled_width, colorspace, _ = simplejpeg.decode_jpeg_header(
            body, min_height=side, min_width=side, strict=True
        )
    except ValueError as err:
        raise _invalid(where, _first_line(err)) from None
    orientation = _exif_orientation(exif) if exif is not None else 1
    channels = 4 if colorspace in ("CMYK", "YCCK") else layout.channels
    whole = marker in (0xC2, 0xCA) or scans > 1  # libjpeg keeps the whole image's coefficients
    blocks = _jpeg_blocks(width, height, sampling) if whole else 0
    cost = _jpeg_cost(
        width,
        height,
        scaled_width,
        scaled_height,
        channels,
        orientation > 1,
        orientation > 4,
        blocks,
        components,
        layout,
        spec.dtype,
    )
    kind = f"{_JPEG_SOF_TAKEN[marker]} {colorspace}"
    return ImageHeader("JPEG", width, height, kind, 1, cost, body, scaled_width, scaled_height, colorspace, orientation)


def _count_scans(body: bytes, start: int) -> int:
    """SOS markers from `start`, counted a MiB at a time (so the GIL can pass between windows: a count of a
    whole 64 MiB body of noise holds it about 60 ms) and no further than MAX_JPEG_SCANS + 1."""
    scans = 0
    for window in range(start, len(body), 1 << 20):
        scans += body.count(b"\xff\xda", window, window + (1 << 20) + 1)  # a marker starting in the window
        if scans > MAX_JPEG_SCANS:
            break
    return scans


def _exif_orientation(exif: bytes | memoryview) -> int:
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


# The cost, from the header: every buffer a path allocates, added up


def _jpeg_blocks(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
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
    cost = row + row * dtype.itemsize + 8 * _CHUNK_PIXELS  # and np.take's intp indices, a chunk at a time
    if (out_width, out_height) != (src_width, src_height):
        pixel = 1 if layout.channels == 1 else 4  # Pillow keeps 1 byte a pixel for L, 4 for RGB and RGBA
        # The output image, the horizontal pass's image (out_width x src_height), and the coefficient
        # windows (at most 2 * in / out + 3 doubles per output pixel, each way) and their bounds.
        cost += out_height * out_width * pixel + out_width * src_height * pixel
        cost += 16 * (src_width + src_height) + 40 * (out_width + out_height)
    return cost


def _png_cost(width: int, height: int, color: int, depth: int, layout: ImageLayout, dtype: np.dtype) -> int:
    pixels = width * height
    target = 1 if layout.channels == 1 else 4
    pixel = 1 if color in (0, 3) else 4  # Pillow's L, 1 and P: 1 byte a pixel; RGB, RGBA and LA: 4
    cost = pixels * pixel + 16 * height  # the image and Pillow's row pointers
    cost += 4 * (width * 8 + 1)  # the decoder's current and previous rows (8 bytes a pixel at most)
    if color == 0 and depth == 16:  # I;16 (2 bytes a pixel): its bytes, the uint8 copy, int32 chunks
        cost += pixels * 2 + pixels * 2 + pixels + 2 * 4 * _CHUNK_PIXELS
    elif color == 3:  # palette -> RGBA
        cost += pixels * 4
    cost += pixels * target  # the conversion to the input's mode
    return _CODEC_BYTES + cost + _tail(width, height, layout, dtype)


def _webp_cost(width: int, height: int, layout: ImageLayout, dtype: np.dtype) -> int:
    pixels = width * height
    target = 1 if layout.channels == 1 else 4
    cost = pixels * _WEBP_BYTES_PER_PIXEL + 16 * height + pixels * target
    return _CODEC_BYTES + cost + _tail(width, height, layout, dtype)


def _png_metadata_cost(metadata: int, compressed: int, largest: int) -> int:
    """Pillow's copies of a PNG's metadata chunks (`metadata` bytes of data, `compressed` of them zTXt, iTXt or
    iCCP, each inflating to MAX_TEXT_CHUNK at most), and its read of the largest other chunk but IDAT (read in
    blocks, then joined)."""
    inflated = compressed * _PNG_INFLATED_COPIES * PngImagePlugin.MAX_TEXT_CHUNK
    return metadata * _PNG_METADATA_COPIES + inflated + 2 * largest


def _webp_extra(body_bytes: int, metadata: int) -> int:
    """Pillow's WebP besides the pixels: libwebp's copy of the whole body (WebPAnimDecoder), and the EXIF, ICCP
    and XMP chunks copied out of it."""
    return body_bytes + metadata * _WEBP_METADATA_COPIES


def _names(kinds: set[bytes]) -> str:
    return ", ".join(sorted(kind.decode() for kind in kinds))


def _jpeg_cost(
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
    return _CODEC_BYTES + cost + _tail(scaled_width, scaled_height, layout, dtype)


# The pixels


def decode(header: ImageHeader, spec: TensorSpec, scale: str) -> np.ndarray:
    """Decodes an image `inspect` read for `spec`: a batch of one row, shape (1, *row shape), spec's dtype."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
    layout = image_layout(spec)
    where = f"for input {spec.name!r} {spec.shown()}"
    try:
        pixels = _jpeg_pixels(header, layout) if header.format == "JPEG" else _pillow_pixels(header, layout, where)
    except ScoringError:
        raise  # already worded
    except (TimeoutError, MemoryError):
        raise  # the server's SCORING_TIMEOUT_MS alarm (an OSError) and a full machine are not the client's fault
    except Image.DecompressionBombError as err:  # over Pillow's own limit (2 x Image.MAX_IMAGE_PIXELS)
        raise PayloadTooLarge(f"image is too large {where}: {_first_line(err)}") from None
    except Image.DecompressionBombWarning as err:  # only where warnings are errors: over Image.MAX_IMAGE_PIXELS
        raise PayloadTooLarge(f"image is too large {where}: {_first_line(err)}") from None
    except Exception as err:  # Pillow: OSError, SyntaxError, EOFError, zlib.error...; simplejpeg: ValueError
        raise _invalid(where, _first_line(err)) from None
    height, width = pixels.shape[:2]
    row = pixels.reshape(layout.row_shape(height, width))
    # Each of the 256 pixel values mapped once (computed in float64, rounded once to the input's dtype).
    table = np.arange(256, dtype=np.float64)
    if spec.dtype.kind == "f":
        table = {"unit": table / 255.0, "signed": table / 127.5 - 1.0, "raw": table}[scale]
    table = table.astype(spec.dtype)
    batch = np.empty((1, *row.shape), spec.dtype)
    values, out = row.reshape(-1), batch.reshape(-1)
    for start in range(0, values.size, _CHUNK_PIXELS):  # np.take makes its indices intp: 8 bytes each, a chunk
        end = start + _CHUNK_PIXELS
        np.take(table, values[start:end], out=out[start:end])
    return batch


def _jpeg_pixels(header: ImageHeader, layout: ImageLayout) -> np.ndarray:
    """simplejpeg (libjpeg-turbo, the GIL released, strict) at the DCT-scaled size, then EXIF orientation on the
    small array; Pillow only converts CMYK and resizes."""
    cmyk = header.colorspace in ("CMYK", "YCCK")
    colorspace = "CMYK" if cmyk else {1: "GRAY", 3: "RGB", 4: "RGBA"}[layout.channels]
    side = max(layout.height, layout.width) if layout.height and layout.width else 0
    array = simplejpeg.decode_jpeg(header.body, colorspace=colorspace, min_height=side, min_width=side, strict=True)
    array = _oriented(array, header.orientation)
    if cmyk:
        array = np.subtract(255, array, out=array if array.flags.writeable else None)  # Adobe's inverted CMYK
        image = Image.fromarray(np.ascontiguousarray(array), "CMYK").convert(layout.mode)
    else:
        height, width = array.shape[:2]
        if (layout.height or height, layout.width or width) == (height, width):
            return array
        plane = array[:, :, 0] if layout.channels == 1 else array
        image = Image.fromarray(np.ascontiguousarray(plane), layout.mode)
    return _resized(image, layout)


def _oriented(array: np.ndarray, orientation: int) -> np.ndarray:
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


def _pillow_pixels(header: ImageHeader, layout: ImageLayout, where: str) -> np.ndarray:
    image = Image.open(io.BytesIO(header.body), formats=(header.format,))  # the header: Pillow's own size checks
    if image.size != (header.width, header.height):
        width, height = image.size
        raise _invalid(where, f"Pillow reads {width}x{height}, the header {header.width}x{header.height}")
    png = None
    if header.format == "PNG":  # Pillow takes missing rows as zeros, a bad checksum, data past the end: check first
        chunks = PNG_CHUNKS_BASE + len(header.body) // PNG_CHUNK_BODY
        png = containers.check_png(header.body, chunks, header.width * header.height)  # the size inspect accepted
    image.load()  # decodes the first frame's pixels: truncated or corrupt data raises here
    short_palette = png and png.color_type == 3 and png.palette_entries < 2**png.bit_depth
    if short_palette and image.getextrema()[1] >= png.palette_entries:  # Pillow would paint such pixels black
        raise _invalid(where, f"the PNG's pixels index past its palette's {png.palette_entries} entries")
    image = _converted(image, layout.mode)
    if header.orientation > 1:  # EXIF orientation, as ImageOps.exif_transpose applies it
        image = image.transpose(_TRANSPOSES[header.orientation])
    return _resized(image, layout)


_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation_cost(width: int, height: int, orientation: int) -> int:
    """Pillow's transposed copy of the converted image (at most 4 bytes a pixel), where EXIF turns it."""
    return 4 * width * height if orientation > 1 else 0


def _resized(image: Image.Image, layout: ImageLayout) -> np.ndarray:
    height = layout.height or image.height
    width = layout.width or image.width
    if image.size != (width, height):
        # BILINEAR: tf.image.resize's default, so closest to how most models' training images were
        # resized; Pillow widens its support when shrinking, so it is antialiased, and unlike LANCZOS
        # it does not ring (overshoot) around sharp edges such as pen strokes, and costs less.
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _converted(image: Image.Image, mode: str) -> Image.Image:
    if image.mode.startswith("I"):  # 16-bit grayscale PNG ("I;16", or "I"): convert() would clip at 255
        wide = np.asarray(image)
        image.close()
        narrow = np.empty(wide.shape, np.uint8)
        flat_wide, flat_narrow = wide.reshape(-1), narrow.reshape(-1)
        chunk = np.empty(min(_CHUNK_PIXELS, flat_wide.size), np.int32)
        for start in range(0, flat_wide.size, _CHUNK_PIXELS):  # round(v / 257) in int32, a chunk at a time
            part = chunk[: min(_CHUNK_PIXELS, flat_wide.size - start)]
            np.clip(flat_wide[start : start + part.size], 0, 65535, out=part, casting="unsafe")
            part += 128
            part //= 257
            flat_narrow[start : start + part.size] = part
        del wide
        image = Image.fromarray(narrow, "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))  # uint8 (H, W): mode L
    elif image.mode in ("P", "PA"):  # palette: through RGBA so a transparent index converts cleanly
        image = image.convert("RGBA")
    return image if image.mode == mode else image.convert(mode)


def _first_line(err: BaseException) -> str:
    """The decoder's own words, first line, without a Python object's address (`<_io.BytesIO object at 0x...>`)."""
    text = _ADDRESS.sub("", str(err)).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")

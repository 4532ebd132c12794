"""An image's header, read and checked before any pixel is decoded: `inspect`.

In time bounded by small caps: the JPEG marker segments up to the image data (at most MAX_JPEG_SEGMENTS), the PNG
chunk headers (at most 64 + len(body) // 4096; encoders write IDAT chunks of 8-64 KiB) and the WebP RIFF chunks
(containers.py walks them all).  Over `max_pixels` (width x height) or a side over MAX_SIDE is a 413; a JPEG with
more than MAX_JPEG_SCANS scans, or a structure no encoder writes, is a worded 400; so is one whose metadata (PNG
ancillary chunks, WebP EXIF, ICCP and XMP), which Pillow copies, holds over MAX_METADATA_BYTES, or a PNG of more
than MAX_PNG_COMPRESSED compressed chunks.  Its `ImageHeader.decoded_bytes` is an upper bound of the memory the
decode takes (cost.py).

The format is read from the bytes, not the content type: a PNG, JPEG or WebP body is accepted under any of the
three types (a PNG sent as image/jpeg works); other formats (GIF, BMP, TIFF, ...) are refused.

MAX_SIDE exists because Pillow keeps a pointer and makes a decoder call per row, and its resize precomputes,
per output pixel, a window of coefficients as wide as the shrink factor: a 32 KB PNG 1 pixel wide and
16,777,216 high took 0.7 s and +152 MB to load, then 0.43 s and +270 MB to resize to 28 x 28 (369 ms of GIL
held at once, +419 MB in all; resize's reducing_gap cuts the resize to 30 ms, not the load).  Refusing a
side over 16384 costs nothing and still takes any panorama a camera or phone writes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import simplejpeg

from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import TensorSpec
from tfscoring.protocols.image import containers, cost, exif
from tfscoring.protocols.image.layout import ImageLayout, image_layout
from tfscoring.protocols.limits import MAX_PIXELS

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

# PNG chunks that make the pixels (the APNG ones included: only the first frame is decoded, the others are read
# and dropped a chunk at a time); any other chunk is metadata (MAX_METADATA_BYTES).
_PNG_IMAGE_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"acTL", b"fcTL", b"fdAT"}
_PNG_COMPRESSED = {b"zTXt", b"iTXt", b"iCCP"}  # iTXt may be compressed: counted as if it were
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_KINDS = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
# SOF markers libjpeg-turbo's 8-bit decoder takes: baseline, extended, progressive, and their arithmetic forms.
_JPEG_SOF_TAKEN = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC9: "arithmetic", 0xCA: "progressive"}
_JPEG_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless and hierarchical
_FILL = re.compile(rb"\xff+")


# How a graph that takes the encoded bytes (a string input) decodes an image, for its cost: at the image's own size,
# up to 4 channels (tf.io.decode_image's), then whatever the graph does, counted as a row of the input's dtype.
IN_GRAPH = ImageLayout(None, None, 4, "hwc")


@dataclass(frozen=True)
class ImageHeader:
    """What `inspect` read from an image's header: enough to know the decode's cost before it runs.

    `decoded_bytes` is an upper bound of the memory `decode` takes for the spec it was inspected for: the
    codec's output (JPEG: at its DCT-scaled size) and its working buffers (a progressive or multi-scan JPEG's
    whole-image coefficients, Pillow's row pointers), each conversion (palette -> RGBA, 16-bit -> 8-bit, a
    Pillow image of the array), EXIF rotation's copy, the resize (its intermediate image and coefficients),
    the uint8 row and the row in the input's dtype, plus a fixed cost.CODEC_BYTES, all added up as if none were
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


def inspect(body: bytes, spec: TensorSpec, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """Reads and checks the header of a PNG, JPEG or WebP body for `spec`, in time bounded by the caps of
    the module docstring: BadRequest for a body that is not a valid image of the three, PayloadTooLarge for
    one over `max_pixels` or MAX_SIDE.  No pixel is decoded.  A string input (whose graph decodes the image
    itself) is inspected as the image at its own size in up to 4 channels, its decoded_bytes an allowance for that
    decode."""
    layout = IN_GRAPH if spec.strings else image_layout(spec)
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


def invalid(where: str, why: str) -> BadRequest:
    return BadRequest(f"body is not a valid PNG, JPEG or WebP image {where}: {why}")


def _png_header(body: bytes, layout: ImageLayout, spec: TensorSpec, where: str) -> ImageHeader:
    """Walks the chunk headers (length and type; the data and CRCs are Pillow's and zlib's to check), adding up
    the metadata chunks' data (MAX_METADATA_BYTES, MAX_PNG_COMPRESSED)."""
    limit = PNG_CHUNKS_BASE + len(body) // PNG_CHUNK_BODY
    pos, chunks, ihdr, idat, frames = 8, 0, None, False, 1
    metadata, compressed, largest, exif_at = 0, 0, 0, None
    while True:
        if pos + 8 > len(body):
            raise invalid(where, "the PNG is truncated: it ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", body, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(body):
            raise invalid(
                where, f"the PNG is truncated: its {containers.chunk_name(kind)} chunk runs past the end of the body"
            )
        chunks += 1
        if chunks > limit:
            raise BadRequest(
                f"PNG image has more than {limit} chunks {where}; the limit is {PNG_CHUNKS_BASE} + 1 per "
                f"{PNG_CHUNK_BODY} bytes of body (encoders write image data in chunks of 8-64 KiB)"
            )
        if ihdr is None:
            if kind != b"IHDR" or length != 13:
                raise invalid(where, "the PNG does not start with its IHDR chunk")
            ihdr = struct.unpack_from(">IIBBBBB", body, pos + 8)
        elif kind == b"IDAT":
            idat = True
        elif kind == b"acTL" and length >= 8:
            frames = max(1, struct.unpack_from(">I", body, pos + 8)[0])
        elif kind == b"eXIf" and exif_at is None:
            exif_at = (pos + 8, length)
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
        raise invalid(where, f"the PNG's header is invalid (bit depth {depth}, colour type {color})")
    if not (width and height):
        raise invalid(where, f"the PNG is {width}x{height}")
    if not idat:
        raise invalid(where, "the PNG has no image data (IDAT)")
    kind = f"{depth}-bit {_PNG_KINDS[color]}" + (" interlaced" if interlace else "")
    orientation = exif.orientation(b"Exif\0\0" + body[exif_at[0] : exif_at[0] + exif_at[1]]) if exif_at else 1
    decoded_bytes = cost.png_cost(width, height, color, depth, layout, spec.dtype)
    decoded_bytes += cost.png_metadata_cost(metadata, compressed, largest) + cost.orientation_cost(
        width, height, orientation
    )
    return ImageHeader("PNG", width, height, kind, frames, decoded_bytes, body, orientation=orientation)


def _webp_header(body: bytes, layout: ImageLayout, spec: TensorSpec, where: str) -> ImageHeader:
    """The RIFF header and the first chunk's (VP8, VP8L or VP8X) width and height; the chunks: an animation's
    frames, the metadata's size (MAX_METADATA_BYTES)."""
    riff = struct.unpack_from("<I", body, 4)[0]
    if riff + 8 > len(body) or riff < 12:
        raise invalid(where, f"the WebP is truncated: its RIFF header says {riff + 8} bytes, the body has {len(body)}")
    end = riff + 8
    if end < 20:
        raise invalid(where, "the WebP has no image chunk")
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
        raise invalid(
            where, f"the WebP's first chunk {containers.chunk_name(kind)} is not a valid VP8, VP8L or VP8X header"
        )
    # Every chunk, walked and checked (containers.py): libwebp's demuxer keeps a record per chunk, holding the GIL.
    try:
        info = containers.check_webp(body, max_frames=PNG_CHUNKS_BASE + len(body) // PNG_CHUNK_BODY)
    except containers.ContainerError as err:
        raise invalid(where, str(err)) from None
    anmf, metadata = info.frames, info.iccp_bytes + info.exif_bytes + info.xmp_bytes
    if metadata > MAX_METADATA_BYTES:
        raise BadRequest(
            f"WebP image carries {metadata} bytes of metadata {where} (EXIF, ICCP and XMP chunks); the limit is "
            f"{MAX_METADATA_BYTES} (real photos carry an ICC profile and EXIF of a few KB)"
        )
    if name == "animated":
        frames = anmf
        if not frames:
            raise invalid(where, "the animated WebP has no frame")
    payload = containers.webp_exif(body, info)
    orientation = exif.orientation(payload) if payload else 1
    decoded_bytes = cost.webp_cost(width, height, layout, spec.dtype) + cost.webp_extra(len(body), metadata)
    decoded_bytes += cost.orientation_cost(width, height, orientation)
    return ImageHeader("WEBP", width, height, name, frames, decoded_bytes, body, orientation=orientation)


def _jpeg_header(body: bytes, layout: ImageLayout, spec: TensorSpec, where: str, max_pixels: int) -> ImageHeader:
    """Walks the marker segments from SOI to the first SOS (at most MAX_JPEG_SEGMENTS), counts the scans, then
    asks libjpeg (simplejpeg.decode_jpeg_header) for the colorspace and the DCT-scaled size."""
    pos, segments, sof, payload = 2, 0, None, None
    while True:
        fill = _FILL.match(body, pos)
        if fill is None:
            if pos >= len(body):
                raise invalid(where, "the JPEG is truncated: it ends before its image data")
            raise invalid(where, f"the JPEG has no marker where one is due (byte {pos})")
        pos = fill.end()
        if pos >= len(body):
            raise invalid(where, "the JPEG is truncated: it ends before its image data")
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
            raise invalid(where, "the JPEG ends or restarts before its image data")
        if pos + 2 > len(body):
            raise invalid(where, "the JPEG is truncated: it ends before its image data")
        length = struct.unpack_from(">H", body, pos)[0]
        if length < 2 or pos + length > len(body):
            raise invalid(where, "the JPEG is truncated: a marker segment runs past the end of the body")
        if marker in _JPEG_SOF_OTHER:
            raise invalid(where, "lossless and hierarchical JPEGs are not supported")
        if marker in _JPEG_SOF_TAKEN:
            if sof is not None:
                raise invalid(where, "the JPEG has two frame headers (SOF)")
            sof = (marker, body[pos + 2 : pos + length])
        elif marker == 0xE1 and payload is None and body.startswith(b"Exif\x00\x00", pos + 2):
            payload = memoryview(body)[pos + 2 : pos + length]  # a view: no copy of up to 64 KB
        elif marker == 0xDA:
            break
        pos += length
    if sof is None:
        raise invalid(where, "the JPEG has no frame header (SOF) before its image data")
    marker, frame = sof
    if len(frame) < 6 or len(frame) < 6 + 3 * frame[5]:
        raise invalid(where, "the JPEG's frame header (SOF) is invalid")
    precision, height, width, components = struct.unpack_from(">BHHB", frame)
    if precision != 8:
        raise invalid(where, f"{precision}-bit JPEGs are not supported, only 8-bit")
    if not (width and height) or components not in (1, 3, 4):
        raise invalid(where, f"the JPEG's frame header says {width}x{height} with {components} components")
    _check_size(width, height, max_pixels, where)  # before libjpeg reads the header again
    sampling = [(frame[7 + 3 * i] >> 4, frame[7 + 3 * i] & 15) for i in range(components)]
    if any(not (1 <= h <= 4 and 1 <= v <= 4) for h, v in sampling):
        raise invalid(where, "the JPEG's sampling factors are invalid")
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
        raise invalid(where, first_line(err)) from None
    orientation = exif.orientation(payload) if payload is not None else 1
    channels = 4 if colorspace in ("CMYK", "YCCK") else layout.channels
    whole = marker in (0xC2, 0xCA) or scans > 1  # libjpeg keeps the whole image's coefficients
    blocks = cost.jpeg_blocks(width, height, sampling) if whole else 0
    decoded_bytes = cost.jpeg_cost(
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
    return ImageHeader(
        "JPEG", width, height, kind, 1, decoded_bytes, body, scaled_width, scaled_height, colorspace, orientation
    )


def _count_scans(body: bytes, start: int) -> int:
    """SOS markers from `start`, counted a MiB at a time (so the GIL can pass between windows: a count of a
    whole 64 MiB body of noise holds it about 60 ms) and no further than MAX_JPEG_SCANS + 1."""
    scans = 0
    for window in range(start, len(body), 1 << 20):
        scans += body.count(b"\xff\xda", window, window + (1 << 20) + 1)  # a marker starting in the window
        if scans > MAX_JPEG_SCANS:
            break
    return scans


def _names(kinds: set[bytes]) -> str:
    return ", ".join(sorted(kind.decode() for kind in kinds))


def first_line(err: BaseException) -> str:
    """The decoder's own words, first line, without a Python object's address (`<_io.BytesIO object at 0x...>`)."""
    text = _ADDRESS.sub("", str(err)).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")

"""Strict, bounded structural checks of PNG and WebP containers, before Pillow sees the body.

Pure Python, zlib and struct: no pixel is decoded.  Each check walks every chunk of the body, bounds-checked,
with a cap on the chunk count, and raises a `ContainerError` (a ValueError) with a worded reason; the caller
maps it to a 400.

- `check_webp(body, max_chunks, max_frames)`: every RIFF chunk of a simple (VP8, VP8L: exactly the one image
  chunk) or extended (VP8X) WebP, the frames' sub-chunks included.  libwebp's demuxer (which Pillow uses for
  every WebP) allocates a record per chunk, holding the GIL: 8.4 M empty chunks after a 28x28 image took it
  ~0.45 s and +383 MB.  Here at most `max_chunks` chunks that are not animation frames, at most one ICCP,
  EXIF, XMP, ANIM and still image, and their sizes are reported so the caller can bound them.
- `check_png(body, max_chunks)`: every chunk's CRC, the chunk order (IHDR first, PLTE where required and
  nowhere forbidden, consecutive IDATs, IEND last with nothing after it), then the IDAT data inflated in
  bounded pieces (the output counted and discarded, never kept): exactly the filtered size the header
  declares, a complete zlib stream (Adler-32 checked by zlib), nothing after it.  Pillow accepts a short
  stream (the missing rows silently zero), extra data past the last row, a wrong checksum and a palette image
  without PLTE.  An APNG's default image (its IDAT) is checked; fdAT frames are never decoded.
- `png_exif(body)`, `webp_exif(body)`: the EXIF payload, as b"Exif\\0\\0" + TIFF (the form
  exif.orientation reads), or None.

Not checked here: palette indexes past the palette's end (Pillow maps them to black).  That needs the
unfiltered rows, and the Average and Paeth filters are a sequential loop per byte, too slow in Python; after
Pillow's load, `image.getextrema()[1] < PngInfo.palette_entries` is the same check in C at no extra memory
(needed only where `PngInfo.palette_entries < 2 ** bit_depth`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "INFLATE_INPUT",
    "INFLATE_OUTPUT",
    "WEBP_MAX_CHUNKS",
    "ContainerError",
    "PngInfo",
    "WebpInfo",
    "check_png",
    "check_webp",
    "png_exif",
    "png_filtered_size",
    "webp_exif",
]

# Top-level WebP chunks other than ANMF frames: VP8X, ICCP, ANIM, ALPH, VP8/VP8L, EXIF, XMP is 7 at most in
# a file an encoder writes; one left over for an unknown chunk.
WEBP_MAX_CHUNKS = 8
# The IDAT data is fed to zlib this many bytes at a time, and inflated at most this many bytes a call: the
# memory of the check stays O(these), and each call holds the GIL for a copy of at most INFLATE_INPUT bytes.
INFLATE_INPUT = 1 << 16
INFLATE_OUTPUT = 1 << 18

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7: (x0, y0, dx, dy) of each of the 7 passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
# Ancillary chunks the PNG spec (and APNG) allows once at most.
_PNG_ONCE = {b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"bKGD", b"hIST", b"tRNS", b"pHYs", b"tIME", b"eXIf"}
_PNG_BEFORE_PLTE = {b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB"}
_PNG_BEFORE_IDAT = _PNG_BEFORE_PLTE | {b"bKGD", b"hIST", b"tRNS", b"pHYs", b"sPLT", b"acTL"}
_MAX_CHUNK = 0x7FFFFFFF
_EXIF_PREFIX = b"Exif\x00\x00"

# WebP: VP8X feature flags (ICC, alpha, EXIF, XMP, animation); the other bits are reserved (libwebp refuses).
_VP8X_FLAGS = 0x20 | 0x10 | 0x08 | 0x04 | 0x02
_VP8X_ANIMATION = 0x02
_WEBP_IMAGE = (b"VP8 ", b"VP8L")
_WEBP_ONCE = {b"ICCP", b"ANIM", b"EXIF", b"XMP "}
# libwebp's MAX_CHUNK_PAYLOAD (~0U - 8 - 1) and the 24-bit canvas sides of VP8X.
_WEBP_MAX_PAYLOAD = 0xFFFFFFFF - 8 - 1


class ContainerError(ValueError):
    """A PNG or WebP body whose container is invalid, or over a cap of this module: the message says why."""


@dataclass(frozen=True)
class PngInfo:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool
    chunks: int  # every chunk, IHDR and IEND included
    idat_bytes: int  # compressed
    filtered_bytes: int  # the inflated size: rows with their filter bytes (all 7 passes if interlaced)
    palette_entries: int  # PLTE entries (0 without PLTE)
    frames: int  # acTL's frame count, or 1
    exif: tuple[int, int] | None  # (offset, size) of the eXIf payload in the body
    text_chunks: int  # tEXt, zTXt and iTXt
    iccp_bytes: int  # the compressed iCCP payload (0 without)


@dataclass(frozen=True)
class WebpInfo:
    kind: str  # "lossy", "lossless" (simple formats), "extended" or "animated" (VP8X)
    chunks: int  # top-level chunks other than ANMF frames, VP8X included
    frames: int  # ANMF chunks (0 for a still image)
    canvas: tuple[int, int] | None  # VP8X's (width, height), None for a simple format
    flags: int  # VP8X's feature flags, 0 for a simple format
    iccp_bytes: int  # payload sizes, 0 where absent
    exif_bytes: int
    xmp_bytes: int
    unknown_chunks: int
    exif: tuple[int, int] | None  # (offset, size) of the EXIF payload in the body


# WebP


def check_webp(body: bytes, max_chunks: int = WEBP_MAX_CHUNKS, max_frames: int | None = None) -> WebpInfo:
    """Walks every chunk of a WebP body (its frames' sub-chunks too), in time bounded by `max_chunks`
    top-level chunks other than frames and `max_frames` ANMF frames (None: 64 + 1 per 4 KiB of body, the
    rule header.py applies to PNG chunks).  ContainerError says what is wrong or over a cap."""
    view = memoryview(body)
    size = len(view)
    if size < 12 or view[:4] != b"RIFF" or view[8:12] != b"WEBP":
        raise ContainerError("the body is not a RIFF WebP file")
    if max_frames is None:
        max_frames = 64 + size // 4096
    riff = struct.unpack_from("<I", view, 4)[0]
    end = riff + 8
    # libwebp reads the RIFF size as it is; a writer that left the last chunk's pad byte out of it is allowed.
    if riff < 4 or riff > _WEBP_MAX_PAYLOAD or not (end <= size <= end + 1):
        raise ContainerError(f"the WebP's RIFF header says {end} bytes, the body has {size}")
    if size == end + 1 and riff & 1 == 0 and view[end] != 0:
        raise ContainerError(f"the WebP has {size - end} byte(s) after its RIFF data")

    chunks = frames = unknown = 0
    sizes: dict[bytes, int] = {}
    exif = None
    first = None
    image = alpha = anim = False
    last_odd_payload_end = None
    pos = 12
    while pos < end:
        if pos + 8 > end:
            raise ContainerError(f"the WebP has {end - pos} stray byte(s) at the end of its RIFF data")
        kind, length = struct.unpack_from("<4sI", view, pos)
        data = pos + 8
        if length > _WEBP_MAX_PAYLOAD or data + length > end:
            raise ContainerError(f"the WebP's {chunk_name(kind)} chunk runs past the end of its RIFF data")
        nxt = data + length + (length & 1)
        if kind == b"ANMF":
            frames += 1
            if frames > max_frames:
                raise ContainerError(f"the WebP has more than {max_frames} animation frames")
        else:
            chunks += 1
            if chunks > max_chunks:
                raise ContainerError(
                    f"the WebP has more than {max_chunks} chunks besides its animation frames "
                    "(an encoder writes at most VP8X, ICCP, ANIM, ALPH, VP8/VP8L, EXIF and XMP)"
                )
        if first is None:
            first = kind
            if kind in _WEBP_IMAGE:
                image = True
            elif kind == b"VP8X":
                if length != 10:
                    raise ContainerError(f"the WebP's VP8X chunk is {length} bytes, not 10")
                flags = view[data]
                if flags & ~_VP8X_FLAGS or view[data + 1 : data + 4] != b"\x00\x00\x00":
                    raise ContainerError(f"the WebP's VP8X chunk sets reserved flags ({flags:#04x})")
                canvas = (
                    int.from_bytes(view[data + 4 : data + 7], "little") + 1,
                    int.from_bytes(view[data + 7 : data + 10], "little") + 1,
                )
            else:
                raise ContainerError(f"the WebP's first chunk is {chunk_name(kind)}, not VP8, VP8L or VP8X")
        elif first != b"VP8X":
            raise ContainerError(
                f"the simple ({chunk_name(first)}) WebP has a {chunk_name(kind)} chunk after its image"
            )
        else:
            animated = bool(flags & _VP8X_ANIMATION)
            if kind in _WEBP_ONCE:
                if kind in sizes:
                    raise ContainerError(f"the WebP has two {chunk_name(kind)} chunks")
                sizes[kind] = length
                if kind == b"EXIF":
                    exif = (data, length)
                elif kind == b"ICCP" and (image or anim):
                    raise ContainerError("the WebP's ICCP chunk comes after its image data")
                elif kind == b"ANIM":
                    if not animated:
                        raise ContainerError("the WebP has an ANIM chunk but its VP8X does not flag an animation")
                    if length != 6:
                        raise ContainerError(f"the WebP's ANIM chunk is {length} bytes, not 6")
                    anim = True
            elif kind == b"ANMF":
                if not anim:
                    raise ContainerError("the WebP has an animation frame (ANMF) without an ANIM chunk before it")
                _check_frame(view, data, length, canvas, frames)
            elif kind == b"ALPH" or kind in _WEBP_IMAGE:
                if animated:
                    raise ContainerError(f"the animated WebP has a {chunk_name(kind)} chunk outside its frames")
                if image:
                    raise ContainerError(f"the WebP has a {chunk_name(kind)} chunk after its image")
                if kind == b"ALPH":
                    if alpha:
                        raise ContainerError("the WebP has two 'ALPH' chunks")
                    alpha = True
                else:
                    if kind == b"VP8L" and alpha:
                        raise ContainerError("the WebP has an ALPH chunk before a VP8L image (which has its own)")
                    image = True
            elif kind == b"VP8X":
                raise ContainerError("the WebP has two 'VP8X' chunks")
            else:
                unknown += 1
            if alpha and not image and kind != b"ALPH":
                raise ContainerError("the WebP's ALPH chunk is not followed by its VP8 image")
        last_odd_payload_end = data + length if length & 1 else None
        pos = nxt
    if pos > end and not (pos == end + 1 and last_odd_payload_end == end):
        raise ContainerError("the WebP's last chunk runs past the end of its RIFF data")
    if first is None:
        raise ContainerError("the WebP has no chunk")
    if first == b"VP8X":
        if flags & _VP8X_ANIMATION:
            if not anim:
                raise ContainerError("the WebP's VP8X flags an animation but it has no ANIM chunk")
            if not frames:
                raise ContainerError("the animated WebP has no frame (ANMF)")
            kind_name = "animated"
        else:
            if not image:
                raise ContainerError("the WebP has no image chunk (VP8 or VP8L)")
            kind_name = "extended"
    else:
        kind_name, canvas, flags = ("lossy" if first == b"VP8 " else "lossless"), None, 0
    return WebpInfo(
        kind=kind_name,
        chunks=chunks,
        frames=frames,
        canvas=canvas,
        flags=flags,
        iccp_bytes=sizes.get(b"ICCP", 0),
        exif_bytes=sizes.get(b"EXIF", 0),
        xmp_bytes=sizes.get(b"XMP ", 0),
        unknown_chunks=unknown,
        exif=exif,
    )


def _check_frame(view: memoryview, data: int, length: int, canvas: tuple[int, int], number: int) -> None:
    """An ANMF payload: its 16-byte header inside the canvas, then [ALPH] VP8, or VP8L, filling it exactly
    (libwebp's demuxer would read anything after the image as top-level chunks, one record each)."""
    if length < 16 + 8:
        raise ContainerError(f"the WebP's animation frame {number} is {length} bytes, too short")
    x = 2 * int.from_bytes(view[data : data + 3], "little")
    y = 2 * int.from_bytes(view[data + 3 : data + 6], "little")
    width = int.from_bytes(view[data + 6 : data + 9], "little") + 1
    height = int.from_bytes(view[data + 9 : data + 12], "little") + 1
    if x + width > canvas[0] or y + height > canvas[1]:
        raise ContainerError(
            f"the WebP's animation frame {number} ({width}x{height} at {x},{y}) is outside its "
            f"{canvas[0]}x{canvas[1]} canvas"
        )
    pos, end, kinds = data + 16, data + length, []
    while pos < end:
        if pos + 8 > end or len(kinds) == 2:
            raise ContainerError(f"the WebP's animation frame {number} has data after its image")
        kind, size = struct.unpack_from("<4sI", view, pos)
        if pos + 8 + size > end:
            raise ContainerError(f"the WebP's animation frame {number} has a chunk that runs past its end")
        kinds.append(kind)
        pos += 8 + size + (size & 1)
    if pos > end + 1 or (pos == end + 1 and (end - data) & 1 == 0):
        raise ContainerError(f"the WebP's animation frame {number} has a chunk that runs past its end")
    if kinds not in ([b"VP8 "], [b"VP8L"], [b"ALPH", b"VP8 "]):
        shown = ", ".join(chunk_name(k) for k in kinds) or "nothing"
        raise ContainerError(f"the WebP's animation frame {number} holds {shown}, not [ALPH] VP8 or VP8L")


def webp_exif(body: bytes, info: WebpInfo | None = None) -> bytes | None:
    """The EXIF chunk's payload as b"Exif\\0\\0" + TIFF (some writers include the prefix, most do not), or
    None.  `info` from check_webp on the same body saves a second walk."""
    if info is None:
        info = check_webp(body)
    return _exif_payload(body, info.exif)


# PNG


def png_filtered_size(width: int, height: int, bit_depth: int, color_type: int, interlaced: bool) -> int:
    """The bytes a PNG's image data inflates to: each row's filter byte and packed samples, and for Adam7
    the sum over the 7 passes (an empty pass has no rows, so no filter bytes)."""
    bits = _PNG_CHANNELS[color_type] * bit_depth

    def rows(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * bits + 7) // 8)

    if not interlaced:
        return rows(width, height)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        total += rows(max(0, -(-(width - x0) // dx)), max(0, -(-(height - y0) // dy)))
    return total


def check_png(body: bytes, max_chunks: int | None = None, max_pixels: int = 1 << 28) -> PngInfo:
    """Checks a PNG's structure and its image data's size (see the module docstring): ContainerError says
    what is wrong.  `max_chunks` (None: 64 + 1 per 4 KiB of body, as header.py) bounds the walk, `max_pixels`
    the inflate (the caller refuses a large image first; this is a backstop).  Memory O(INFLATE_OUTPUT)."""
    view = memoryview(body)
    info, idats = _walk_png(view, max_chunks)
    if info.width * info.height > max_pixels:
        raise ContainerError(f"the PNG is {info.width}x{info.height}, over {max_pixels} pixels")
    _inflate_exactly(view, idats, info.filtered_bytes)
    return info


def png_exif(body: bytes, info: PngInfo | None = None) -> bytes | None:
    """The eXIf chunk's payload as b"Exif\\0\\0" + TIFF, or None.  Without `info` (from check_png on the same
    body) the chunks are walked again, their CRCs checked, nothing inflated."""
    if info is None:
        info, _ = _walk_png(memoryview(body), None)
    return _exif_payload(body, info.exif)


def _walk_png(view: memoryview, max_chunks: int | None) -> tuple[PngInfo, list[tuple[int, int]]]:
    size = len(view)
    if view[:8] != _PNG_SIGNATURE:
        raise ContainerError("the body is not a PNG (no PNG signature)")
    if max_chunks is None:
        max_chunks = 64 + size // 4096
    pos, chunks, seen = 8, 0, set()
    ihdr = None
    idats: list[tuple[int, int]] = []
    idat_done = False  # a chunk other than IDAT followed the IDATs
    palette = frames = text = iccp = 0
    exif = None
    while True:
        if pos + 12 > size:
            raise ContainerError("the PNG is truncated: it ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", view, pos)
        data = pos + 8
        if length > _MAX_CHUNK or data + length + 4 > size:
            raise ContainerError(f"the PNG is truncated: its {chunk_name(kind)} chunk runs past the end of the body")
        if not kind.isalpha():
            raise ContainerError(f"the PNG has a chunk of invalid type {chunk_name(kind)}")
        chunks += 1
        if chunks > max_chunks:
            raise ContainerError(f"the PNG has more than {max_chunks} chunks")
        crc = struct.unpack_from(">I", view, data + length)[0]
        if zlib.crc32(view[data : data + length], zlib.crc32(kind)) != crc:
            raise ContainerError(f"the PNG's {chunk_name(kind)} chunk has a wrong CRC")
        if ihdr is None:
            if kind != b"IHDR" or length != 13:
                raise ContainerError("the PNG does not start with its IHDR chunk")
            ihdr = struct.unpack_from(">IIBBBBB", view, data)
            width, height, depth, color, compression, filtering, interlace = ihdr
            if color not in _PNG_DEPTHS or depth not in _PNG_DEPTHS[color]:
                raise ContainerError(f"the PNG's header is invalid (bit depth {depth}, colour type {color})")
            if compression or filtering or interlace > 1:
                raise ContainerError("the PNG's header names an unknown compression, filter or interlace method")
            if not (0 < width <= _MAX_CHUNK and 0 < height <= _MAX_CHUNK):
                raise ContainerError(f"the PNG is {width}x{height}")
        elif kind == b"IEND":
            if length:
                raise ContainerError("the PNG's IEND chunk is not empty")
            if data + 4 != size:
                raise ContainerError(f"the PNG has {size - data - 4} byte(s) after its IEND chunk")
            break
        elif kind == b"IDAT":
            if idat_done:
                raise ContainerError("the PNG's IDAT chunks are not consecutive")
            if color == 3 and not palette:
                raise ContainerError("the palette PNG has no PLTE chunk before its image data")
            idats.append((data, length))
        else:
            if idats:
                idat_done = True
            if kind in _PNG_CRITICAL:  # IHDR or PLTE
                if kind == b"IHDR" or palette:
                    raise ContainerError(f"the PNG has two {chunk_name(kind)} chunks")
                if color in (0, 4):
                    raise ContainerError("the grayscale PNG has a PLTE chunk")
                if idats:
                    raise ContainerError("the PNG's PLTE chunk comes after its image data")
                if length == 0 or length % 3 or length > 3 * 256:
                    raise ContainerError(f"the PNG's PLTE chunk is {length} bytes (3 per entry, 1 to 256 entries)")
                if b"tRNS" in seen or b"bKGD" in seen or b"hIST" in seen:
                    raise ContainerError("the PNG's PLTE chunk comes after its tRNS, bKGD or hIST chunk")
                palette = length // 3
            elif not kind[0] & 0x20:
                raise ContainerError(f"the PNG has an unknown critical chunk {chunk_name(kind)}")
            elif kind in _PNG_ONCE and kind in seen:
                raise ContainerError(f"the PNG has two {chunk_name(kind)} chunks")
            elif kind in _PNG_BEFORE_IDAT and idats:
                raise ContainerError(f"the PNG's {chunk_name(kind)} chunk comes after its image data")
            elif kind in _PNG_BEFORE_PLTE and palette:
                raise ContainerError(f"the PNG's {chunk_name(kind)} chunk comes after its PLTE chunk")
            elif kind == b"tRNS":
                if color in (4, 6):
                    raise ContainerError("the PNG has a tRNS chunk but an alpha channel already")
                if color == 3 and not (palette and length <= palette):
                    raise ContainerError(f"the PNG's tRNS chunk has {length} entries, its palette {palette}")
                if color in (0, 2) and length != (2 if color == 0 else 6):
                    raise ContainerError(f"the PNG's tRNS chunk is {length} bytes")
            elif kind == b"acTL":
                if length != 8:
                    raise ContainerError(f"the PNG's acTL chunk is {length} bytes, not 8")
                frames = struct.unpack_from(">I", view, data)[0]
            elif kind == b"eXIf":
                exif = (data, length)
            elif kind in (b"tEXt", b"zTXt", b"iTXt"):
                text += 1
            elif kind == b"iCCP":
                iccp = length
            seen.add(kind)
        pos = data + length + 4
    if not idats:
        raise ContainerError("the PNG has no image data (IDAT)")
    width, height, depth, color, _, _, interlace = ihdr
    info = PngInfo(
        width=width,
        height=height,
        bit_depth=depth,
        color_type=color,
        interlaced=bool(interlace),
        chunks=chunks,
        idat_bytes=sum(n for _, n in idats),
        filtered_bytes=png_filtered_size(width, height, depth, color, bool(interlace)),
        palette_entries=palette,
        frames=max(1, frames),
        exif=exif,
        text_chunks=text,
        iccp_bytes=iccp,
    )
    return info, idats


def _inflate_exactly(view: memoryview, idats: list[tuple[int, int]], expected: int) -> None:
    """Inflates the IDAT data, INFLATE_INPUT bytes in and at most INFLATE_OUTPUT bytes out a call (the output
    is counted, then dropped), and checks it is exactly `expected` bytes, one whole zlib stream, nothing after."""
    inflater = zlib.decompressobj()
    total = 0
    extra = f"the PNG's image data holds more than the {expected} bytes its header says"
    trailing = "the PNG has data after the end of its zlib stream"
    try:
        for start, length in idats:
            for piece in range(start, start + length, INFLATE_INPUT):
                pending = view[piece : min(piece + INFLATE_INPUT, start + length)]
                while pending:
                    if inflater.eof:
                        raise ContainerError(trailing)
                    # One byte past what is expected at most, to see extra data without inflating it all.
                    total += len(inflater.decompress(pending, min(INFLATE_OUTPUT, expected - total + 1)))
                    if total > expected:
                        raise ContainerError(extra)
                    pending = inflater.unconsumed_tail
                if inflater.unused_data:
                    raise ContainerError(trailing)
        while not inflater.eof:  # output zlib held back for want of room
            out = inflater.decompress(b"", min(INFLATE_OUTPUT, expected - total + 1))
            if not out:
                break
            total += len(out)
            if total > expected:
                raise ContainerError(extra)
    except zlib.error as err:
        raise ContainerError(f"the PNG's image data is corrupt: {err}") from None
    if not inflater.eof:
        raise ContainerError(
            f"the PNG's image data is truncated: its zlib stream does not end ({total} of {expected} bytes)"
        )
    if total < expected:
        raise ContainerError(f"the PNG's image data is short: {total} of the {expected} bytes its header says")


# Both


def _exif_payload(body: bytes, span: tuple[int, int] | None) -> bytes | None:
    if span is None:
        return None
    start, length = span
    payload = bytes(body[start : start + length])
    return payload if payload.startswith(_EXIF_PREFIX) else _EXIF_PREFIX + payload


def chunk_name(kind: bytes) -> str:
    """A chunk's type as messages write it: 'IDAT' (any byte shown, as Latin-1)."""
    return repr(kind.decode("latin-1"))

"""Images inside byte strings: a value of a string input that is an encoded image, which the graph decodes itself
(tf.io.decode_image, decode_jpeg, decode_png, decode_gif, decode_bmp), checked as an image body is before the graph
sees it: `in_graph_bytes`.

A value is taken for an image by the signature tf.io.decode_image sniffs: JPEG, PNG and WebP are read by
header.inspect (a 413 over the pixel limit, a 400 for a header no encoder writes), GIF, BMP and JPEG XL by their own
headers here (their frames and sides against the same limit).  What the graph's decodes take is reserved with the
rest of the request: 4 bytes a pixel of every frame TensorFlow decodes (its outputs, up to RGBA; JPEG XL's decoder
more), and one decoder's state.  A value with no image signature is passed as it is: text, an id, a serialized
proto.  JPEG's, PNG's and JPEG XL's signatures are no UTF-8 text, and BMP's "BM" is taken for one only with a DIB
header size a BMP writer uses, so text that starts with "BM" is no image.

Frames, as TensorFlow 2.21 decodes them: every frame of a GIF (each at the largest frame's size), of an animated
WebP (each at the canvas size), the first of an APNG and of a JPEG XL.  An animated WebP without alpha is refused
(400): TensorFlow 2.21's decode_webp and decode_image write its RGBA frames into a 3-channel buffer and corrupt the
worker's heap (the process aborts).

Bounded work a value: the headers only (JPEG's scans counted in C; PNG's and WebP's chunks capped by header.py),
and a GIF's blocks walked at most 256 + 1 per 16 bytes of it; a GIF of more blocks is refused (400), as frames not
walked could declare any size.
"""

from __future__ import annotations

import struct

from tfscoring.errors import BadRequest, PayloadTooLarge, ScoringError
from tfscoring.interface import Batch, Interface, TensorSpec
from tfscoring.protocols.image import cost, header
from tfscoring.protocols.limits import Limits

BYTES_PER_PIXEL = 4  # TensorFlow decodes into up to 4 channels of uint8
# JPEG XL: libjxl decodes into planes of float32 (3 of them, and alpha) before TensorFlow's uint8 output; an
# allowance, not measured (no JPEG XL encoder is installed beside this TensorFlow).
JXL_BYTES_PER_PIXEL = 4 * 4 + 4
_INSPECTED = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_GIF = b"GIF8"  # what tf.io.decode_image takes for a GIF (GIF87a and GIF89a)
_GIF_STEPS_BASE, _GIF_BYTES_PER_STEP = 256, 16
_WEBP_ALPHA = 0x10  # VP8X's flag: the image has alpha
_JXL_CODESTREAM = b"\xff\x0a"
_JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_JXL_MAX_BOXES = 64  # ftyp, jxll, Exif, xml, jumb, jbrd... before the codestream: a few in real files
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_JXL_SIZE_BITS = (9, 13, 18, 30)
# The DIB header sizes BMP writers use (BITMAPCOREHEADER to BITMAPV5HEADER); TensorFlow's decoder reads the sides
# that follow the header size whatever it says.
_BMP_HEADERS = {12, 16, 40, 52, 56, 64, 108, 124}


def in_graph_bytes(arrays: Batch, interface: Interface, limits: Limits) -> int:
    """What the graph takes to decode the images among the string inputs' values (0 where there are none); a 413
    for one over the pixel limit, a 400 for a JPEG, PNG or WebP whose header is not one."""
    decoded, images = 0, 0
    for spec, array in zip(interface.inputs, arrays, strict=True):
        if not spec.strings:
            continue
        for k, value in enumerate(array.flat):
            found = _decoded_bytes(value, spec, limits.max_pixels, f"value {k} of the input {spec.name!r}")
            if found is not None:
                decoded, images = decoded + found, images + 1
    return decoded + (cost.CODEC_BYTES if images else 0)


def _decoded_bytes(value: bytes, spec: TensorSpec, max_pixels: int, where: str) -> int | None:
    """What the graph's decode of `value` takes, its pixels checked against `max_pixels`; None: it is no image."""
    if value.startswith(_JXL_CODESTREAM) or value.startswith(_JXL_CONTAINER):
        width, height = _jxl_size(value, where)
        return _check(width * height, width, height, max_pixels, where, "JPEG XL") * JXL_BYTES_PER_PIXEL
    pixels = _pixels(value, spec, max_pixels, where)
    return None if pixels is None else pixels * BYTES_PER_PIXEL


def _pixels(value: bytes, spec: TensorSpec, max_pixels: int, where: str) -> int | None:
    """The pixels of every frame of the image `value` is, checked against `max_pixels`; None: it is no image."""
    if value.startswith(_INSPECTED) or (value[:4] == b"RIFF" and value[8:12] == b"WEBP"):
        try:
            read = header.inspect(value, spec, max_pixels)
        except ScoringError as err:  # its message speaks of a body: this is one value of a request
            raise type(err)(f"{where} is an image: {err.message.replace('body is', 'it is', 1)}") from None
        return _inspected_pixels(read, value, max_pixels, where)
    if value.startswith(_GIF) and len(value) >= 13:
        frames, width, height = _gif_frames(value, where)
        return _check(width * height * frames, width, height, max_pixels, where, "GIF")
    if value[:2] == b"BM" and len(value) >= 26 and struct.unpack_from("<I", value, 14)[0] in _BMP_HEADERS:
        if struct.unpack_from("<I", value, 14)[0] == 12:
            width, height = struct.unpack_from("<hh", value, 18)
        else:
            width, height = struct.unpack_from("<ii", value, 18)
        width, height = abs(width), abs(height)  # a negative height is a top-down BMP
        return _check(width * height, width, height, max_pixels, where, "BMP")
    return None


def inspected_bytes(read: header.ImageHeader, value: bytes, max_pixels: int, where: str) -> int:
    """What the graph's decode of a JPEG, PNG or WebP takes, from the header `inspect` read of it (an image body the
    image codec inspected already): its frames checked against `max_pixels`, an animated WebP without alpha refused."""
    return _inspected_pixels(read, value, max_pixels, where) * BYTES_PER_PIXEL + cost.CODEC_BYTES


def _inspected_pixels(read: header.ImageHeader, value: bytes, max_pixels: int, where: str) -> int:
    if read.format == "WEBP" and read.kind == "animated":
        if not value[20] & _WEBP_ALPHA:
            raise BadRequest(
                f"{where} is an animated WebP without alpha, which TensorFlow 2.21's WebP decoder cannot take (it "
                "corrupts the process's memory): send its frames as separate images, or the animation with alpha"
            )
        return _check(read.width * read.height * read.frames, read.width, read.height, max_pixels, where, "WebP")
    return read.width * read.height  # an APNG's first frame only: TensorFlow's PNG decoder reads no more


def _check(pixels: int, width: int, height: int, max_pixels: int, where: str, kind: str) -> int:
    if pixels > max_pixels:
        raise PayloadTooLarge(
            f"{where} is a {width}x{height} {kind} image of {pixels} pixels in all (frames included); the limit is "
            f"{max_pixels} pixels"
        )
    return pixels


def _gif_frames(value: bytes, where: str) -> tuple[int, int, int]:
    """The frames of a GIF and the largest frame's width and height (TensorFlow's output is that size, whatever the
    logical screen says), walked block by block to its trailer or its end (a cut file: the frames it holds, as
    TensorFlow decodes no more).  At most _GIF_STEPS_BASE + 1 block per _GIF_BYTES_PER_STEP bytes are walked: a GIF
    of more is refused (400), since frames not walked could declare any size."""
    frames, width, height, pos, end = 0, 0, 0, 13, len(value)
    steps = _GIF_STEPS_BASE + end // _GIF_BYTES_PER_STEP
    flags = value[10]
    if flags & 0x80:  # the global colour table
        pos += 3 << ((flags & 7) + 1)
    while pos < end:
        steps -= 1
        block = value[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # an extension: its label, then sub-blocks
            pos, steps = _skip_sub_blocks(value, pos + 2, steps)
        elif block == 0x2C:  # an image: its descriptor, a local colour table, the LZW code size, sub-blocks
            if pos + 10 > end:
                break
            frames += 1
            frame_width, frame_height = struct.unpack_from("<HH", value, pos + 5)
            width, height = max(width, frame_width), max(height, frame_height)
            local = value[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 << ((local & 7) + 1)
            pos, steps = _skip_sub_blocks(value, pos + 1, steps)
        else:
            break  # not a GIF block: TensorFlow's decoder stops there too
        if steps <= 0:
            raise BadRequest(
                f"{where} is a GIF of more blocks than {_GIF_STEPS_BASE} and one per {_GIF_BYTES_PER_STEP} bytes of "
                "it, which its check walks: send fewer frames, or its frames as separate images"
            )
    return frames, width, height


def _skip_sub_blocks(value: bytes, pos: int, steps: int) -> tuple[int, int]:
    end = len(value)
    while pos < end and value[pos] and steps > 0:
        pos += value[pos] + 1
        steps -= 1
    return pos + 1, steps  # past the terminator


def _jxl_size(value: bytes, where: str) -> tuple[int, int]:
    """A JPEG XL's width and height from its codestream's SizeHeader (bare, or in the container's first jxlc or
    jxlp box); a 400 where there is none."""
    start = _jxl_codestream_at(value) if value.startswith(_JXL_CONTAINER) else 0
    if start is None or not value.startswith(_JXL_CODESTREAM, start):
        raise BadRequest(f"{where} is an image: it is not a valid JPEG XL image: its container holds no codestream")
    bits = _Bits(value[start + 2 : start + 12])  # a SizeHeader takes 68 bits at most
    try:
        small = bits.read(1)
        height = (bits.read(5) + 1) * 8 if small else bits.read(_JXL_SIZE_BITS[bits.read(2)]) + 1
        ratio = bits.read(3)
        if ratio:
            numerator, denominator = _JXL_RATIOS[ratio]
            width = height * numerator // denominator
        else:
            width = (bits.read(5) + 1) * 8 if small else bits.read(_JXL_SIZE_BITS[bits.read(2)]) + 1
    except EOFError:
        raise BadRequest(
            f"{where} is an image: it is not a valid JPEG XL image: it ends inside its size header"
        ) from None
    return width, height


def _jxl_codestream_at(value: bytes) -> int | None:
    """Where the codestream starts in a JPEG XL container: the data of its first jxlc box, or of its first jxlp box
    (after that box's 4-byte index); None where no such box comes within _JXL_MAX_BOXES."""
    pos = len(_JXL_CONTAINER)
    for _ in range(_JXL_MAX_BOXES):
        if pos + 8 > len(value):
            return None
        size, kind = struct.unpack_from(">I4s", value, pos)
        data = pos + 8
        if size == 1:  # a 64-bit size follows the type
            if pos + 16 > len(value):
                return None
            size, data = struct.unpack_from(">Q", value, pos + 8)[0], pos + 16
        if kind == b"jxlc":
            return data
        if kind == b"jxlp":
            return data + 4
        if size == 0 or size < data - pos:  # to the end of the file, or a size no box has
            return None
        pos += size
    return None


class _Bits:
    """Bits read least significant first, as JPEG XL's headers are written."""

    def __init__(self, data: bytes):
        self.value, self.left = int.from_bytes(data, "little"), 8 * len(data)

    def read(self, count: int) -> int:
        if count > self.left:
            raise EOFError
        got = self.value & ((1 << count) - 1)
        self.value, self.left = self.value >> count, self.left - count
        return got


def has_strings(interface: Interface) -> bool:
    """Whether the model takes a string input at all: only then is any value looked at."""
    return any(spec.strings for spec in interface.inputs)

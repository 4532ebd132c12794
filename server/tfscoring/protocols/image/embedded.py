"""Images inside byte strings: a value of a string input that is an encoded image, which the graph decodes itself
(tf.io.decode_image, decode_jpeg, decode_png, decode_gif, decode_bmp), checked as an image body is before the graph
sees it: `in_graph_bytes`.

A value is taken for an image by its signature: JPEG, PNG and WebP are read by header.inspect (a 413 over the
pixel limit, a 400 for a header no encoder writes), GIF and BMP by their own headers here (their frames and sides
against the same limit).  What the graph's decodes take is reserved with the rest of the request: 4 bytes a pixel
of every frame (TensorFlow's outputs, up to RGBA), and one decoder's state.  A value with no image signature is
passed as it is: text, an id, a serialized proto.  JPEG's and PNG's signatures are no UTF-8 text, and BMP's "BM" is
taken for one only with a DIB header size a BMP writer uses, so text that starts with "BM" is no image.
"""

from __future__ import annotations

import struct

from tfscoring.errors import PayloadTooLarge, ScoringError
from tfscoring.interface import Batch, Interface, TensorSpec
from tfscoring.protocols.image import cost, header
from tfscoring.protocols.limits import Limits

BYTES_PER_PIXEL = 4  # TensorFlow decodes into up to 4 channels of uint8
_INSPECTED = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_GIF = (b"GIF87a", b"GIF89a")
# The DIB header sizes BMP writers use (BITMAPCOREHEADER to BITMAPV5HEADER); TensorFlow's decoder reads the sides
# that follow the header size whatever it says.
_BMP_HEADERS = {12, 16, 40, 52, 56, 64, 108, 124}


def in_graph_bytes(arrays: Batch, interface: Interface, limits: Limits) -> int:
    """What the graph takes to decode the images among the string inputs' values (0 where there are none); a 413
    for one over the pixel limit, a 400 for a JPEG, PNG or WebP whose header is not one."""
    pixels, images = 0, 0
    for spec, array in zip(interface.inputs, arrays, strict=True):
        if not spec.strings:
            continue
        for k, value in enumerate(array.flat):
            found = _pixels(value, spec, limits.max_pixels, f"value {k} of the input {spec.name!r}")
            if found is not None:
                pixels, images = pixels + found, images + 1
    return pixels * BYTES_PER_PIXEL + (cost.CODEC_BYTES if images else 0)


def _pixels(value: bytes, spec: TensorSpec, max_pixels: int, where: str) -> int | None:
    """The pixels of every frame of the image `value` is, checked against `max_pixels`; None: it is no image."""
    if value.startswith(_INSPECTED) or (value[:4] == b"RIFF" and value[8:12] == b"WEBP"):
        try:
            read = header.inspect(value, spec, max_pixels)
        except ScoringError as err:  # its message speaks of a body: this is one value of a request
            raise type(err)(f"{where} is an image: {err.message.replace('body is', 'it is', 1)}") from None
        return read.width * read.height
    if value.startswith(_GIF) and len(value) >= 13:
        width, height = struct.unpack_from("<HH", value, 6)
        return _check(width * height * max(_gif_frames(value), 1), width, height, max_pixels, where, "GIF")
    if value[:2] == b"BM" and len(value) >= 26 and struct.unpack_from("<I", value, 14)[0] in _BMP_HEADERS:
        if struct.unpack_from("<I", value, 14)[0] == 12:
            width, height = struct.unpack_from("<hh", value, 18)
        else:
            width, height = struct.unpack_from("<ii", value, 18)
        width, height = abs(width), abs(height)  # a negative height is a top-down BMP
        return _check(width * height, width, height, max_pixels, where, "BMP")
    return None


def _check(pixels: int, width: int, height: int, max_pixels: int, where: str, kind: str) -> int:
    if pixels > max_pixels:
        raise PayloadTooLarge(
            f"{where} is a {width}x{height} {kind} image of {pixels} pixels in all (frames included); the limit is "
            f"{max_pixels} pixels"
        )
    return pixels


def _gif_frames(value: bytes) -> int:
    """The image descriptors of a GIF, walked block by block to its trailer or its end (a cut file counts the frames
    it holds: TensorFlow decodes no more)."""
    frames, pos, end = 0, 13, len(value)
    flags = value[10]
    if flags & 0x80:  # the global colour table
        pos += 3 << ((flags & 7) + 1)
    while pos < end:
        block = value[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # an extension: its label, then sub-blocks
            pos = _skip_sub_blocks(value, pos + 2)
        elif block == 0x2C:  # an image: its descriptor, a local colour table, the LZW code size, sub-blocks
            frames += 1
            if pos + 10 > end:
                break
            local = value[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 << ((local & 7) + 1)
            pos = _skip_sub_blocks(value, pos + 1)
        else:
            break  # not a GIF block: TensorFlow's decoder stops there too
    return frames


def _skip_sub_blocks(value: bytes, pos: int) -> int:
    end = len(value)
    while pos < end and value[pos]:
        pos += value[pos] + 1
    return pos + 1


def has_strings(interface: Interface) -> bool:
    """Whether the model takes a string input at all: only then is any value looked at."""
    return any(spec.strings for spec in interface.inputs)

"""Images inside byte strings (protocols/image/embedded.py): a string input's value that is an encoded image, which
the graph decodes itself, is checked as an image body is, in every form that carries bytes: over the pixel limit a
413 before the graph sees it, a JPEG, PNG or WebP header no encoder writes a 400, and what the graph's decodes take
reserved with the request; a value with no image signature (text, an id) is passed as it is."""

from __future__ import annotations

import base64
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from tests.pictures import jpeg_declaring, picture
from tests.unit.protocols.tables import (
    Decoded,
    assert_outcome,
    bad_request,
    binary_body,
    decode,
    interface,
    spec,
    too_large,
)
from tfscoring.protocols import registry
from tfscoring.protocols.image import cost, embedded
from tfscoring.protocols.limits import Limits

IMAGES = interface(spec("image_bytes", "BYTES", ()), spec("mean", "FP32", ()))
LIMIT = Limits().max_pixels


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def gif_declaring(height: int, width: int, screen: tuple[int, int] = (8, 8), frames: int = 1) -> bytes:
    """A small GIF whose frames' descriptors declare another size (TensorFlow decodes each at its frames' largest
    size, whatever the logical screen says), and whose logical screen says `screen` (width, height)."""
    body = bytearray(picture(8, 8, "GIF", frames=frames))
    body[6:10] = struct.pack("<HH", *screen)
    at = body.find(b"\x2c\x00\x00\x00\x00")  # an image descriptor: the separator, left and top at 0
    while at != -1:
        body[at + 5 : at + 9] = struct.pack("<HH", width, height)
        at = body.find(b"\x2c\x00\x00\x00\x00", at + 9)
    return bytes(body)


def bmp_declaring(height: int, width: int) -> bytes:
    body = bytearray(picture(8, 8, "BMP"))
    body[18:26] = struct.pack("<ii", width, -height)  # a top-down BMP's height is negative
    return bytes(body)


def graph_bytes(body: dict | bytes, content_type: str = "application/json") -> int:
    """What the decoded request reserves for the graph's own decodes."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return registry.find(content_type, {}, None).decode(raw, IMAGES, Limits()).graph_bytes


def bomb_message(k: int, width: int, height: int) -> str:
    return (
        f"value {k} of the input 'image_bytes' is an image: image is {width}x{height} = {width * height} pixels for "
        f"input 'image_bytes' (N); the limit is {LIMIT} pixels (width x height)"
    )


@pytest.mark.parametrize(
    ("form", "body"),
    [
        pytest.param("tfserving_rows", {"instances": [b64(picture(8, 8)), b64(jpeg_declaring(8000, 8000))]},
                     id="TF Serving rows"),
        pytest.param("tfserving_columns", {"inputs": [b64(picture(8, 8)), b64(jpeg_declaring(8000, 8000))]},
                     id="TF Serving columns"),
    ],
)  # fmt: skip
def test_a_jpeg_bomb_in_json_is_413_naming_its_value(form, body):
    assert_outcome(decode(form, body, IMAGES), too_large(bomb_message(1, 8000, 8000)))


def test_a_jpeg_bomb_in_a_binary_tensor_is_413():
    bomb = jpeg_declaring(8000, 8000)
    document = {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                            "parameters": {"binary_data_size": 4 + len(bomb)}}]}  # fmt: skip
    body, headers = binary_body(document, struct.pack("<I", len(bomb)) + bomb)
    got = decode("oip_binary", body, IMAGES, headers=headers)
    assert_outcome(got, too_large(bomb_message(0, 8000, 8000)))


def test_an_octet_stream_bomb_is_413():
    assert_outcome(decode("raw", jpeg_declaring(8000, 8000), IMAGES), too_large(bomb_message(0, 8000, 8000)))


def test_gif_frames_and_bmp_sides_count_against_the_limit():
    gif = gif_declaring(5000, 5000)
    assert_outcome(
        decode("tfserving_rows", {"instances": [b64(gif)]}, IMAGES),
        too_large(f"value 0 of the input 'image_bytes' is a 5000x5000 GIF image of 25000000 pixels in all (frames "
                  f"included); the limit is {LIMIT} pixels"),
    )  # fmt: skip
    assert_outcome(
        decode("tfserving_rows", {"instances": [b64(bmp_declaring(6000, 3000))]}, IMAGES),
        too_large(f"value 0 of the input 'image_bytes' is a 3000x6000 BMP image of 18000000 pixels in all (frames "
                  f"included); the limit is {LIMIT} pixels"),
    )  # fmt: skip
    side = 2048  # 4 frames of 2048 x 2048 are one 4096 x 4096 image's pixels: the limit; 5 are over it
    frames = gif_declaring(side, side, frames=5)
    assert decode("tfserving_rows", {"instances": [b64(frames)]}, IMAGES) == too_large(
        f"value 0 of the input 'image_bytes' is a {side}x{side} GIF image of {5 * side * side} pixels in all (frames "
        f"included); the limit is {LIMIT} pixels"
    )


def test_a_gifs_frames_count_at_their_own_size_not_the_logical_screens():
    # TensorFlow decodes a 1 x 1 screen holding an 8000 x 8000 frame to (1, 8000, 8000, 3), and a 10 x 10 frame on a
    # 5000 x 5000 screen to (1, 10, 10, 3).
    bomb = gif_declaring(8000, 8000, screen=(1, 1))
    assert decode("tfserving_rows", {"instances": [b64(bomb)]}, IMAGES) == too_large(
        f"value 0 of the input 'image_bytes' is a 8000x8000 GIF image of 64000000 pixels in all (frames included); "
        f"the limit is {LIMIT} pixels"
    )
    small = gif_declaring(10, 10, screen=(5000, 5000))
    assert graph_bytes({"instances": [b64(small)]}) == 4 * 10 * 10 + cost.CODEC_BYTES


def test_a_value_with_an_image_signature_and_no_image_header_is_400():
    got = decode("tfserving_rows", {"instances": [b64(b"\xff\xd8\xff\xe0 cut")]}, IMAGES)
    assert got.__class__.__name__ == "Refused" and got.message.startswith(  # type: ignore[union-attr]
        "value 0 of the input 'image_bytes' is an image: it is not a valid PNG, JPEG or WebP image"
    ), got
    assert got == bad_request(got.message)  # type: ignore[union-attr]


def test_what_the_graph_decodes_is_reserved_and_values_that_are_no_images_pass():
    rows = [picture(40, 30), picture(20, 50, "PNG"), picture(10, 10, "GIF", frames=3)]
    pixels = 40 * 30 + 20 * 50 + 3 * 10 * 10
    assert graph_bytes({"instances": [b64(r) for r in rows]}) == 4 * pixels + cost.CODEC_BYTES
    text = ["BMW X5 2019, 45,000 km, one owner, full history", "GIF is a format", "hello", ""]
    assert graph_bytes({"instances": text}) == 0
    assert graph_bytes(b"BM" + b"\x20" * 40, "application/octet-stream") == 0  # text after "BM": no DIB header


def jxl_bits(fields: list[tuple[int, int]]) -> bytes:
    """Bits written least significant first, as JPEG XL's headers are: (value, width) each."""
    number, width = 0, 0
    for value, bits in fields:
        number, width = number | value << width, width + bits
    return number.to_bytes(-(-width // 8), "little")


def jxl_declaring(height: int, width: int, container: bool = False) -> bytes:
    """A JPEG XL codestream's signature and SizeHeader (not small; 30-bit sides, ratio 0: the width given), and
    bytes after it: a bomb's header; in the container (ftyp, then a jxlc box) where `container`."""
    stream = b"\xff\x0a" + jxl_bits([(0, 1), (3, 2), (height - 1, 30), (0, 3), (3, 2), (width - 1, 30)]) + bytes(32)
    if not container:
        return stream
    ftyp = struct.pack(">I4s", 20, b"ftyp") + b"jxl \x00\x00\x00\x00jxl "
    return b"\x00\x00\x00\x0cJXL \r\n\x87\n" + ftyp + struct.pack(">I4s", 8 + len(stream), b"jxlc") + stream


def animated_webp(side: int, frames: int, alpha: bool) -> bytes:
    images = [Image.fromarray(np.full((8, 8, 4 if alpha else 3), 40 * k, np.uint8)) for k in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:], lossless=True)
    body = bytearray(buffer.getvalue())
    body[20] = body[20] | 0x10 if alpha else body[20] & ~0x10  # VP8X's alpha flag, as the frames are
    body[24:30] = (side - 1).to_bytes(3, "little") * 2  # the canvas
    return bytes(body)


def test_a_jpeg_xl_bomb_is_413_bare_or_in_its_container():
    expected = too_large(
        f"value 1 of the input 'image_bytes' is a 20000x20000 JPEG XL image of 400000000 pixels in all (frames "
        f"included); the limit is {LIMIT} pixels"
    )
    for container in (False, True):
        body = {"instances": [b64(picture(8, 8)), b64(jxl_declaring(20000, 20000, container))]}
        assert_outcome(decode("tfserving_rows", body, IMAGES), expected)


def test_a_jpeg_xl_is_reserved_at_its_decoders_bytes_a_pixel_and_one_without_a_codestream_is_400():
    assert graph_bytes({"instances": [b64(jxl_declaring(30, 40))]}) == 30 * 40 * embedded.JXL_BYTES_PER_PIXEL + (
        cost.CODEC_BYTES
    )
    no_codestream = b"\x00\x00\x00\x0cJXL \r\n\x87\n" + struct.pack(">I4s", 12, b"Exif") + b"\x00" * 4
    assert_outcome(
        decode("tfserving_rows", {"instances": [b64(no_codestream)]}, IMAGES),
        bad_request(
            "value 0 of the input 'image_bytes' is an image: it is not a valid JPEG XL image: its container holds no "
            "codestream"
        ),
    )
    assert_outcome(
        decode("tfserving_rows", {"instances": [b64(b"\xff\x0a\x06")]}, IMAGES),
        bad_request("value 0 of the input 'image_bytes' is an image: it is not a valid JPEG XL image: it ends inside "
                    "its size header"),
    )  # fmt: skip


def test_an_animated_webp_counts_every_frame_and_one_without_alpha_is_400():
    assert graph_bytes({"instances": [b64(animated_webp(8, 3, alpha=True))]}) == 4 * 8 * 8 * 3 + cost.CODEC_BYTES
    side = 2048  # 5 frames of 2048 x 2048: over the 4096 x 4096 limit, each frame under it
    assert_outcome(
        decode("tfserving_rows", {"instances": [b64(animated_webp(side, 5, alpha=True))]}, IMAGES),
        too_large(f"value 0 of the input 'image_bytes' is a {side}x{side} WebP image of {5 * side * side} pixels in "
                  f"all (frames included); the limit is {LIMIT} pixels"),
    )  # fmt: skip
    assert_outcome(
        decode("tfserving_rows", {"instances": [b64(animated_webp(8, 3, alpha=False))]}, IMAGES),
        bad_request(
            "value 0 of the input 'image_bytes' is an animated WebP without alpha, which TensorFlow 2.21's WebP "
            "decoder cannot take (it corrupts the process's memory): send its frames as separate images, or the "
            "animation with alpha"
        ),
    )
    # As the body itself (a model of one string input), too.
    assert decode("image", animated_webp(8, 3, alpha=False), IMAGES) == bad_request(
        "value 0 of the input 'image_bytes' is an animated WebP without alpha, which TensorFlow 2.21's WebP decoder "
        "cannot take (it corrupts the process's memory): send its frames as separate images, or the animation with "
        "alpha"
    )
    assert isinstance(decode("image", animated_webp(8, 3, alpha=True), IMAGES), Decoded)


def test_a_gif_of_any_gif8_version_is_checked_and_one_of_more_blocks_than_its_walk_is_400():
    odd_version = bytearray(gif_declaring(5000, 5000))
    odd_version[4:6] = b"7b"  # "GIF87b": tf.io.decode_image takes "GIF8" for a GIF, giflib any version
    assert decode("tfserving_rows", {"instances": [b64(bytes(odd_version))]}, IMAGES) == too_large(
        f"value 0 of the input 'image_bytes' is a 5000x5000 GIF image of 25000000 pixels in all (frames included); "
        f"the limit is {LIMIT} pixels"
    )
    # 1 MB of one-byte sub-blocks in one frame of 64 x 64: no walk of a value goes a block a byte, and frames not
    # walked could declare any size.
    tiny_blocks = (
        b"GIF89a" + struct.pack("<HHBBB", 64, 64, 0, 0, 0) + b"\x2c" + bytes(9) + b"\x02" + b"\x01\x00" * (1 << 19)
    )
    assert decode("tfserving_rows", {"instances": [b64(tiny_blocks)]}, IMAGES) == bad_request(
        "value 0 of the input 'image_bytes' is a GIF of more blocks than 256 and one per 16 bytes of it, which its "
        "check walks: send fewer frames, or its frames as separate images"
    )
    # Extensions without sub-blocks are blocks too.
    empty_extensions = b"GIF89a" + struct.pack("<HHBBB", 64, 64, 0, 0, 0) + b"\x21\xfe\x00" * 400_000 + b";"
    assert decode("tfserving_rows", {"instances": [b64(empty_extensions)]}, IMAGES).__class__.__name__ == "Refused"


@pytest.mark.parametrize(
    "value",
    [b"\x01\x00\x00\x00binary", "ünïcode text".encode(), b"\x89PN", b"RIFF", b"GIF", b"\xff\x0a"[:1], b"BM", b""],
)
def test_values_that_are_no_images_reserve_nothing(value):
    assert graph_bytes({"instances": [b64(value)]}) == 0

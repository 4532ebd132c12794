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

from tests.unit.protocols.tables import (
    assert_outcome,
    bad_request,
    binary_body,
    decode,
    interface,
    spec,
    too_large,
)
from tfscoring.protocols import registry
from tfscoring.protocols.image import cost
from tfscoring.protocols.limits import Limits

IMAGES = interface(spec("image_bytes", "BYTES", ()), spec("mean", "FP32", ()))
LIMIT = Limits().max_pixels


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def picture(height: int, width: int, kind: str = "JPEG", frames: int = 1) -> bytes:
    images = [Image.fromarray(np.full((height, width), 40 * k, np.uint8)) for k in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, kind, **({"save_all": True, "append_images": images[1:]} if frames > 1 else {}))
    return buffer.getvalue()


def jpeg_declaring(height: int, width: int) -> bytes:
    body = bytearray(picture(8, 8))
    at = body.index(b"\xff\xc0") + 5  # marker, length (2), precision (1): then height and width
    body[at : at + 4] = struct.pack(">HH", height, width)
    return bytes(body)


def gif_declaring(height: int, width: int) -> bytes:
    body = bytearray(picture(8, 8, "GIF"))
    body[6:10] = struct.pack("<HH", width, height)  # the logical screen
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
    frames = bytearray(picture(8, 8, "GIF", frames=5))
    frames[6:10] = struct.pack("<HH", side, side)
    assert decode("tfserving_rows", {"instances": [b64(bytes(frames))]}, IMAGES) == too_large(
        f"value 0 of the input 'image_bytes' is a {side}x{side} GIF image of {5 * side * side} pixels in all (frames "
        f"included); the limit is {LIMIT} pixels"
    )


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

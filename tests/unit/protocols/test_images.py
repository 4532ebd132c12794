"""Image bodies (image/png, image/jpeg, image/webp), for a model of one input that takes images: (H, W, C) with C 1, 3
or 4, (H, W) grayscale, or (H*W,) grayscale flattened; one image is one row, converted to the input's channels,
resized to its H x W where fixed, its pixels scaled by IMAGE_SCALE for a float input; answered as the how-to's
form.  The decoders' own rules in depth: test_image_decoding.py and test_image_containers.py."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.unit.protocols.tables import (
    DEMO,
    array,
    assert_outcome,
    bad_request,
    decode,
    encode,
    one_input,
    too_large,
)


def encoded(image: Image.Image, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def gray(pixels: list, image_format: str = "PNG", **options) -> bytes:
    return encoded(Image.fromarray(np.array(pixels, np.uint8), "L"), image_format, **options)


def png_declaring(width: int, height: int) -> bytes:
    """A 1-bit PNG whose header says width x height, carrying one row: what a decompression bomb's header says."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(bytes(1 + (width + 7) // 8))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PIXELS = [[10, 20], [30, 40]]
ROW = [[[10], [20]], [[30], [40]]]  # PIXELS as one row of a (2, 2, 1) input
GRAY = one_input("FP32", (2, 2, 1), "image")
RGB = one_input("FP32", (2, 2, 3), "image")
WHERE = "for input 'image' (N, 2, 2, 1)"
ROTATED = Image.Exif()
ROTATED[0x0112] = 3  # EXIF orientation: rotated 180 degrees
NOISE = np.random.default_rng(0).integers(0, 256, (16, 16), np.uint8)
NOISE_JPEG = encoded(Image.fromarray(NOISE, "L"), "JPEG", quality=90)
SCAN = NOISE_JPEG.index(b"\xff\xda")  # where the JPEG's scan begins
RGBA = np.array([[[100, 150, 200, 0]] * 2] * 2, np.uint8)  # transparent
PALETTE = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
PALETTE.putpalette([255, 0, 0, 0, 0, 255])
FIRST_FRAME, SECOND_FRAME = (Image.new("L", (2, 2), value) for value in (50, 200))
PNG = gray(PIXELS)
IDAT = PNG.index(b"IDAT")
WEBP = gray(PIXELS, "WEBP", lossless=True)  # RIFF, its size, WEBP, then its first chunk's type (VP8L) at 12


def does_not_take_images(shown: str, why: str) -> object:
    return bad_request(f"the model's input 'image' {shown} does not take images: {why}")


IMAGE_SHAPES = "an image input's row shape is (H, W, C) with C = 1, 3 or 4, (H, W) grayscale, or (H*W,) grayscale " \
    "flattened with H*W a square > 1"  # fmt: skip

PICTURES = [
    pytest.param(GRAY, PNG, "raw", array([ROW], "FP32"), id="a grayscale PNG"),
    pytest.param(GRAY, gray(PIXELS, "WEBP", lossless=True), "raw", array([ROW], "FP32"), id="a lossless WebP"),
    pytest.param(GRAY, gray([[128] * 16] * 16, "JPEG"), "raw", np.full((1, 2, 2, 1), 128, np.float32),
                 id="a JPEG, resized"),
    pytest.param(GRAY, PNG, "unit", array([ROW], "FP64").astype(np.float32) / np.float32(255),
                 id="IMAGE_SCALE=unit: pixel / 255"),
    pytest.param(GRAY, PNG, "signed", (array([ROW], "FP64") / 127.5 - 1).astype(np.float32),
                 id="IMAGE_SCALE=signed: pixel / 127.5 - 1"),
    pytest.param(one_input("FP64", (2, 2), "image"), gray([[255, 0], [0, 255]]), "signed",
                 array([[[1, -1], [-1, 1]]], "FP64"), id="float64, (H, W) grayscale"),
    pytest.param(one_input("FP16", (2, 2), "image"), gray([[255, 0], [0, 51]]), "unit",
                 array([[[1, 0], [0, 0.2]]], "FP16"), id="float16"),
    pytest.param(one_input("INT64", (2, 2), "image"), PNG, "unit", array([PIXELS], "INT64"),
                 id="an integer input takes the pixels unscaled"),
    pytest.param(one_input("UINT8", (4,), "image"), PNG, "signed", array([[10, 20, 30, 40]], "UINT8"),
                 id="(H*W,): the rows of a square image, flat"),
    pytest.param(RGB, PNG, "raw", array([[[[10] * 3, [20] * 3], [[30] * 3, [40] * 3]]], "FP32"),
                 id="a grayscale image in three channels"),
    pytest.param(RGB, encoded(Image.new("RGB", (8, 6), (200, 100, 50))), "raw", np.tile(
                 np.array([200, 100, 50], np.float32), (1, 2, 2, 1)), id="an RGB image resized"),
    pytest.param(GRAY, encoded(Image.new("RGB", (2, 2), (200, 100, 50))), "raw",
                 np.full((1, 2, 2, 1), 124, np.float32), id="an RGB image in one channel: its luma"),
    pytest.param(RGB, encoded(Image.fromarray(RGBA, "RGBA")), "raw",
                 np.tile(np.array([100, 150, 200], np.float32), (1, 2, 2, 1)), id="alpha dropped"),
    pytest.param(one_input("FP32", (2, 2, 4), "image"), encoded(Image.fromarray(RGBA, "RGBA")), "raw",
                 array([RGBA], "FP32"), id="alpha kept for four channels"),
    pytest.param(RGB, encoded(PALETTE), "raw",
                 array([[[[255, 0, 0], [0, 0, 255]], [[0, 0, 255], [255, 0, 0]]]], "FP32"),
                 id="a palette's colours"),
    pytest.param(GRAY, encoded(Image.fromarray(np.array([[0, 257], [65535, 514]], np.uint16))), "raw",
                 array([[[[0], [1]], [[255], [2]]]], "FP32"), id="16-bit grayscale scaled to 8 bits"),
    pytest.param(one_input("FP32", (-1, -1, 1), "image"), encoded(Image.new("L", (3, 5), 77)), "raw",
                 np.full((1, 5, 3, 1), 77, np.float32), id="a free height and width: the image's own"),
    pytest.param(GRAY, gray(PIXELS, exif=ROTATED.tobytes()), "raw", array([[[[40], [30]], [[20], [10]]]], "FP32"),
                 id="a PNG's EXIF orientation applied"),
    pytest.param(GRAY, gray(PIXELS, "JPEG", quality=100, exif=ROTATED.tobytes()), "raw",
                 array([[[[40], [30]], [[20], [10]]]], "FP32"), id="a JPEG's EXIF orientation applied"),
    pytest.param(GRAY, encoded(FIRST_FRAME, save_all=True, append_images=[SECOND_FRAME]), "raw",
                 np.full((1, 2, 2, 1), 50, np.float32), id="an animated PNG's first frame"),
    pytest.param(GRAY, encoded(FIRST_FRAME, "WEBP", lossless=True, save_all=True, append_images=[SECOND_FRAME]), "raw",
                 np.full((1, 2, 2, 1), 50, np.float32), id="an animated WebP's first frame"),
]  # fmt: skip

REFUSED = [
    pytest.param(GRAY, b"", bad_request(f"body is empty; expected a PNG, JPEG or WebP image {WHERE}"), id="empty"),
    pytest.param(GRAY, gray(PIXELS, "GIF"),
                 bad_request(f"body is not a PNG, JPEG or WebP image {WHERE} (other formats are refused)"), id="GIF"),
    pytest.param(GRAY, gray(PIXELS, "BMP"),
                 bad_request(f"body is not a PNG, JPEG or WebP image {WHERE} (other formats are refused)"), id="BMP"),
    pytest.param(GRAY, b"\xff\xd8",
                 bad_request(f"body is not a PNG, JPEG or WebP image {WHERE} (other formats are refused)"),
                 id="two bytes of a JPEG"),
    pytest.param(GRAY, PNG[:-12],
                 bad_request(f"body is not a valid PNG, JPEG or WebP image {WHERE}: the PNG is truncated: it ends "
                             "before its IEND chunk"),
                 id="a PNG cut before its end"),
    pytest.param(GRAY, PNG[:IDAT + 8],
                 bad_request(f"body is not a valid PNG, JPEG or WebP image {WHERE}: the PNG is truncated: its "
                             "'IDAT' chunk runs past the end of the body"),
                 id="a PNG cut in its pixels"),
    pytest.param(GRAY, PNG[:IDAT + 4] + bytes([PNG[IDAT + 4] ^ 0xFF]) + PNG[IDAT + 5:],
                 bad_request(f"body is not a valid PNG, JPEG or WebP image {WHERE}: the PNG's 'IDAT' chunk has a "
                             "wrong CRC"),
                 id="a PNG's pixels corrupt"),
    pytest.param(GRAY, NOISE_JPEG[:SCAN],
                 bad_request(f"body is not a valid PNG, JPEG or WebP image {WHERE}: the JPEG is truncated: it ends "
                             "before its image data"),
                 id="a JPEG cut before its scan"),
    pytest.param(GRAY, NOISE_JPEG[:SCAN + 40] + b"\xff\xd9",
                 bad_request(f"body is not a valid PNG, JPEG or WebP image {WHERE}: Corrupt JPEG data: premature end "
                             "of data segment"),
                 id="a JPEG's scan cut, its end marker kept"),
    pytest.param(GRAY, NOISE_JPEG[:2] + b"\xff\xe1\x00\x02" * 1100 + NOISE_JPEG[2:],
                 bad_request(f"JPEG image has more than 1024 marker segments before its image data {WHERE}; the limit "
                             "is 1024 (real files have under 300)"),
                 id="a JPEG padded with empty segments"),
    pytest.param(GRAY, WEBP[:12] + b"VP9L" + WEBP[16:],
                 bad_request(f"body is not a valid PNG, JPEG or WebP image {WHERE}: the WebP's first chunk 'VP9L' is "
                             "not a valid VP8, VP8L or VP8X header"),
                 id="a WebP of another first chunk"),
    pytest.param(GRAY, WEBP[:30],
                 bad_request(f"body is not a valid PNG, JPEG or WebP image {WHERE}: the WebP is truncated: its RIFF "
                             f"header says {len(WEBP)} bytes, the body has 30"),
                 id="a WebP cut"),
    pytest.param(GRAY, png_declaring(4097, 4097),
                 too_large(f"image is 4097x4097 = 16785409 pixels {WHERE}; the limit is 16777216 pixels (width x "
                           "height)"),
                 id="more pixels than the limit, refused on its header"),
    pytest.param(GRAY, png_declaring(1, 16385),
                 too_large(f"image is 1x16385 {WHERE}; the limit is 16384 pixels a side"), id="a side over the limit"),
    pytest.param(one_input("BOOL", (2, 2, 1), "image"), PNG,
                 does_not_take_images("BOOL (N, 2, 2, 1)", "it is bool; image inputs are float or integer"),
                 id="a bool input"),
    pytest.param(one_input("INT8", (2, 2, 1), "image"), PNG,
                 does_not_take_images("INT8 (N, 2, 2, 1)", "it is int8, which cannot hold pixel values 0-255"),
                 id="an int8 input"),
    pytest.param(one_input("FP32", (), "image"), PNG, does_not_take_images("FP32 (N)", IMAGE_SHAPES),
                 id="one value a row"),
    pytest.param(one_input("FP32", (10,), "image"), PNG, does_not_take_images("FP32 (N, 10)", IMAGE_SHAPES),
                 id="a row that is no square"),
    pytest.param(one_input("FP32", (2, 2, 2), "image"), PNG, does_not_take_images("FP32 (N, 2, 2, 2)", IMAGE_SHAPES),
                 id="two channels"),
    pytest.param(DEMO, PNG,
                 bad_request("an image/png body is for a model with one input; this model has 2 ('image' FP32 (N, 2, "
                             "2, 1), 'offset' INT64 (N)): name each, e.g. {\"inputs\": {\"image\": [rows of shape (2, "
                             '2, 1)], "offset": [one value per row]}}'),
                 id="a model of two inputs"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "body", "scale", "expected"), PICTURES)
def test_an_image_is_one_row_of_the_input(model, body, scale, expected):
    assert_outcome(decode("image", body, model, image_scale=scale), expected)


@pytest.mark.parametrize(("model", "body", "expected"), REFUSED)
def test_a_body_that_is_no_image_the_input_takes_is_refused_saying_why(model, body, expected):
    assert_outcome(decode("image", body, model), expected)


def test_the_answer_is_the_howto_forms_class_ids():
    answer = encode("image", (np.array([[0.1, 0.9, 0.3]], np.float32),), GRAY)
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == b"[1]"

"""Image bodies: one PNG, JPEG or WebP image becomes a batch of one row of the model's image input."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import TensorSpec
from tfscoring.protocols.image import header as image_header
from tfscoring.protocols.image.header import inspect
from tfscoring.protocols.image.layout import image_layout, takes_images
from tfscoring.protocols.images import decode_image

F32 = np.dtype("float32")
MNIST_FLAT = TensorSpec("x", "network/X:0", F32, (784,))
GRAY_28 = TensorSpec("image", "x:0", F32, (28, 28, 1))
RGB_28 = TensorSpec("image", "x:0", F32, (28, 28, 3))


def spec(shape: tuple[int, ...], dtype: str = "float32") -> TensorSpec:
    return TensorSpec("image", "input:0", np.dtype(dtype), shape)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def gray(pixels, fmt: str = "PNG") -> bytes:
    return encode(Image.fromarray(np.asarray(pixels, dtype=np.uint8), "L"), fmt)


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def png_declaring(width: int, height: int, bit_depth: int = 1, color_type: int = 0, rows: int = 1) -> bytes:
    """A PNG whose header claims width x height but which carries only `rows` rows of zeros: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row_bytes = 1 + (width * bit_depth + 7) // 8
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(bytes(row_bytes * rows), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# Which inputs take an image


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((28, 28, 1), (28, 28, 1, "hwc")),
        ((224, 224, 3), (224, 224, 3, "hwc")),
        ((32, 32, 4), (32, 32, 4, "hwc")),
        ((28, 28, -1), (28, 28, 3, "hwc")),
        ((-1, -1, 3), (None, None, 3, "hwc")),
        ((28, 28), (28, 28, 1, "hw")),
        ((-1, 28), (None, 28, 1, "hw")),
        ((784,), (28, 28, 1, "flat")),
        ((4,), (2, 2, 1, "flat")),
    ],
)
def test_image_inputs_are_hwc_hw_or_a_flattened_square(shape, layout):
    found = image_layout(spec(shape))
    assert (found.height, found.width, found.channels, found.form) == layout
    assert takes_images(spec(shape))


@pytest.mark.parametrize("shape", [(), (1,), (10,), (-1,), (28, 28, 2), (28, 28, 5), (1, 28, 28, 1), (0, 28, 1)])
def test_other_input_shapes_do_not_take_images_and_the_message_says_which_do(shape):
    input_spec = spec(shape)
    assert not takes_images(input_spec)
    with pytest.raises(BadRequest) as caught:
        decode_image(gray(np.zeros((28, 28))), input_spec, "unit")
    assert caught.value.status_code == 400
    message = caught.value.message
    assert "'image'" in message and input_spec.shown() in message and "does not take images" in message
    assert "(H, W, C) with C = 1, 3 or 4" in message and "(H*W,)" in message


def test_a_bool_input_does_not_take_images():
    with pytest.raises(BadRequest, match=r"'image' BOOL .*bool"):
        decode_image(gray(np.zeros((28, 28))), spec((28, 28, 1), "bool"), "unit")


def test_an_int8_input_does_not_take_images_as_it_cannot_hold_0_to_255():
    with pytest.raises(BadRequest, match="int8"):
        decode_image(gray(np.zeros((28, 28))), spec((28, 28, 1), "int8"), "raw")


# What comes back


def test_a_grayscale_png_becomes_one_row_of_the_input():
    pixels = noise(28, 28, channels=1)
    batch = decode_image(gray(pixels), GRAY_28, "unit")
    assert batch.shape == (1, 28, 28, 1)
    assert batch.dtype == np.float32
    assert batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[0, :, :, 0], pixels.astype(np.float32) / np.float32(255))


def test_an_rgb_png_keeps_its_channels_in_rgb_order():
    pixels = noise(28, 28)
    batch = decode_image(encode(Image.fromarray(pixels, "RGB")), RGB_28, "raw")
    np.testing.assert_array_equal(batch[0], pixels.astype(np.float32))


def test_the_howto_flat_784_input_takes_a_28x28_image_row_by_row():
    pixels = noise(28, 28, channels=1)
    batch = decode_image(gray(pixels), MNIST_FLAT, "raw")
    assert batch.shape == (1, 784)
    np.testing.assert_array_equal(batch[0], pixels.reshape(-1).astype(np.float32))


def test_an_hw_input_takes_a_grayscale_image_without_a_channel_dimension():
    pixels = noise(28, 28, channels=1)
    batch = decode_image(gray(pixels), spec((28, 28)), "raw")
    assert batch.shape == (1, 28, 28)
    np.testing.assert_array_equal(batch[0], pixels.astype(np.float32))


def test_a_color_image_is_converted_to_grayscale_for_a_one_channel_input():
    pixels = noise(28, 28)
    batch = decode_image(encode(Image.fromarray(pixels, "RGB")), GRAY_28, "raw")
    expected = np.asarray(Image.fromarray(pixels, "RGB").convert("L"))
    np.testing.assert_array_equal(batch[0, :, :, 0], expected.astype(np.float32))


def test_a_grayscale_image_is_repeated_across_three_channels_for_an_rgb_input():
    pixels = noise(28, 28, channels=1)
    batch = decode_image(gray(pixels), RGB_28, "raw")
    for channel in range(3):
        np.testing.assert_array_equal(batch[0, :, :, channel], pixels.astype(np.float32))


def test_a_free_channel_count_is_taken_as_rgb():
    batch = decode_image(gray(np.zeros((28, 28))), spec((28, 28, -1)), "raw")
    assert batch.shape == (1, 28, 28, 3)


# Size


def test_an_image_of_another_size_is_resized_to_the_inputs_height_and_width():
    batch = decode_image(encode(Image.new("RGB", (100, 60), (200, 100, 50))), RGB_28, "raw")
    assert batch.shape == (1, 28, 28, 3)
    np.testing.assert_array_equal(batch[0, 5, 7], [200, 100, 50])  # a flat color stays exactly that color


def test_resizing_averages_rather_than_samples_when_shrinking():
    stripes = np.zeros((56, 56), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: sampling would give all 0 or all 255
    batch = decode_image(gray(stripes), GRAY_28, "raw")
    assert np.all(np.abs(batch[0, 4:-4, 4:-4, 0] - 127.5) <= 1)


def test_a_free_height_and_width_keep_the_images_own_size():
    pixels = noise(17, 13)
    batch = decode_image(encode(Image.fromarray(pixels, "RGB")), spec((-1, -1, 3)), "raw")
    assert batch.shape == (1, 17, 13, 3)
    np.testing.assert_array_equal(batch[0], pixels.astype(np.float32))


def test_a_free_height_is_kept_while_a_fixed_width_is_resized_to():
    batch = decode_image(gray(np.full((17, 50), 9)), spec((-1, 28)), "raw")
    assert batch.shape == (1, 17, 28)
    assert np.all(batch == 9)


# Scaling and dtype


SCALE_PIXELS = np.array([[0, 1, 51, 127, 128, 200, 254, 255]], np.uint8)


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        ("unit", SCALE_PIXELS / 255.0),
        ("signed", SCALE_PIXELS / 127.5 - 1.0),
        ("raw", SCALE_PIXELS.astype(np.float64)),
    ],
)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_float_inputs_take_pixels_scaled_exactly(scale, expected, dtype):
    batch = decode_image(gray(SCALE_PIXELS), spec((-1, -1), dtype), scale)
    assert batch.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(batch[0], expected.astype(dtype))


def test_scale_end_points():
    ends = gray([[0, 255]])
    assert decode_image(ends, spec((1, 2)), "unit").tolist() == [[[0.0, 1.0]]]
    assert decode_image(ends, spec((1, 2)), "signed").tolist() == [[[-1.0, 1.0]]]
    assert decode_image(ends, spec((1, 2)), "raw").tolist() == [[[0.0, 255.0]]]


@pytest.mark.parametrize("dtype", ["uint8", "int32", "int64", "uint16"])
@pytest.mark.parametrize("scale", ["unit", "signed", "raw"])
def test_integer_inputs_take_pixels_raw_whatever_the_scale(dtype, scale):
    batch = decode_image(gray(SCALE_PIXELS), spec((1, 8, 1), dtype), scale)
    assert batch.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(batch[0, :, :, 0], SCALE_PIXELS.astype(dtype))


def test_an_unknown_scale_is_a_programming_error():
    with pytest.raises(ValueError, match="scale"):
        decode_image(gray(SCALE_PIXELS), spec((1, 8)), "percent")


# Formats and modes


def test_jpeg_grayscale_and_rgb_decode_close_to_their_colors():
    flat_gray = gray(np.full((28, 28), 100), "JPEG")
    assert np.all(np.abs(decode_image(flat_gray, GRAY_28, "raw") - 100) <= 2)
    flat_rgb = encode(Image.new("RGB", (64, 48), (30, 120, 220)), "JPEG", quality=95)
    batch = decode_image(flat_rgb, RGB_28, "raw")
    assert batch.shape == (1, 28, 28, 3)
    assert np.all(np.abs(batch[0] - [30, 120, 220]) <= 3)


def test_a_large_jpeg_is_shrunk_to_the_input_size():
    big = encode(Image.new("RGB", (2000, 1500), (10, 200, 90)), "JPEG", quality=95)
    batch = decode_image(big, RGB_28, "raw")
    assert batch.shape == (1, 28, 28, 3)
    assert np.all(np.abs(batch[0] - [10, 200, 90]) <= 3)


def test_webp_is_accepted_too():
    pixels = noise(20, 20)
    batch = decode_image(encode(Image.fromarray(pixels, "RGB"), "WEBP", lossless=True), spec((20, 20, 3)), "raw")
    np.testing.assert_array_equal(batch[0], pixels.astype(np.float32))


def test_the_format_is_read_from_the_bytes_so_any_image_type_may_carry_any_of_the_three():
    # decode_image is given no content type: a PNG sent as image/jpeg decodes as the PNG it is.
    pixels = noise(28, 28, channels=1)
    np.testing.assert_array_equal(decode_image(gray(pixels), GRAY_28, "raw")[0, :, :, 0], pixels)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_refused(fmt):
    with pytest.raises(BadRequest, match="not a PNG, JPEG or WebP image"):
        decode_image(gray(np.zeros((28, 28)), fmt), GRAY_28, "unit")


def test_rgba_becomes_rgb_by_dropping_alpha():
    pixels = noise(28, 28, channels=4)
    batch = decode_image(encode(Image.fromarray(pixels, "RGBA")), RGB_28, "raw")
    np.testing.assert_array_equal(batch[0], pixels[:, :, :3].astype(np.float32))


def test_an_rgba_input_keeps_alpha_and_rgb_gets_an_opaque_one():
    pixels = noise(28, 28, channels=4)
    rgba = spec((28, 28, 4), "uint8")
    np.testing.assert_array_equal(decode_image(encode(Image.fromarray(pixels, "RGBA")), rgba, "raw")[0], pixels)
    from_rgb = decode_image(encode(Image.fromarray(pixels[:, :, :3], "RGB")), rgba, "raw")
    assert np.all(from_rgb[0, :, :, 3] == 255)


def test_a_16_bit_grayscale_png_is_scaled_to_0_255_not_clipped():
    deep = np.array([[0, 257, 257 * 100, 32768, 65535]], np.uint16)
    png = encode(Image.fromarray(deep))
    assert Image.open(io.BytesIO(png)).mode.startswith("I")
    batch = decode_image(png, spec((1, 5), "uint8"), "raw")
    assert batch[0].tolist() == [[0, 1, 100, 128, 255]]


def test_a_palette_png_with_transparency_and_a_1_bit_png_decode():
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 255])
    batch = decode_image(encode(palette, transparency=0), spec((2, 2, 3), "uint8"), "raw")
    assert batch[0].tolist() == [[[255, 0, 0], [0, 0, 255]], [[0, 0, 255], [255, 0, 0]]]
    one_bit = Image.fromarray(np.array([[True, False]]))
    assert one_bit.mode == "1"
    assert decode_image(encode(one_bit), spec((1, 2), "uint8"), "raw").tolist() == [[[255, 0]]]


def test_an_animated_image_gives_its_first_frame():
    frames = [Image.new("L", (8, 8), value) for value in (10, 20, 30)]
    for fmt in ("PNG", "WEBP"):
        options = {"lossless": True} if fmt == "WEBP" else {}
        body = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
        assert getattr(Image.open(io.BytesIO(body)), "n_frames", 1) == 3
        assert np.all(decode_image(body, spec((8, 8), "uint8"), "raw") == 10), fmt


def test_exif_orientation_is_applied():
    pixels = noise(10, 20)  # stored 20 wide, 10 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    body = encode(Image.fromarray(pixels, "RGB"), "JPEG", exif=exif, quality=100)
    assert decode_image(body, spec((-1, -1, 3)), "raw").shape == (1, 20, 10, 3)


# Bodies refused


@pytest.mark.parametrize(
    "body", [b"", b"not an image", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b'{"data": [[0.5]]}', bytes(1000)]
)
def test_a_body_that_is_not_an_image_is_a_400(body):
    with pytest.raises(BadRequest) as caught:
        decode_image(body, GRAY_28, "unit")
    assert caught.value.status_code == 400
    assert "image" in caught.value.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_truncated_image_is_a_400(fmt):
    body = encode(Image.fromarray(noise(64, 64), "RGB"), fmt)
    with pytest.raises(BadRequest, match="not a valid PNG, JPEG or WebP image for input 'image'"):
        decode_image(body[: len(body) // 2], RGB_28, "unit")


def test_a_png_with_corrupt_pixel_data_is_a_400():
    body = bytearray(encode(Image.fromarray(noise(64, 64), "RGB")))
    start = body.index(b"IDAT") + 40
    body[start : start + 200] = bytes(200)
    with pytest.raises(BadRequest):
        decode_image(bytes(body), RGB_28, "unit")


def test_a_png_declaring_30000x30000_pixels_is_a_413_before_any_pixel_is_decoded():
    bomb = png_declaring(30000, 30000)
    assert len(bomb) < 200
    with pytest.raises(PayloadTooLarge) as caught:
        decode_image(bomb, GRAY_28, "unit")
    assert caught.value.status_code == 413


def test_a_real_compressed_bomb_under_pillows_own_limit_is_refused_at_max_pixels():
    # 5000 x 5000 1-bit zeros: 3 MB of rows, about 4 KB compressed, 25 M pixels > 4096 x 4096.
    bomb = png_declaring(5000, 5000, rows=5000)
    assert len(bomb) < 10_000
    with pytest.raises(
        PayloadTooLarge, match=r"5000x5000 = 25000000 pixels for input .image. \(N, 28, 28, 1\); the limit is 16777216"
    ):
        decode_image(bomb, GRAY_28, "unit")


def test_max_pixels_is_the_limit_on_width_times_height():
    body = gray(np.zeros((100, 100)))
    assert decode_image(body, GRAY_28, "unit", max_pixels=10_000).shape == (1, 28, 28, 1)
    with pytest.raises(PayloadTooLarge, match="limit is 9999 pixels"):
        decode_image(body, GRAY_28, "unit", max_pixels=9_999)


def test_pillows_own_bomb_check_is_a_413_even_where_its_warning_is_an_error():
    over_warning = png_declaring(10000, 10000)  # over Image.MAX_IMAGE_PIXELS, under twice it
    assert Image.MAX_IMAGE_PIXELS < 10000 * 10000 < 2 * Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(PayloadTooLarge):
            decode_image(over_warning, GRAY_28, "unit", max_pixels=200_000_000)
    with pytest.raises(PayloadTooLarge):  # over twice the limit: Pillow's DecompressionBombError
        decode_image(png_declaring(20000, 20000), GRAY_28, "unit", max_pixels=10**9)


def test_pillows_global_limit_is_left_as_it_was():
    before = Image.MAX_IMAGE_PIXELS
    decode_image(gray(np.zeros((28, 28))), GRAY_28, "unit")
    with pytest.raises(PayloadTooLarge):
        decode_image(png_declaring(30000, 30000), GRAY_28, "unit")
    assert before == Image.MAX_IMAGE_PIXELS


def test_the_servers_timeout_passes_through_rather_than_becoming_a_400(monkeypatch):
    def alarm(self):
        raise TimeoutError("scoring timeout")

    monkeypatch.setattr(ImageFile.ImageFile, "load", alarm)
    with pytest.raises(TimeoutError):
        decode_image(gray(np.zeros((28, 28))), GRAY_28, "unit")


def test_a_cmyk_jpeg_and_a_gray_alpha_png_convert_too():
    cmyk = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100)  # red
    assert np.all(np.abs(decode_image(cmyk, spec((8, 8, 3)), "raw")[0] - [255, 0, 0]) <= 3)
    gray_alpha = encode(Image.new("LA", (8, 8), (77, 0)))
    assert np.all(decode_image(gray_alpha, spec((8, 8)), "raw") == 77)


# Strict, and bounded before the expensive step (tfscoring.protocols.image: header.inspect, then pixels.decode)


def jpeg_segments(body: bytes) -> list[tuple[int, int]]:
    """(marker, offset) of a JPEG's segments up to its first SOS."""
    found, pos = [], 2
    while True:
        marker = body[pos + 1]
        found.append((marker, pos))
        if marker == 0xDA:
            return found
        pos += 2 + struct.unpack_from(">H", body, pos + 2)[0]


def with_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """The PNG with `chunks` inserted right after its IHDR."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    at = 8 + 12 + 13
    return png[:at] + b"".join(chunk(kind, data) for kind, data in chunks) + png[at:]


def test_a_jpeg_whose_scan_data_is_cut_but_keeps_its_end_marker_is_a_400():
    body = encode(Image.fromarray(noise(64, 64), "RGB"), "JPEG", quality=90)
    cut = body[: len(body) // 2] + b"\xff\xd9"  # Pillow fills the rest with grey and answers 200
    with pytest.raises(BadRequest, match=r"not a valid PNG, JPEG or WebP image .*(premature|Premature|corrupt)"):
        decode_image(cut, RGB_28, "unit")


def test_a_jpeg_with_corrupt_scan_data_is_a_400():
    body = bytearray(encode(Image.fromarray(noise(64, 64), "RGB"), "JPEG", quality=90))
    scan = jpeg_segments(bytes(body))[-1][1] + 20
    body[scan : scan + 300] = b"\xff\x00" * 150  # stuffed 0xFF bytes: valid framing, garbage Huffman codes
    with pytest.raises(BadRequest, match="not a valid PNG, JPEG or WebP image"):
        decode_image(bytes(body), RGB_28, "unit")


def test_a_truncated_png_is_refused_by_its_header_walk_before_any_pixel_is_decoded():
    body = encode(Image.fromarray(noise(64, 64), "RGB"))
    for cut in (len(body) // 2, len(body) - 12, len(body) - 1):  # inside IDAT, IEND missing, IEND cut
        with pytest.raises(BadRequest, match="the PNG is truncated"):
            inspect(body[:cut], RGB_28)


def no_decoder(monkeypatch) -> None:
    """Any call into a decoder (libjpeg through simplejpeg, Pillow) fails the test: a refusal comes first."""

    def called(*args, **kwargs):
        raise AssertionError("a decoder was called")

    for name in ("decode_jpeg", "decode_jpeg_header"):
        monkeypatch.setattr(image_header.simplejpeg, name, called)
    monkeypatch.setattr(Image, "open", called)


def test_a_jpeg_with_2000_empty_app1_segments_is_refused_cheaply_and_says_the_limit(monkeypatch):
    body = encode(Image.new("RGB", (8, 8)), "JPEG")
    empty = b"\xff\xe1\x00\x02"  # an APP1 segment of no data
    padded = body[:2] + empty * 2000 + body[2:]
    with pytest.raises(BadRequest, match=r"more than 1024 marker segments .* the limit is 1024"):
        decode_image(padded, RGB_28, "unit")
    attack = body[:2] + empty * 2_000_000 + body[2:]  # 8 MB: Pillow took about 6 s of GIL
    no_decoder(monkeypatch)
    with pytest.raises(BadRequest, match="1024"):
        inspect(attack, RGB_28)
    # Refused at the first segment over, not 2,000,000 later: a body that ends right after that segment is refused
    # for the count, where a walk that went on would have found it truncated.
    with pytest.raises(BadRequest, match="more than 1024 marker segments"):
        inspect(body[:2] + empty * (image_header.MAX_JPEG_SEGMENTS + 1), RGB_28)
    with pytest.raises(BadRequest, match="the JPEG is truncated"):
        inspect(body[:2] + empty * image_header.MAX_JPEG_SEGMENTS, RGB_28)
    monkeypatch.undo()
    # A real file's segments (APPn, DQT, DHT, SOF, a chunked ICC profile...) stay well under the limit.
    assert decode_image(body[:2] + empty * 1000 + body[2:], RGB_28, "raw").shape == (1, 28, 28, 3)


def test_a_jpeg_with_more_than_64_scans_is_refused():
    body = encode(Image.fromarray(noise(64, 64), "RGB"), "JPEG", progressive=True)
    assert 5 < body.count(b"\xff\xda") <= image_header.MAX_JPEG_SCANS  # libjpeg's progressive script: 10 scans
    assert decode_image(body, RGB_28, "raw").shape == (1, 28, 28, 3)
    end = body.rindex(b"\xff\xd9")
    extra = b"\xff\xda" * (image_header.MAX_JPEG_SCANS + 1 - body.count(b"\xff\xda"))
    with pytest.raises(BadRequest, match=r"JPEG image has 65 scans .* the limit is 64"):
        decode_image(body[:end] + extra + body[end:], RGB_28, "unit")


def test_a_png_with_too_many_chunks_is_refused():
    body = gray(np.zeros((8, 8)))
    limit = image_header.PNG_CHUNKS_BASE + (len(body) + 60 * 12) // image_header.PNG_CHUNK_BODY
    assert decode_image(with_chunks(body, [(b"prVt", b"")] * 60), GRAY_28, "raw").shape == (1, 28, 28, 1)
    with pytest.raises(BadRequest, match=r"PNG image has more than \d+ chunks .* the limit is 64 \+ 1 per 4096"):
        decode_image(with_chunks(body, [(b"prVt", b"")] * (limit + 10)), GRAY_28, "unit")


@pytest.mark.parametrize(("width", "height"), [(1, 16_777_216), (16_777_216, 1)])
def test_a_32_kb_png_of_1_by_16777216_pixels_is_a_413_naming_the_side_limit_before_any_decode(
    width, height, monkeypatch
):
    bomb = png_declaring(width, height, bit_depth=8, rows=height if width == 1 else 1)
    assert len(bomb) < 70_000
    no_decoder(monkeypatch)  # refused from the IHDR chunk, before Pillow or zlib sees a byte of IDAT
    with pytest.raises(PayloadTooLarge, match=f"image is {width}x{height} .*the limit is 16384 pixels a side"):
        decode_image(bomb, GRAY_28, "unit")


def test_an_image_with_a_side_of_16384_is_taken():
    tall = gray(noise(image_header.MAX_SIDE, 1, channels=1))
    assert decode_image(tall, GRAY_28, "raw").shape == (1, 28, 28, 1)


def test_the_16_bit_path_scales_without_wide_copies():
    import tracemalloc

    deep = np.random.default_rng(0).integers(0, 65536, (1024, 1024), dtype=np.uint16)
    png = encode(Image.fromarray(deep))
    tracemalloc.start()  # numpy's allocations are traced (Pillow's are not)
    try:
        batch = decode_image(png, spec((1024, 1024), "uint8"), "raw")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(batch[0], ((deep.astype(np.int64) + 128) // 257).astype(np.uint8))
    assert peak < 5 * deep.size  # its bytes (2), uint8 (1), the row (1), chunks; an int64 copy alone is 8


def test_the_decoded_bytes_of_a_16_bit_4096_square_png_cover_its_decode():
    header = inspect(png_declaring(4096, 4096, bit_depth=16), MNIST_FLAT)
    assert (header.format, header.width, header.height, header.kind) == ("PNG", 4096, 4096, "16-bit grayscale")
    pixels = 4096 * 4096
    # Pillow's I;16 image and its bytes (2 bytes a pixel each), the uint8 copy, the L image for the resize:
    # the formula bench/gil_hold.py checks against the peak RSS; no int64 copies (8 bytes a pixel each).
    assert 6 * pixels <= header.decoded_bytes <= 8 * pixels


def test_a_large_jpeg_is_decoded_at_a_dct_scale_for_a_fixed_input():
    big = encode(Image.fromarray(noise(1000, 800), "RGB"), "JPEG")
    header = inspect(big, RGB_28)
    assert (header.width, header.height, header.scaled_width, header.scaled_height) == (800, 1000, 100, 125)
    assert inspect(big, spec((-1, -1, 3))).scaled_width == 800  # a free size is decoded in full
    assert header.decoded_bytes < inspect(big, spec((-1, -1, 3))).decoded_bytes


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_jpeg_as_pillow_applies_it(orientation):
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    body = encode(Image.fromarray(noise(12, 20), "RGB"), "JPEG", exif=exif, quality=95)
    assert inspect(body, spec((-1, -1, 3))).orientation == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(body))).convert("RGB"))
    np.testing.assert_array_equal(decode_image(body, spec((-1, -1, 3), "uint8"), "raw")[0], expected)


def test_a_cmyk_jpeg_decodes_as_pillow_decodes_it_at_full_and_dct_scale():
    pixels = noise(64, 48, channels=4)
    body = encode(Image.fromarray(pixels, "CMYK"), "JPEG", quality=95)
    assert inspect(body, spec((-1, -1, 3))).colorspace == "CMYK"
    reference = Image.open(io.BytesIO(body)).convert("RGB")
    full = decode_image(body, spec((-1, -1, 3), "uint8"), "raw")[0]
    np.testing.assert_array_equal(full, np.asarray(reference))
    small = decode_image(body, spec((8, 6, 3), "uint8"), "raw")[0].astype(int)
    expected = np.asarray(reference.resize((6, 8), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(small - expected).mean() < 12  # libjpeg's 1/8 scale IDCT against a full decode, resized


def test_jpeg_pixels_match_pillows():
    body = encode(Image.fromarray(noise(64, 48), "RGB"), "JPEG", quality=90)
    reference = Image.open(io.BytesIO(body))
    rgb = decode_image(body, spec((-1, -1, 3), "uint8"), "raw")[0]
    np.testing.assert_array_equal(rgb, np.asarray(reference))  # the same libjpeg-turbo, the same settings
    # A grayscale input takes the luma plane (Y): on colour noise a few pixels differ from Pillow's RGB -> L,
    # where Pillow's upsampled RGB clips, by up to 16 levels at 4:2:0 (mean < 0.1); on a smooth picture, none.
    luma = decode_image(body, spec((-1, -1), "uint8"), "raw")[0].astype(int)
    off = np.abs(luma - np.asarray(reference.convert("L")).astype(int))
    assert off.max() <= 16 and off.mean() < 0.1
    y, x = np.mgrid[0:64, 0:48]
    smooth = encode(Image.fromarray(np.stack([x * 5, y * 3, (x + y) * 2], -1).astype(np.uint8)), "JPEG", quality=90)
    expected = np.asarray(Image.open(io.BytesIO(smooth)).convert("L"))
    np.testing.assert_array_equal(decode_image(smooth, spec((-1, -1), "uint8"), "raw")[0], expected)
    flat_gray = gray(noise(28, 28, channels=1), "JPEG")  # the how-to's inputs: grayscale, 28 x 28, exactly
    np.testing.assert_array_equal(
        decode_image(flat_gray, MNIST_FLAT, "raw")[0], np.asarray(Image.open(io.BytesIO(flat_gray))).reshape(-1)
    )


@pytest.mark.parametrize(
    ("options", "kind"),
    [({"lossless": True}, "lossless"), ({"quality": 80}, "lossy"), ({"save_all": True, "duration": 10}, "animated")],
)
def test_the_webp_header_gives_its_size_and_kind(options, kind):
    first = Image.fromarray(noise(30, 50), "RGB")
    if kind == "animated":
        options["append_images"] = [Image.fromarray(noise(30, 50, seed=1), "RGB")]
    body = encode(first, "WEBP", **options)
    header = inspect(body, RGB_28)
    assert (header.format, header.width, header.height) == ("WEBP", 50, 30)
    assert header.kind == kind or (kind != "animated" and header.kind == "extended")
    assert header.frames == (2 if kind == "animated" else 1)
    with pytest.raises(BadRequest, match="the WebP is truncated"):
        inspect(body[: len(body) // 2], RGB_28)


# Metadata: what Pillow copies besides the pixels is bounded (refused over MAX_METADATA_BYTES) and counted


def ztxt(index: int, size: int = 1 << 20) -> tuple[bytes, bytes]:
    """A zTXt chunk of about 1 KB that inflates to `size` bytes (Pillow's MAX_TEXT_CHUNK at most)."""
    return b"zTXt", b"key%d\x00\x00" % index + zlib.compress(b"a" * (size - 1), 9)


def test_a_png_of_63_ztxt_chunks_is_refused_naming_the_limit():
    body = gray(np.zeros((28, 28)))
    attack = with_chunks(body, [ztxt(i) for i in range(63)])  # 66 KB: +66 MiB in Pillow's text chunks
    assert len(attack) < 70_000
    with pytest.raises(BadRequest, match=r"metadata .* at most 8 of them compressed \(zTXt, iTXt, iCCP\)"):
        inspect(attack, MNIST_FLAT)
    with pytest.raises(BadRequest, match="at most 8 of them compressed"):
        inspect(with_chunks(body, [(b"iCCP", b"icc\x00\x00" + zlib.compress(b"x" * 100))] * 9), MNIST_FLAT)


@pytest.mark.parametrize("kind", [b"eXIf", b"abCd", b"tEXt", b"iTXt"])
def test_a_png_whose_ancillary_chunks_hold_over_1_mib_is_refused(kind):
    body = gray(np.zeros((28, 28)))
    taken = with_chunks(body, [(kind, b"MM\x00*" + bytes(image_header.MAX_METADATA_BYTES - 4))])
    assert inspect(taken, MNIST_FLAT).decoded_bytes >= 2 * image_header.MAX_METADATA_BYTES
    assert decode_image(taken, MNIST_FLAT, "raw").shape == (1, 784)
    over = with_chunks(body, [(kind, bytes(image_header.MAX_METADATA_BYTES // 2 + 1))] * 2)
    with pytest.raises(BadRequest, match=r"metadata .* may hold 1048576 bytes in all"):
        inspect(over, MNIST_FLAT)


def test_the_image_chunks_are_not_metadata():
    body = gray(np.zeros((28, 28)))
    chunks = [(b"tRNS", bytes(2)), (b"fdAT", bytes(image_header.MAX_METADATA_BYTES + 1))]
    assert inspect(with_chunks(body, chunks), MNIST_FLAT).width == 28


def test_a_png_counts_each_compressed_chunk_at_pillows_decompression_limit():
    body = gray(np.zeros((28, 28)))
    plain = inspect(body, MNIST_FLAT).decoded_bytes
    from PIL import PngImagePlugin

    for count in (1, 8):
        header = inspect(with_chunks(body, [ztxt(i) for i in range(count)]), MNIST_FLAT)
        assert header.decoded_bytes - plain >= count * PngImagePlugin.MAX_TEXT_CHUNK
    assert decode_image(with_chunks(body, [ztxt(i) for i in range(8)]), MNIST_FLAT, "raw").shape == (1, 784)


def test_a_webp_with_exif_over_1_mib_is_refused_and_its_metadata_and_body_are_counted():
    image = Image.fromarray(np.zeros((28, 28), np.uint8), "L")
    plain = encode(image, "WEBP")
    exif = b"MM\x00*" + bytes(image_header.MAX_METADATA_BYTES // 2)
    taken = encode(image, "WEBP", exif=exif, icc_profile=bytes(1000))
    cost = inspect(taken, MNIST_FLAT).decoded_bytes - inspect(plain, MNIST_FLAT).decoded_bytes
    assert cost >= len(taken) + len(exif)  # libwebp's copy of the body, and Pillow's of the EXIF chunk
    assert decode_image(taken, MNIST_FLAT, "raw").shape == (1, 784)
    over = encode(image, "WEBP", exif=b"MM\x00*" + bytes(image_header.MAX_METADATA_BYTES))
    with pytest.raises(BadRequest, match=r"WebP image carries \d+ bytes of metadata .* the limit is 1048576"):
        inspect(over, MNIST_FLAT)


def test_the_jpeg_exif_orientation_is_read_without_copying_the_segment():
    import tracemalloc

    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "x" * 60_000  # ImageDescription: a 60 KB APP1 segment
    body = encode(Image.fromarray(noise(32, 16), "RGB"), "JPEG", exif=exif.tobytes())
    tracemalloc.start()
    try:
        header = inspect(body, RGB_28)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert header.orientation == 6
    assert peak < 16_000  # the segment (60 KB) is read through a view


# --- PNG and WebP: strict containers (containers.py), EXIF orientation as for JPEG


def _with_exif_orientation(fmt: str, orientation: int) -> bytes:
    """A 28x28 picture, its top-left quarter white, saved with an EXIF orientation."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[:14, :14] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, exif=exif, **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_png_and_webp_exif_orientation_is_applied_as_pillow_does(fmt, orientation):
    body = _with_exif_orientation(fmt, orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(body))).convert("L"), np.float32) / 255
    assert np.array_equal(decode_image(body, GRAY_28, "unit")[0, :, :, 0], expected)


def test_a_png_whose_image_data_holds_fewer_rows_than_its_header_says_is_a_400():
    whole = gray(np.full((28, 28), 200))
    pos = whole.index(b"IDAT") - 4
    length = struct.unpack_from(">I", whole, pos)[0]
    rows = zlib.compress(b"\x00" + bytes([200]) * 28)  # one row of 28, a complete zlib stream
    idat = b"IDAT" + rows
    short = whole[:pos] + struct.pack(">I", len(rows)) + idat + struct.pack(">I", zlib.crc32(idat))
    short += whole[pos + 12 + length :]
    assert Image.open(io.BytesIO(short)).load() is not None  # Pillow takes it, the rows missing as zeros
    with pytest.raises(BadRequest, match="short"):
        decode_image(short, GRAY_28, "unit")


def test_a_decoders_message_shows_no_object_address():
    assert image_header.first_line(OSError("cannot identify image file <_io.BytesIO object at 0x7f8494ee6d40>")) == (
        "cannot identify image file"
    )

"""tfscoring.protocols.image.containers: strict, bounded PNG and WebP container checks (bodies built in memory)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tfscoring.protocols.image import containers
from tfscoring.protocols.image.containers import (
    ContainerError,
    check_png,
    check_webp,
    png_exif,
    png_filtered_size,
    webp_exif,
)
from tfscoring.protocols.image.exif import orientation

# Helpers


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def noise(height: int, width: int, channels: int = 1, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    top = 256 if dtype == np.uint8 else 65536
    return np.random.default_rng(seed).integers(0, top, shape, dtype=dtype)


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def ihdr(width: int, height: int, depth: int = 8, color: int = 0, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))


def png(*chunks: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + chunk(b"IEND", b"")


def gray_rows(width: int, height: int) -> bytes:
    """Filter byte 0 and `width` 8-bit samples per row."""
    return b"".join(b"\x00" + bytes((x + y) % 256 for x in range(width)) for y in range(height))


def gray_png(width: int = 28, height: int = 28, data: bytes | None = None, *extra: bytes) -> bytes:
    data = zlib.compress(gray_rows(width, height)) if data is None else data
    return png(ihdr(width, height), *extra, chunk(b"IDAT", data))


def riff(*chunks: bytes, size: int | None = None) -> bytes:
    payload = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(payload) if size is None else size) + payload


def wchunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)


def split_webp(body: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level (kind, payload) chunks of a WebP."""
    pos, out = 12, []
    while pos < len(body):
        kind, size = struct.unpack_from("<4sI", body, pos)
        out.append((kind, body[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return out


def vp8x(flags: int, width: int = 28, height: int = 28) -> bytes:
    sides = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return wchunk(b"VP8X", bytes([flags, 0, 0, 0]) + sides)


def image_chunk() -> bytes:
    """A 28x28 lossless image chunk, as Pillow writes it."""
    body = encode(Image.fromarray(noise(28, 28)), "WEBP", lossless=True)
    kind, data = split_webp(body)[0]
    assert kind == b"VP8L"
    return wchunk(kind, data)


def pillow_loads(body: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
    except Exception:
        return False
    return True


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


# PNG: real files pass


@pytest.mark.parametrize(
    ("mode", "array", "options", "depth", "color"),
    [
        ("L", noise(37, 29), {}, 8, 0),
        ("I;16", noise(37, 29, dtype=np.uint16), {}, 16, 0),
        ("RGB", noise(37, 29, 3), {}, 8, 2),
        ("RGB", noise(37, 29, 3), {"compress_level": 1}, 8, 2),
        ("RGBA", noise(37, 29, 4), {}, 8, 6),
        ("LA", noise(37, 29, 2), {}, 8, 4),
        ("1", noise(37, 29) > 127, {}, 1, 0),
    ],
)
def test_pillow_written_pngs_pass(mode, array, options, depth, color):
    image = Image.fromarray(array)
    assert image.mode == mode
    body = encode(image, "PNG", **options)
    info = check_png(body)
    assert (info.width, info.height, info.bit_depth, info.color_type) == (29, 37, depth, color)
    assert info.filtered_bytes == len(zlib.decompress(b"".join(_idat(body))))


def _idat(body: bytes) -> list[bytes]:
    pos, out = 8, []
    while pos < len(body):
        length, kind = struct.unpack_from(">I4s", body, pos)
        if kind == b"IDAT":
            out.append(body[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return out


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_pillow_palette_pngs_pass(bits):
    image = Image.new("P", (23, 31))
    image.putdata((noise(31, 23).astype(np.int64) % (1 << bits)).reshape(-1).tolist())
    image.putpalette([v % 256 for v in range(3 * (1 << bits))])
    body = encode(image, "PNG", bits=bits, transparency=0)
    info = check_png(body)
    assert info.color_type == 3 and info.palette_entries >= 1


def test_rgb_png_with_transparency_and_text_and_exif_passes():
    image = Image.fromarray(noise(20, 30, 3), "RGB")
    meta = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    meta.add_text("a", "b")
    meta.add_text("c", "d" * 2000, zip=True)
    body = encode(image, "PNG", transparency=(1, 2, 3), pnginfo=meta, exif=exif_orientation(6))
    info = check_png(body)
    assert info.text_chunks == 2 and info.exif is not None


def test_apng_checks_the_default_image_only():
    frames = [Image.fromarray(noise(24, 24, 3, seed=s), "RGB") for s in range(3)]
    body = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert b"fdAT" in body
    info = check_png(body)
    assert info.frames == 3


def adam7_png(array: np.ndarray) -> bytes:
    """An interlaced 8-bit grayscale PNG written by hand (Pillow does not write Adam7)."""
    height, width = array.shape
    raw = b""
    for x0, y0, dx, dy in containers._ADAM7:
        sub = array[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    return png(ihdr(width, height, interlace=1), chunk(b"IDAT", zlib.compress(raw)))


@pytest.mark.parametrize(("height", "width"), [(1, 1), (3, 5), (8, 8), (13, 29), (28, 28)])
def test_hand_written_adam7_png_passes_and_decodes_as_pillow_reads_it(height, width):
    array = noise(height, width, seed=height * width)
    body = adam7_png(array)
    info = check_png(body)
    assert info.interlaced
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))), array)


def test_adam7_filtered_size_counts_no_row_for_an_empty_pass():
    # 1x1: only pass 1 has a pixel; 2 bytes (filter byte + sample).
    assert png_filtered_size(1, 1, 8, 0, True) == 2
    # A non-interlaced 28x28 RGB: 28 rows of 1 + 84 bytes.
    assert png_filtered_size(28, 28, 8, 2, False) == 28 * 85
    # 1-bit rows round up to whole bytes.
    assert png_filtered_size(9, 2, 1, 0, False) == 2 * 3


def test_adam7_with_a_pass_missing_is_refused():
    array = noise(13, 29)
    height, width = array.shape
    raw = b""
    for x0, y0, dx, dy in containers._ADAM7[:-1]:  # the 7th pass (every other row) left out
        sub = array[y0::dy, x0::dx]
        raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    body = png(ihdr(width, height, interlace=1), chunk(b"IDAT", zlib.compress(raw)))
    with pytest.raises(ContainerError, match="short"):
        check_png(body)


# PNG: what Pillow lets through


def test_a_complete_stream_of_1_of_28_rows_is_refused():
    body = gray_png(data=zlib.compress(gray_rows(28, 1)))
    assert pillow_loads(body)  # the missing rows silently zero
    with pytest.raises(ContainerError, match="short: 29 of the 812 bytes"):
        check_png(body)


def test_a_4096_square_header_with_a_tiny_stream_is_refused():
    body = png(ihdr(4096, 4096), chunk(b"IDAT", zlib.compress(bytes(4097 * 10))))
    with pytest.raises(ContainerError, match="short"):
        check_png(body)


def test_a_wrong_chunk_crc_is_refused():
    good = gray_png()
    data = zlib.compress(gray_rows(28, 28))
    body = png(ihdr(28, 28), chunk(b"IDAT", data, crc=zlib.crc32(b"IDAT" + data) ^ 1))
    assert pillow_loads(body)
    check_png(good)
    with pytest.raises(ContainerError, match="'IDAT' chunk has a wrong CRC"):
        check_png(body)


def test_a_wrong_adler32_is_refused():
    data = bytearray(zlib.compress(gray_rows(28, 28)))
    data[-1] ^= 1
    with pytest.raises(ContainerError, match=r"corrupt: .*incorrect data check"):
        check_png(gray_png(data=bytes(data)))


def test_extra_data_past_the_last_row_is_refused():
    body = gray_png(data=zlib.compress(gray_rows(28, 29)))
    assert pillow_loads(body)
    with pytest.raises(ContainerError, match="more than the 812 bytes"):
        check_png(body)


def test_a_huge_extra_stream_is_refused_without_inflating_it_all(monkeypatch):
    calls = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self):
            self.inner = real()

        def decompress(self, data, max_length=0):
            calls.append(max_length)
            return self.inner.decompress(data, max_length)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(containers.zlib, "decompressobj", Counting)
    body = gray_png(data=zlib.compress(bytes(64 << 20), 9))  # 64 MiB of rows for a 28x28 image
    with pytest.raises(ContainerError, match="more than"):
        check_png(body)
    assert len(calls) <= 2 and max(calls) <= 813


def test_a_stream_that_does_not_end_is_refused():
    inflater = zlib.compressobj()
    data = inflater.compress(gray_rows(28, 28)) + inflater.flush(zlib.Z_SYNC_FLUSH)  # all rows, no end
    with pytest.raises(ContainerError, match="does not end"):
        check_png(gray_png(data=data))


@pytest.mark.parametrize("tail", [b"\x00", b"junk", zlib.compress(b"more")])
def test_bytes_after_the_zlib_stream_are_refused(tail):
    with pytest.raises(ContainerError, match="after the end of its zlib stream"):
        check_png(gray_png(data=zlib.compress(gray_rows(28, 28)) + tail))


def test_bytes_after_the_zlib_stream_in_a_later_idat_are_refused():
    data = zlib.compress(gray_rows(28, 28))
    body = png(ihdr(28, 28), chunk(b"IDAT", data), chunk(b"IDAT", b"x"))
    with pytest.raises(ContainerError, match="after the end of its zlib stream"):
        check_png(body)


def test_a_stream_split_over_many_idats_and_input_pieces_passes(monkeypatch):
    monkeypatch.setattr(containers, "INFLATE_INPUT", 7)
    monkeypatch.setattr(containers, "INFLATE_OUTPUT", 5)
    data = zlib.compress(gray_rows(28, 28))
    parts = [chunk(b"IDAT", data[i : i + 11]) for i in range(0, len(data), 11)]
    info = check_png(png(ihdr(28, 28), chunk(b"IDAT", b""), *parts))
    assert info.idat_bytes == len(data)


def test_a_palette_png_without_plte_is_refused():
    body = png(ihdr(28, 28, color=3), chunk(b"IDAT", zlib.compress(gray_rows(28, 28))))
    assert pillow_loads(body)
    with pytest.raises(ContainerError, match="no PLTE"):
        check_png(body)


def test_palette_indexes_past_the_palette_are_left_to_getextrema():
    """check_png passes them (the unfiltered rows would be needed); PngInfo says a check is due and Pillow's
    getextrema after load is that check, in C."""
    rows = b"".join(b"\x00" + bytes([0, 200] * 14) for _ in range(28))
    body = png(ihdr(28, 28, color=3), chunk(b"PLTE", b"\xff\x00\x00"), chunk(b"IDAT", zlib.compress(rows)))
    assert pillow_loads(body)
    info = check_png(body)
    assert info.palette_entries == 1 < 2**info.bit_depth
    with Image.open(io.BytesIO(body)) as image:
        image.load()
        assert image.getextrema()[1] >= info.palette_entries


@pytest.mark.parametrize(
    ("chunks", "why"),
    [
        ((ihdr(28, 28, color=2), chunk(b"PLTE", b"\x00" * 4)), "PLTE chunk is 4 bytes"),
        ((ihdr(28, 28, color=2), chunk(b"PLTE", b"\x00" * 3 * 257)), "1 to 256 entries"),
        ((ihdr(28, 28, color=2), chunk(b"PLTE", b"")), "PLTE chunk is 0 bytes"),
        ((ihdr(28, 28, color=0), chunk(b"PLTE", b"\x00" * 3)), "grayscale PNG has a PLTE"),
        ((ihdr(28, 28, color=2), chunk(b"PLTE", b"\x00" * 3), chunk(b"PLTE", b"\x00" * 3)), "two 'PLTE'"),
        ((ihdr(28, 28), ihdr(28, 28)), "two 'IHDR'"),
        ((ihdr(28, 28), chunk(b"gAMA", b"\x00" * 4), chunk(b"gAMA", b"\x00" * 4)), "two 'gAMA'"),
        ((ihdr(28, 28), chunk(b"ABCD", b"")), "unknown critical chunk 'ABCD'"),
        ((ihdr(28, 28), chunk(b"a1cd", b"")), "invalid type"),
        ((ihdr(28, 28, depth=3),), "bit depth 3"),
        ((ihdr(28, 28, interlace=2),), "interlace method"),
        ((ihdr(0, 28),), "0x28"),
        ((ihdr(28, 28, color=0), chunk(b"tRNS", b"\x00" * 6)), "tRNS chunk is 6 bytes"),
        ((ihdr(28, 28, color=6), chunk(b"tRNS", b"\x00" * 2)), "alpha channel already"),
    ],
)
def test_structures_no_encoder_writes_are_refused(chunks, why):
    with pytest.raises(ContainerError, match=why):
        check_png(png(*chunks, chunk(b"IDAT", zlib.compress(bytes(28 * 85)))))


def test_a_palette_png_with_a_trns_longer_than_its_palette_is_refused():
    body = png(
        ihdr(28, 28, color=3),
        chunk(b"PLTE", b"\x00" * 6),
        chunk(b"tRNS", b"\x00" * 3),
        chunk(b"IDAT", zlib.compress(bytes(28 * 29))),
    )
    with pytest.raises(ContainerError, match="tRNS chunk has 3 entries, its palette 2"):
        check_png(body)


def test_idat_chunks_must_be_consecutive():
    data = zlib.compress(gray_rows(28, 28))
    body = png(ihdr(28, 28), chunk(b"IDAT", data[:10]), chunk(b"tEXt", b"a\x00b"), chunk(b"IDAT", data[10:]))
    with pytest.raises(ContainerError, match="not consecutive"):
        check_png(body)


def test_iend_must_be_last_and_empty():
    good = gray_png()
    with pytest.raises(ContainerError, match="1 byte"):
        check_png(good + b"\x00")
    with pytest.raises(ContainerError, match="after its IEND"):
        check_png(good + chunk(b"tEXt", b"a\x00b"))
    with pytest.raises(ContainerError, match="ends before its IEND"):
        check_png(good[:-12])
    with pytest.raises(ContainerError, match="IEND chunk is not empty"):
        check_png(good[:-12] + chunk(b"IEND", b"x"))


def test_no_idat_and_truncation_and_signature():
    with pytest.raises(ContainerError, match="no image data"):
        check_png(png(ihdr(28, 28)))
    with pytest.raises(ContainerError, match="truncated: its 'IDAT' chunk runs past the end"):
        check_png(gray_png()[:50])
    with pytest.raises(ContainerError, match="signature"):
        check_png(b"GIF89a")
    with pytest.raises(ContainerError, match="does not start with its IHDR"):
        check_png(png(chunk(b"IDAT", b"")))


def test_the_chunk_count_is_capped():
    texts = [chunk(b"tEXt", b"k\x00v")] * 70
    with pytest.raises(ContainerError, match="more than 64"):
        check_png(gray_png(28, 28, None, *texts), max_chunks=64)
    assert check_png(gray_png(28, 28, None, *texts), max_chunks=100).text_chunks == 70


def test_max_pixels_is_a_backstop_before_the_inflate():
    with pytest.raises(ContainerError, match="over 100 pixels"):
        check_png(gray_png(), max_pixels=100)


def test_containers_error_is_a_value_error():
    assert issubclass(ContainerError, ValueError)


# PNG EXIF


def test_png_exif_from_pillow_reads_the_orientation():
    body = encode(Image.fromarray(noise(10, 20)), "PNG", exif=exif_orientation(6))
    exif = png_exif(body)
    assert exif is not None and exif.startswith(b"Exif\x00\x00")
    assert orientation(exif) == 6
    assert png_exif(body, check_png(body)) == exif


def test_png_exif_absent_or_already_prefixed():
    assert png_exif(gray_png()) is None
    tiff = exif_orientation(8)
    tiff = tiff[6:] if tiff.startswith(b"Exif\x00\x00") else tiff
    prefixed = gray_png(28, 28, None, chunk(b"eXIf", b"Exif\x00\x00" + tiff))
    assert orientation(png_exif(prefixed)) == 8
    twice = gray_png(28, 28, None, chunk(b"eXIf", tiff), chunk(b"eXIf", tiff))
    with pytest.raises(ContainerError, match="two 'eXIf'"):
        png_exif(twice)


# WebP: real files pass


def webp_cases() -> dict[str, bytes]:
    rgb = Image.fromarray(noise(40, 30, 3), "RGB")
    rgba = Image.fromarray(noise(40, 30, 4), "RGBA")
    frames = [Image.fromarray(noise(40, 30, 3, seed=s), "RGB") for s in range(3)]
    icc = b"\x00" * 200 + b"fake icc"
    return {
        "lossy": encode(rgb, "WEBP"),
        "lossless": encode(rgb, "WEBP", lossless=True),
        "lossy-alpha": encode(rgba, "WEBP"),
        "lossless-alpha": encode(rgba, "WEBP", lossless=True),
        "animated": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "animated-alpha": encode(
            rgba, "WEBP", save_all=True, append_images=[Image.fromarray(noise(40, 30, 4, seed=s)) for s in (1, 2)]
        ),
        "icc-exif": encode(rgb, "WEBP", icc_profile=icc, exif=exif_orientation(6)),
        "icc-exif-xmp-alpha": encode(rgba, "WEBP", icc_profile=icc, exif=exif_orientation(3), xmp=b"<x/>"),
        "animated-exif": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], exif=exif_orientation(6)),
    }


@pytest.mark.parametrize("name", list(webp_cases()))
def test_pillow_written_webps_pass(name):
    body = webp_cases()[name]
    assert pillow_loads(body)
    info = check_webp(body)
    assert info.chunks <= containers.WEBP_MAX_CHUNKS
    if name.startswith("animated"):
        assert info.kind == "animated" and info.frames == 3 and info.canvas == (30, 40)
    if "icc" in name:
        assert info.iccp_bytes == 208 and info.exif_bytes > 0
    if "xmp" in name:
        assert info.xmp_bytes == 4
    if name in ("lossy", "lossless"):
        assert info.kind == name and info.canvas is None


def test_webp_exif_reads_the_orientation():
    body = webp_cases()["icc-exif"]
    exif = webp_exif(body)
    assert orientation(exif) == 6
    assert webp_exif(body, check_webp(body)) == exif
    assert webp_exif(webp_cases()["lossy"]) is None
    assert orientation(webp_exif(webp_cases()["animated-exif"])) == 6


def test_webp_exif_without_the_exif_prefix_gets_it():
    tiff = exif_orientation(8)
    tiff = tiff[6:] if tiff.startswith(b"Exif\x00\x00") else tiff
    body = riff(vp8x(0x08), image_chunk(), wchunk(b"EXIF", tiff))
    assert orientation(webp_exif(body)) == 8


# WebP: what libwebp's demuxer takes, a record per chunk


def test_many_empty_unknown_chunks_after_an_extended_image_are_refused():
    body = riff(vp8x(0), image_chunk(), *[wchunk(b"XXXX", b"")] * 1000)
    assert pillow_loads(body)
    with pytest.raises(ContainerError, match="more than 8 chunks"):
        check_webp(body)
    check_webp(riff(vp8x(0), image_chunk(), wchunk(b"XXXX", b"")))  # one unknown chunk is fine


@pytest.mark.parametrize("kind", [b"ICCP", b"EXIF", b"XMP "])
def test_repeated_metadata_chunks_are_refused(kind):
    flags = {b"ICCP": 0x20, b"EXIF": 0x08, b"XMP ": 0x04}[kind]
    parts = [image_chunk(), wchunk(kind, b""), wchunk(kind, b"")]
    if kind == b"ICCP":
        parts = [wchunk(kind, b""), wchunk(kind, b""), image_chunk()]
    body = riff(vp8x(flags), *parts)
    with pytest.raises(ContainerError, match=f"two {kind.decode()!r} chunks"):
        check_webp(body)


def test_chunks_after_a_simple_webp_image_are_refused():
    body = encode(Image.fromarray(noise(28, 28)), "WEBP", lossless=True)
    padded = riff(*(wchunk(k, d) for k, d in split_webp(body)), wchunk(b"XXXX", b""))
    assert pillow_loads(padded)
    with pytest.raises(ContainerError, match="after its image"):
        check_webp(padded)


def test_the_riff_size_must_match_the_body():
    body = webp_cases()["lossless"]
    check_webp(body)
    check_webp(body + b"\x00")  # one pad byte past the RIFF size, as libwebp allows
    with pytest.raises(ContainerError, match="RIFF header says"):
        check_webp(body + b"\x00\x00")
    with pytest.raises(ContainerError, match="RIFF header says"):
        check_webp(body[:-2])
    with pytest.raises(ContainerError, match="RIFF header says"):
        check_webp(body[:4] + struct.pack("<I", len(body) - 10) + body[8:])
    with pytest.raises(ContainerError, match="not a RIFF WebP"):
        check_webp(b"RIFF\x00\x00\x00\x00WAVE")


def test_the_last_chunks_pad_byte_may_be_outside_the_riff_size():
    odd = riff(vp8x(0), image_chunk(), wchunk(b"XMP ", b"abc"))
    assert len(odd) % 2 == 0
    check_webp(odd)
    check_webp(odd[:4] + struct.pack("<I", len(odd) - 9) + odd[8:])
    check_webp(odd[:-1][:4] + struct.pack("<I", len(odd) - 9) + odd[8:-1])


def test_a_chunk_past_the_riff_data_is_refused():
    body = riff(vp8x(0), image_chunk(), b"XXXX" + struct.pack("<I", 100))
    with pytest.raises(ContainerError, match="runs past the end"):
        check_webp(body)
    with pytest.raises(ContainerError, match="stray byte"):
        check_webp(riff(vp8x(0), image_chunk(), b"XXXX"))


def test_frames_are_capped_apart_from_chunks():
    body = webp_cases()["animated"]
    assert check_webp(body, max_frames=3).frames == 3
    with pytest.raises(ContainerError, match="more than 2 animation frames"):
        check_webp(body, max_frames=2)


def anmf(payload: bytes, x: int = 0, y: int = 0, width: int = 28, height: int = 28) -> bytes:
    header = b"".join(v.to_bytes(3, "little") for v in (x // 2, y // 2, width - 1, height - 1, 100)) + b"\x00"
    return wchunk(b"ANMF", header + payload)


def animation(*frames: bytes) -> bytes:
    return riff(vp8x(0x02), wchunk(b"ANIM", b"\x00" * 6), *frames)


def test_hand_built_animation_passes_and_frame_contents_are_checked():
    check_webp(animation(anmf(image_chunk()), anmf(image_chunk())))
    with pytest.raises(ContainerError, match=r"holds 'VP8L', 'XXXX', not \[ALPH\] VP8 or VP8L"):
        check_webp(animation(anmf(image_chunk() + wchunk(b"XXXX", b""))))
    with pytest.raises(ContainerError, match="data after its image"):
        check_webp(animation(anmf(image_chunk() + wchunk(b"XXXX", b"") + wchunk(b"YYYY", b""))))
    with pytest.raises(ContainerError, match="outside its 28x28 canvas"):
        check_webp(animation(anmf(image_chunk(), x=2)))
    with pytest.raises(ContainerError, match="holds 'XXXX'"):
        check_webp(animation(anmf(wchunk(b"XXXX", b"\x00" * 8))))
    with pytest.raises(ContainerError, match="without an ANIM"):
        check_webp(riff(vp8x(0x02), anmf(image_chunk())))
    with pytest.raises(ContainerError, match="has no frame"):
        check_webp(animation())
    with pytest.raises(ContainerError, match="outside its frames"):
        check_webp(animation(image_chunk()))


@pytest.mark.parametrize(
    ("chunks", "why"),
    [
        ((vp8x(0),), "no image chunk"),
        ((vp8x(0x01), image_chunk()), "reserved flags"),
        ((wchunk(b"VP8X", b"\x00" * 12), image_chunk()), "not 10"),
        ((vp8x(0), image_chunk(), image_chunk()), "after its image"),
        ((vp8x(0), image_chunk(), wchunk(b"ICCP", b"")), "ICCP chunk comes after its image"),
        ((vp8x(0), wchunk(b"ALPH", b"\x00"), image_chunk()), "ALPH chunk before a VP8L"),
        ((vp8x(0), vp8x(0), image_chunk()), "two 'VP8X'"),
        ((vp8x(0), wchunk(b"ANIM", b"\x00" * 6), image_chunk()), "does not flag an animation"),
        ((wchunk(b"XXXX", b""),), "first chunk is 'XXXX'"),
    ],
)
def test_webp_structures_no_encoder_writes_are_refused(chunks, why):
    with pytest.raises(ContainerError, match=why):
        check_webp(riff(*chunks))


def test_a_64_mib_body_of_empty_chunks_is_refused_at_once():
    body = riff(vp8x(0), image_chunk(), b"XXXX\x00\x00\x00\x00" * (1 << 20))
    with pytest.raises(ContainerError, match="more than 8 chunks"):
        check_webp(body)

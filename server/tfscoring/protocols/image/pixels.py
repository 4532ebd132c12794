"""An image's pixels, decoded once its header is read (header.inspect): `decode`.

JPEG goes through simplejpeg (libjpeg-turbo): it releases the GIL while it decodes, is strict (a premature end of
data or a corrupt scan is a 400, where Pillow answered a grey-filled image), and decodes at 1/2 to 1/8 scale where
the input's H and W are fixed and that much smaller.  PNG and WebP go through Pillow, a PNG's container checked
first (containers.py).

An animated image gives its first frame (an APNG or animated WebP: only that frame is decoded, the others are never
read); EXIF orientation is applied (exif.py); palette, 1-bit, CMYK and alpha modes are converted (alpha is dropped,
as Pillow's convert and Keras' load_img do); 16-bit grayscale is scaled to 0-255.  The image is resized to the
input's H x W where they are fixed (a free one keeps the image's own).  Pixels reach a float input scaled by
IMAGE_SCALE (unit = /255, signed = /127.5 - 1, raw = 0-255 as they are), and an integer input raw.  Broken,
truncated or unknown bodies are a worded 400, never an exception.

JPEG pixels against Pillow's (both libjpeg-turbo, islow DCT, fancy upsampling;
tests/unit/protocols/test_image_decoding.py):
identical at full scale for an RGB input, for a grayscale JPEG (the how-to's case) and for CMYK; a grayscale
input takes a colour JPEG's luma (Y) plane, identical to Pillow's RGB -> L on a smooth picture, while on
colour noise a few pixels differ where Pillow's upsampled RGB clips (up to 16 levels at 4:2:0, mean under
0.1).  Where DCT scaling applies (a fixed H x W at least 2x smaller) the pixels are libjpeg's scaled IDCT
then the bilinear resize, as Pillow's draft() gave before.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

from tfscoring.errors import PayloadTooLarge, ScoringError
from tfscoring.interface import TensorSpec
from tfscoring.protocols.image import containers, exif
from tfscoring.protocols.image.cost import CHUNK_PIXELS
from tfscoring.protocols.image.header import PNG_CHUNK_BODY, PNG_CHUNKS_BASE, ImageHeader, first_line, invalid
from tfscoring.protocols.image.layout import ImageLayout, image_layout

SCALES = ("unit", "signed", "raw")


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
        raise PayloadTooLarge(f"image is too large {where}: {first_line(err)}") from None
    except Image.DecompressionBombWarning as err:  # only where warnings are errors: over Image.MAX_IMAGE_PIXELS
        raise PayloadTooLarge(f"image is too large {where}: {first_line(err)}") from None
    except Exception as err:  # Pillow: OSError, SyntaxError, EOFError, zlib.error...; simplejpeg: ValueError
        raise invalid(where, first_line(err)) from None
    height, width = pixels.shape[:2]
    row = pixels.reshape(layout.row_shape(height, width))
    # Each of the 256 pixel values mapped once (computed in float64, rounded once to the input's dtype).
    table = np.arange(256, dtype=np.float64)
    if spec.dtype.kind == "f":
        table = {"unit": table / 255.0, "signed": table / 127.5 - 1.0, "raw": table}[scale]
    table = table.astype(spec.dtype)
    batch = np.empty((1, *row.shape), spec.dtype)
    values, out = row.reshape(-1), batch.reshape(-1)
    for start in range(0, values.size, CHUNK_PIXELS):  # np.take makes its indices intp: 8 bytes each, a chunk
        end = start + CHUNK_PIXELS
        np.take(table, values[start:end], out=out[start:end])
    return batch


def _jpeg_pixels(header: ImageHeader, layout: ImageLayout) -> np.ndarray:
    """simplejpeg (libjpeg-turbo, the GIL released, strict) at the DCT-scaled size, then EXIF orientation on the
    small array; Pillow only converts CMYK and resizes."""
    cmyk = header.colorspace in ("CMYK", "YCCK")
    colorspace = "CMYK" if cmyk else {1: "GRAY", 3: "RGB", 4: "RGBA"}[layout.channels]
    side = max(layout.height, layout.width) if layout.height and layout.width else 0
    array = simplejpeg.decode_jpeg(header.body, colorspace=colorspace, min_height=side, min_width=side, strict=True)
    array = exif.oriented(array, header.orientation)
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


def _pillow_pixels(header: ImageHeader, layout: ImageLayout, where: str) -> np.ndarray:
    image = Image.open(io.BytesIO(header.body), formats=(header.format,))  # the header: Pillow's own size checks
    if image.size != (header.width, header.height):
        width, height = image.size
        raise invalid(where, f"Pillow reads {width}x{height}, the header {header.width}x{header.height}")
    png = None
    if header.format == "PNG":  # Pillow takes missing rows as zeros, a bad checksum, data past the end: check first
        chunks = PNG_CHUNKS_BASE + len(header.body) // PNG_CHUNK_BODY
        png = containers.check_png(header.body, chunks, header.width * header.height)  # the size inspect accepted
    image.load()  # decodes the first frame's pixels: truncated or corrupt data raises here
    short_palette = png and png.color_type == 3 and png.palette_entries < 2**png.bit_depth
    if short_palette and image.getextrema()[1] >= png.palette_entries:  # Pillow would paint such pixels black
        raise invalid(where, f"the PNG's pixels index past its palette's {png.palette_entries} entries")
    image = _converted(image, layout.mode)
    if header.orientation > 1:  # EXIF orientation, as ImageOps.exif_transpose applies it
        image = image.transpose(exif.TRANSPOSES[header.orientation])
    return _resized(image, layout)


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
        chunk = np.empty(min(CHUNK_PIXELS, flat_wide.size), np.int32)
        for start in range(0, flat_wide.size, CHUNK_PIXELS):  # round(v / 257) in int32, a chunk at a time
            part = chunk[: min(CHUNK_PIXELS, flat_wide.size - start)]
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

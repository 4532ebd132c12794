"""Image request bodies (image/png, image/jpeg, image/webp): one image becomes a batch of one row.

Which inputs take an image (row shape, batch dimension left out; H or W may be free, -1):
- (H, W, C) with C = 1 (grayscale), 3 (RGB) or 4 (RGBA); a free C counts as 3;
- (H, W): grayscale;
- (H*W,): grayscale flattened, where H*W is a square > 1, e.g. the how-to's MNIST input (N, 784) = 28x28.
Anything else, and a bool or int8 input, is refused (400).

The format is read from the bytes, not the content type: a PNG, JPEG or WebP body is accepted under any of
the three types (a PNG sent as image/jpeg works); other formats (GIF, BMP, TIFF, ...) are refused.  The
declared size is checked before any pixel is decoded: over `max_pixels` (width x height) is a 413, as is
an image over Pillow's own decompression-bomb limit.  An animated image gives its first frame; EXIF
orientation is applied; palette, 1-bit, CMYK and alpha modes are converted (alpha is dropped, as
Pillow's convert and Keras' load_img do); 16-bit grayscale is scaled to 0-255.  The image is resized to
the input's H x W where they are fixed (a free one keeps the image's own).  Pixels reach a float input
scaled by IMAGE_SCALE (unit = /255, signed = /127.5 - 1, raw = 0-255 as they are), and an integer
input raw.  Broken, truncated or unknown bodies are a worded 400, never an exception.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from tfscoring.errors import BadRequest, PayloadTooLarge, ScoringError
from tfscoring.interface import TensorSpec

CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp")
FORMATS = ("PNG", "JPEG", "WEBP")  # Pillow's names; Image.open tries no other decoder
MAX_PIXELS = 4096 * 4096
# Memory one image may take while decoded (RGBA, 8 bits), before it is resized to the input.
DECODED_BYTES = MAX_PIXELS * 4
SCALES = ("unit", "signed", "raw")

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_IMAGE_SHAPES = "(H, W, C) with C = 1, 3 or 4, (H, W) grayscale, or (H*W,) grayscale flattened with H*W a square > 1"


@dataclass(frozen=True)
class ImageLayout:
    """How one image fills one row of an input: its size (None where free), channels, and row form."""

    height: int | None
    width: int | None
    channels: int  # 1, 3 or 4
    form: str  # "hwc", "hw" or "flat"

    @property
    def mode(self) -> str:
        return _MODES[self.channels]

    def row_shape(self, height: int, width: int) -> tuple[int, ...]:
        if self.form == "hwc":
            return (height, width, self.channels)
        if self.form == "hw":
            return (height, width)
        return (height * width,)


def image_layout(spec: TensorSpec) -> ImageLayout:
    """The layout an image takes in `spec`, or BadRequest saying why the input does not take images."""

    def refuse(why: str) -> BadRequest:
        return BadRequest(f"the model's input {spec.name!r} {spec.datatype} {spec.shown()} does not take images: {why}")

    if spec.dtype == np.bool_:
        raise refuse("it is bool; image inputs are float or integer")
    if spec.dtype == np.int8:
        raise refuse("it is int8, which cannot hold pixel values 0-255")
    shape = spec.shape
    if any(n == 0 or n < -1 for n in shape):
        raise refuse(f"an image input's row shape is {_IMAGE_SHAPES}")

    def free(n: int) -> int | None:
        return None if n == -1 else n

    if len(shape) == 3 and shape[2] in (-1, 1, 3, 4):
        return ImageLayout(free(shape[0]), free(shape[1]), 3 if shape[2] == -1 else shape[2], "hwc")
    if len(shape) == 2:
        return ImageLayout(free(shape[0]), free(shape[1]), 1, "hw")
    if len(shape) == 1 and shape[0] > 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        return ImageLayout(side, side, 1, "flat")
    raise refuse(f"an image input's row shape is {_IMAGE_SHAPES}")


def decoded_bytes(spec: TensorSpec) -> int:
    """The most memory decoding one image for `spec` takes (score.py reserves it of the in-flight budget): the
    decoded image, then the row, whose size is the image's own where the input leaves height or width free."""
    try:
        layout = image_layout(spec)
    except BadRequest:
        return 0  # refused before any pixel is decoded
    pixels = layout.height * layout.width if layout.height and layout.width else MAX_PIXELS
    return DECODED_BYTES + 2 * pixels * layout.channels * spec.dtype.itemsize  # the row, and its scaled copy


def takes_images(spec: TensorSpec) -> bool:
    try:
        image_layout(spec)
    except BadRequest:
        return False
    return True


def decode_image(body: bytes, spec: TensorSpec, scale: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One PNG, JPEG or WebP image as a batch of one row of `spec`: shape (1, *row shape), spec's dtype."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")  # IMAGE_SCALE is validated by config
    layout = image_layout(spec)
    where = f"for input {spec.name!r} {spec.shown()}"
    if not body:
        raise BadRequest(f"body is empty; expected a PNG, JPEG or WebP image {where}")
    try:
        image = _open(body, max_pixels, where)
        if image.format == "JPEG" and layout.height and layout.width:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale where the target is that much smaller (much faster);
            # the square request keeps both sides at least the target's, whichever way EXIF turns the image.
            side = max(layout.height, layout.width)
            image.draft(None, (side, side))
        image.load()  # decodes the first frame's pixels: truncated or corrupt data raises here
        image = ImageOps.exif_transpose(image)
        image = _converted(image, layout.mode)
        height = layout.height or image.height
        width = layout.width or image.width
        if image.size != (width, height):
            # BILINEAR: tf.image.resize's default, so closest to how most models' training images were
            # resized; Pillow widens its support when shrinking, so it is antialiased, and unlike LANCZOS
            # it does not ring (overshoot) around sharp edges such as pen strokes, and costs less.
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    except ScoringError:
        raise  # already worded: too large, or not an image at all
    except (TimeoutError, MemoryError):
        raise  # the server's SCORING_TIMEOUT_MS alarm (an OSError) and a full machine are not the client's fault
    except Image.DecompressionBombError as err:  # over Pillow's own limit (2 x Image.MAX_IMAGE_PIXELS)
        raise PayloadTooLarge(f"image is too large {where}: {_first_line(err)}") from None
    except Image.DecompressionBombWarning as err:  # only where warnings are errors: over Image.MAX_IMAGE_PIXELS
        raise PayloadTooLarge(f"image is too large {where}: {_first_line(err)}") from None
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error...
        raise BadRequest(f"body is not a valid PNG, JPEG or WebP image {where}: {_first_line(err)}") from None
    row = pixels.reshape(layout.row_shape(height, width))
    # Each of the 256 pixel values mapped once (computed in float64, rounded once to the input's dtype).
    table = np.arange(256, dtype=np.float64)
    if spec.dtype.kind == "f":
        table = {"unit": table / 255.0, "signed": table / 127.5 - 1.0, "raw": table}[scale]
    batch = np.take(table.astype(spec.dtype), row[np.newaxis])
    return np.ascontiguousarray(batch)


def _open(body: bytes, max_pixels: int, where: str) -> Image.Image:
    """Reads the header only (Image.open is lazy) and refuses an image over `max_pixels` before decoding."""
    try:
        image = Image.open(io.BytesIO(body), formats=FORMATS)
    except Image.UnidentifiedImageError:
        raise BadRequest(f"body is not a PNG, JPEG or WebP image {where} (other formats are refused)") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels {where}; "
            f"the limit is {max_pixels} pixels (width x height)"
        )
    return image


def _converted(image: Image.Image, mode: str) -> Image.Image:
    if image.mode.startswith("I"):  # 16-bit grayscale PNG ("I;16", or "I"): convert() would clip at 255
        wide = np.asarray(image).astype(np.int64)
        image = Image.fromarray(((np.clip(wide, 0, 65535) + 128) // 257).astype(np.uint8))  # uint8 (H, W): mode L
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))  # uint8 (H, W): mode L
    elif image.mode in ("P", "PA"):  # palette: through RGBA so a transparent index converts cleanly
        image = image.convert("RGBA")
    return image if image.mode == mode else image.convert(mode)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

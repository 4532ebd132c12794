"""Which inputs take an image, and how one image fills one row of such an input (row shape, batch dimension
left out; H or W may be free, -1):

- (H, W, C) with C = 1 (grayscale), 3 (RGB) or 4 (RGBA); a free C counts as 3;
- (H, W): grayscale;
- (H*W,): grayscale flattened, where H*W is a square > 1, e.g. the how-to's MNIST input (N, 784) = 28x28.

Anything else, and a bool or int8 input, is refused (400).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tfscoring.errors import BadRequest
from tfscoring.interface import TensorSpec

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


def takes_images(spec: TensorSpec) -> bool:
    try:
        image_layout(spec)
    except BadRequest:
        return False
    return True

"""Image bodies (image/png, image/jpeg, image/webp): one image becomes a batch of one row (one-input models).

Two steps, so that the cost is known and bounded before any pixel is decoded: the header is read and checked
(image/header.py: size, frames, segments, chunks, scans; 413 and 400), the decode's memory reserved from it
(image/cost.py), then the pixels decoded, oriented, converted, resized to the input and scaled by IMAGE_SCALE
(image/pixels.py).  Which inputs take images: image/layout.py.  Answered as the how-to's form.

A model of one string input (a graph that decodes the image itself, e.g. tf.io.decode_jpeg) takes the body's bytes
as its one row, once the header passed the same checks: no decompression bomb reaches the graph.

Bounds, measured on 2 cores by bench/gil_hold.py (bench/results/gil-hold.md): at the limits (4096 x 4096
noise, or a 16384-pixel side) no decode holds the GIL longer than 50 ms (WebP through Pillow, 35-45 ms;
JPEG and PNG under 15 ms), and every decode's peak RSS growth is under its `decoded_bytes` (WebP is the
costliest: about 20 bytes a pixel in Pillow and libwebp, 0.32 GB at 4096 x 4096).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfscoring.interface import Batch, Interface, TensorSpec
from tfscoring.protocols import howto, strings
from tfscoring.protocols.codec import Answer, Body, Codec, Decoded, Reserve, Schema, no_reserve, only_input
from tfscoring.protocols.image import embedded, header, pixels
from tfscoring.protocols.image.layout import takes_images
from tfscoring.protocols.limits import MAX_PIXELS, Limits

CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True, repr=False)
class ImageCodec(Codec):
    """Images sent as `content_type` (any of the three formats is read, whatever the type says)."""

    content_type: str
    name = "image"

    def decode(self, body: bytes, interface: Interface, limits: Limits, reserve: Reserve = no_reserve) -> Decoded:
        spec = only_input(interface, f"an {self.content_type} body")
        read = header.inspect(body, spec, limits.max_pixels)  # the header alone: size, frames, structure (400, 413)
        reserve(read.decoded_bytes)
        if spec.strings:  # the graph decodes the image itself: its bytes are the row, once its header passed
            row = strings.one_row(body, spec, f"an {self.content_type} body")
            # and once TensorFlow's own decoder can take it (an animated WebP without alpha, 400), all its frames
            in_graph = embedded.inspected_bytes(read, body, limits.max_pixels, f"value 0 of the input {spec.name!r}")
            return Decoded((row,), self, graph_bytes=max(read.decoded_bytes, in_graph))
        return Decoded((pixels.decode(read, spec, limits.image_scale),), self)

    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        return howto.CODEC.encode(decoded, outputs, interface)

    def schema(self, interface: Interface) -> Schema | None:
        if len(interface.inputs) != 1 or not (takes_images(interface.inputs[0]) or interface.inputs[0].strings):
            return None
        picture = "One image, one row: converted, resized to the input's shape and scaled by IMAGE_SCALE."
        if interface.inputs[0].strings:
            picture = (
                "One image, one row: its bytes are the value of the string input, which the graph decodes; its "
                "header is checked first (format, structure, pixels within the limit)."
            )
        return Schema(content={self.content_type: Body(picture, selects="images", answered_as=howto.ANSWERED_AS)})


CODECS = tuple(ImageCodec(content_type) for content_type in CONTENT_TYPES)


def decode_image(body: bytes, spec: TensorSpec, scale: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One PNG, JPEG or WebP image as a batch of one row of `spec`: shape (1, *row shape), spec's dtype."""
    return pixels.decode(header.inspect(body, spec, max_pixels), spec, scale)

"""A body of a content type of its own that holds the one input's array (raw bytes, .npy): what those codecs share.

Such a form names no input, so it is for one-input models; its decode reserves the array and one conversion of it
(BINARY_WEIGHT per body byte) before reading it, and its answer is the how-to's form.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from tfscoring.interface import Batch, Interface, TensorSpec
from tfscoring.protocols import howto
from tfscoring.protocols.codec import (
    BINARY_WEIGHT,
    Answer,
    Body,
    Codec,
    Decoded,
    Reserve,
    Schema,
    no_reserve,
    only_input,
)
from tfscoring.protocols.image import embedded
from tfscoring.protocols.limits import Limits


def body(description: str) -> Body:
    """Such a body in /swagger.json: what it holds."""
    return Body(description, selects="the binary formats", answered_as=howto.ANSWERED_AS)


class ArrayBodyCodec(Codec):
    content_type: str

    def decode(self, body: bytes, interface: Interface, limits: Limits, reserve: Reserve = no_reserve) -> Decoded:
        spec = only_input(interface, f"an {self.content_type} body")
        reserve(BINARY_WEIGHT * len(body))  # its array, and one conversion
        array = self.read(body, spec, limits)
        # A string input's one row (an octet-stream body): an image it is, checked as an image body (413, 400).
        graph_bytes = embedded.in_graph_bytes((array,), interface, limits) if spec.strings else 0
        return Decoded((array,), self, graph_bytes=graph_bytes)

    @abstractmethod
    def read(self, body: bytes, spec: TensorSpec, limits: Limits) -> np.ndarray:
        """The input's rows in `body`, validated (BadRequest, PayloadTooLarge)."""

    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        return howto.CODEC.encode(decoded, outputs, interface)

    def schema(self, interface: Interface) -> Schema | None:
        if len(interface.inputs) != 1 or not self.takes(interface.inputs[0]):
            return None  # a model of several inputs takes no such body
        return Schema(content={self.content_type: body(self.describe(interface.inputs[0]))})

    def takes(self, spec: TensorSpec) -> bool:
        """Whether the form carries the input's values at all."""
        return True

    @abstractmethod
    def describe(self, spec: TensorSpec) -> str:
        """What such a body holds for the input `spec`, as /swagger.json says it."""

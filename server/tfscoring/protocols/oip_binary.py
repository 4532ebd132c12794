"""The Open Inference Protocol's binary tensor data extension (Triton's): a JSON request, then the bytes of the
tensors it sends as binary data, the JSON's length in the Inference-Header-Content-Length header.

Chosen by that header, whatever the content type: a tensor whose "parameters" give its "binary_data_size" takes
that many bytes, in order, little-endian and row-major.  The JSON is read as the path it came to reads JSON
(oip_json.py at /v2/models/<name>/infer; at POST /score, any JSON form: with no binary data after it, the form its
keys say).  Answered as the Open Inference Protocol answers (oip_json.py), binary outputs where asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfscoring.errors import BadRequest, PayloadTooLarge
from tfscoring.interface import Batch, Interface
from tfscoring.protocols import decode, oip_json
from tfscoring.protocols.codec import Answer, Decoded, Reserve, no_reserve
from tfscoring.protocols.jsonforms import JsonBody, JsonCodec, decode_json
from tfscoring.protocols.limits import Limits

HEADER_LENGTH = oip_json.HEADER_LENGTH


@dataclass(frozen=True, repr=False)
class BinaryTensorsCodec(JsonCodec):
    """A request with the header: `header_length` is its value, `json` how the path it came to reads JSON."""

    header_length: str
    json: JsonCodec
    name = "oip_binary"

    def example(self, interface: Interface) -> str:
        return self.json.example(interface)

    def bounding_forms(self) -> tuple[JsonCodec, ...]:
        return (*self.json.bounding_forms(), oip_json.CODEC)  # with binary data after it, the JSON is the protocol's

    def decode(self, body: bytes, interface: Interface, limits: Limits, reserve: Reserve = no_reserve) -> Decoded:
        document, binary = _split(body, self.header_length)
        # 8: the widest dtype.  Refused before the parse's cost, which counts the binary data's conversion, is reserved.
        # Byte strings have no widest: MAX_REQUEST_BYTES bounds them.
        most_binary = limits.max_rows * sum(max(spec.row_size, 1) * 8 for spec in interface.inputs)
        sized = interface.bounded_json and not any(spec.strings for spec in interface.inputs)
        if sized and len(binary) > most_binary:
            raise PayloadTooLarge(
                f"the binary tensor data is {len(binary)} bytes, more than {limits.max_rows} rows (MAX_REQUEST_ROWS) "
                f"of {interface.input_list()} take ({most_binary} at most)"
            )
        return decode_json(self, document, interface, limits, reserve, binary)

    def read(self, body: JsonBody, interface: Interface) -> Decoded:
        return oip_json.CODEC.read(body, interface) if body.binary else self.json.read(body, interface)

    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        return decoded.codec.encode(decoded, outputs, interface)


def _split(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} is {decode.shown(header_length)}; it must be the length in bytes of the JSON at the "
            f"start of the body ({len(body)} bytes)"
        )
    return body[: int(header_length)], body[int(header_length) :]

"""The JSON request forms: one content type, the forms told apart by their documents' keys.

Every JSON body goes the same way (decode_json): counted over its bytes and refused there if it holds more than a
request to the model can (jsonbounds.py), the parse's cost reserved, parsed, then read by a form into the arrays.
`JsonForms` is the codec of a JSON body at POST /score: TF Serving's `signature_name` checked, the document is read
by the first of its forms that claims it (registry.py lists them).  A form may read a body it recognises on its
bytes alone before that (`decode_fast`: the how-to's rows, in C), unless the body names a `signature_name`.

Every input is validated on its own (tensors.py) and all of them must have the same number of rows.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from tfscoring.errors import BadRequest
from tfscoring.interface import Batch, Interface, TensorSpec
from tfscoring.protocols import decode, jsonbounds
from tfscoring.protocols.codec import Answer, Codec, Decoded, Reserve, example, no_reserve
from tfscoring.protocols.image import embedded
from tfscoring.protocols.limits import Limits
from tfscoring.protocols.tensors import TensorReader


@dataclass(frozen=True)
class JsonBody:
    """A parsed JSON body: its document, the bytes of binary tensors after it (the Open Inference Protocol's binary
    extension) and the reader of its tensors."""

    document: dict
    binary: bytes
    tensors: TensorReader


class JsonCodec(Codec):
    """A JSON request form."""

    # What claims a document for the form, e.g. '"data" (the how-to\'s form)': the message for a body that no form
    # claims lists every form's, in the registry's order.
    claimed_by: str = ""
    # The lists and objects around a row's values in the form (the how-to's {"data": [row, ...]}: the document and
    # the list of rows, 2): a body nested deeper than its forms' deepest and the rows' own dimensions gets a 400.
    depth: int = 2

    def row_overhead(self, interface: Interface) -> int:
        """The JSON values a row of this form holds besides its inputs' values and lists (as decode.count counts:
        a value per comma, colon, list and object): its slot in the list of rows, and an object and a key for each
        input (TF Serving's instances).  The count before the parse refuses (413) a body of more values than
        MAX_REQUEST_ROWS + 1 rows of its forms' largest overhead hold."""
        return 1 + 2 * len(interface.inputs)

    def bounding_forms(self) -> tuple[JsonCodec, ...]:
        """The forms a body this codec decodes may be in: their largest row_overhead and depth bound its count."""
        return (self,)

    def most_values(self, interface: Interface, limits: Limits) -> int:
        """The most JSON values a body decoded by this codec may hold (jsonbounds.most_values)."""
        overhead = max(form.row_overhead(interface) for form in self.bounding_forms())
        return jsonbounds.most_values(interface, limits, overhead)

    def deepest(self, interface: Interface) -> int:
        """The deepest nesting of a body decoded by this codec (jsonbounds.deepest)."""
        return jsonbounds.deepest(interface, max(form.depth for form in self.bounding_forms()))

    def check_json(self, body: bytes, interface: Interface, limits: Limits, binary: int = 0) -> decode.Counts:
        """jsonbounds.check_json within the bounds of this codec's forms (most_values, deepest)."""
        most, nesting = self.most_values(interface, limits), self.deepest(interface)
        return jsonbounds.check_json(body, interface, limits, most, nesting, binary)

    def first_weight(self, interface: Interface) -> int:
        return jsonbounds.first_weight(interface)

    def claims(self, document: dict) -> bool:
        """Whether a JSON document at POST /score is in this form (its keys say)."""
        return False

    def example(self, interface: Interface) -> str:
        """A request in this form, for a body that is no JSON object."""
        return example(interface)

    def decode_fast(self, body: bytes, interface: Interface, limits: Limits, reserve: Reserve) -> Decoded | None:
        """The request, where this form can read it from its bytes alone (no Python object per value); None to
        let it be counted and parsed."""
        return None

    @abstractmethod
    def read(self, body: JsonBody, interface: Interface) -> Decoded:
        """The request in a parsed document of this form."""

    def decode(self, body: bytes, interface: Interface, limits: Limits, reserve: Reserve = no_reserve) -> Decoded:
        return self.decode_fast(body, interface, limits, reserve) or decode_json(self, body, interface, limits, reserve)


class JsonForms(JsonCodec):
    """A JSON body at POST /score, in whichever of `forms` first claims its document."""

    name = "json"

    def __init__(self, forms: tuple[JsonCodec, ...]):
        self.forms = forms

    def bounding_forms(self) -> tuple[JsonCodec, ...]:
        return self.forms

    def decode_fast(self, body: bytes, interface: Interface, limits: Limits, reserve: Reserve) -> Decoded | None:
        for form in self.forms:
            decoded = form.decode_fast(body, interface, limits, reserve)
            if decoded is not None:
                return decoded
        return None

    def read(self, body: JsonBody, interface: Interface) -> Decoded:
        check_signature_name(body.document, interface)
        for form in self.forms:
            if form.claims(body.document):
                return form.read(body, interface)
        *others, last = (form.claimed_by for form in self.forms)
        listed = f"{', '.join(others)} or {last}" if others else last
        raise BadRequest(f"body has none of {listed}; e.g. {example(interface)}")

    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        return decoded.codec.encode(decoded, outputs, interface)


def decode_json(
    codec: JsonCodec, body: bytes, interface: Interface, limits: Limits, reserve: Reserve, binary: bytes = b""
) -> Decoded:
    """A JSON body read by `codec`: counted (413, 400), its parse's cost reserved, parsed (400), read.  `binary`: the
    binary tensors after it (the Open Inference Protocol's binary extension), which only the counts and the reading
    see."""
    counts = codec.check_json(body, interface, limits, len(binary))
    reserve(jsonbounds.parse_cost(counts) + jsonbounds.string_cost(counts, interface))
    booleans = b"true" in body or b"false" in body  # only then is a boolean among numbers worth looking for
    try:
        document = decode.parse_object(body, codec.example(interface))
        decoded = codec.read(JsonBody(document, binary, TensorReader(limits, booleans)), interface)
    except BadRequest:
        jsonbounds.check_wide_integers(body)  # an integer beyond 64 bits, read as a float, explains the error better
        raise
    if any(a.dtype.kind == "f" and a.size and float(np.abs(a).max()) >= 2.0**63 for a in decoded.arrays):
        jsonbounds.check_wide_integers(body)  # such a value may have been an integer literal, rounded by the parser
    if embedded.has_strings(interface):  # an image a byte string holds: checked as an image body (413, 400)
        decoded.graph_bytes = embedded.in_graph_bytes(decoded.arrays, interface, limits)
    return decoded


# What an Open Inference Protocol input tensor has (one of them is enough to tell it from TF Serving's columns).
TENSOR_KEYS = frozenset({"name", "shape", "datatype"})


def is_tensor_list(value: object) -> bool:
    """A non-empty list of objects that look like tensors: the Open Inference Protocol's "inputs", which the TF Serving
    columnar form's "inputs" never is."""
    return (
        isinstance(value, list) and bool(value) and all(isinstance(i, dict) and TENSOR_KEYS & i.keys() for i in value)
    )


def check_signature_name(document: dict, interface: Interface) -> None:
    """TF Serving's `signature_name`: the one signature served (serving_default where the graph has none)."""
    name = document.get("signature_name")
    served = interface.signature_key or "serving_default"
    if name is not None and name != served:
        raise BadRequest(f"signature_name {decode.shown(name)} is not served; this server serves {served!r}")


def check_names(named: dict, interface: Interface, where: str) -> None:
    """An object keyed by input names (any of each input's aliases) names each input once and nothing else."""
    found = {}
    for key in named:
        spec = interface.input_named(key)
        if spec is None:
            raise BadRequest(
                f"{where} names {decode.shown(key)}, which is not an input of the model; its inputs: "
                f"{names(interface.inputs)}"
            )
        if spec.name in found:
            raise BadRequest(
                f"{where} names the input {spec.name!r} twice "
                f"({decode.shown(found[spec.name])} and {decode.shown(key)})"
            )
        found[spec.name] = key
    missing = [spec.name for spec in interface.inputs if spec.name not in found]
    if missing:
        raise BadRequest(f"{where} lacks the input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")


def value_of(named: dict, spec: TensorSpec) -> object:
    """The value an object keyed by input names (check_names) holds for `spec`."""
    return next(value for key, value in named.items() if key in spec.aliases)


def names(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(repr(spec.name) for spec in specs)


def check_same_rows(arrays: Batch, interface: Interface) -> None:
    rows = {spec.name: len(array) for spec, array in zip(interface.inputs, arrays, strict=True)}
    if len(set(rows.values())) > 1:
        shown = ", ".join(f"{name!r} {count}" for name, count in rows.items())
        raise BadRequest(f"the inputs have different numbers of rows ({shown}); each row needs a value of every input")


def named_outputs(specs: tuple[TensorSpec, ...], outputs: Batch) -> dict:
    """Each output keyed by its name, for an answer."""
    return {spec.name: output for spec, output in zip(specs, outputs, strict=True)}

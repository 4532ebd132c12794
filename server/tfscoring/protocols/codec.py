"""A codec: one request form, from the body a client sends to the arrays the model takes, and back to the answer.

Each form is a module of this folder with one codec (registry.py lists them and picks one for a request):

    decode(body, interface, limits, reserve) -> Decoded    the arrays, one per input of the model (400, 413)
    encode(decoded, outputs, interface)       -> Answer     the outputs in the form the request came in
    schema(interface)                         -> Schema     what /swagger.json says of the form (swagger.py)

A decode is bounded before its expensive step: it tells `reserve(bytes)` the most memory that step takes beyond
the body itself (the app resizes the request's share of the in-flight budget to the body and that, or answers
503), from what it has read so far (a JSON body's counts, an image's header, a binary body's size).  Before the
body is read, `first_weight(interface)` bytes per declared body byte are reserved.

A new request form is one module with a codec and one line in registry.py; nothing else changes (the app, the
routes, swagger.py and the bounds take it from the codec).  What the codec provides:

    name                       the form's name, as its module's (logs, tests)
    decode, encode             as above; errors only as tfscoring.errors' BadRequest and PayloadTooLarge
    schema(interface)          a Schema, or None where the model does not take the form (the default)
  a JSON form (jsonforms.JsonCodec, a line in registry.JSON_FORMS; its decode is jsonforms.decode_json's pipeline):
    read(body, interface)      the Decoded of a parsed document (instead of decode)
    claims(document)           whether a document at POST /score is in the form (its keys); `claimed_by` says what
    depth                      its nesting down to the list of rows, the rows' own dimensions aside (default 2)
    row_overhead(interface)    the JSON values a row holds besides its inputs' values and lists (default: an object
                               and a key per input, and the row's slot), for the count of values before the parse
  a body of a content type of its own (a line in registry.BODY_CODECS):
    content_type               the mimetype that selects it; its Schema's `content` (and `answer_content` where
                               its answer is not JSON) describe it as Body values
  a form chosen by its path (a line in registry.BY_ROUTE, and the path's route in http/routes.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson

from tfscoring.errors import BadRequest
from tfscoring.interface import BYTES, Batch, Interface, TensorSpec
from tfscoring.protocols import decode, strings
from tfscoring.protocols.limits import Limits

# Told the most bytes a decode's next step takes beyond the body, before it runs (it may refuse: 503).
Reserve = Callable[[int], None]
# A body decoded into one array: the body and its array (a binary body's first weight, per body byte).
BINARY_WEIGHT = 2
JSON_CONTENT_TYPE = {"Content-Type": "application/json"}


def no_reserve(_bytes: int) -> None:
    """A reserve for callers without an in-flight budget (tests, benchmarks)."""


@dataclass
class Decoded:
    """A decoded request: each input's array, and what its answer needs."""

    arrays: Batch  # one array per input of the interface, in its order, rows first
    codec: Codec  # the form the request came in, which encodes its answer
    id: str | None = None  # the Open Inference Protocol's request id, echoed
    outputs: tuple[int, ...] | None = None  # the outputs asked for (indices), None: all
    binary: frozenset[int] = field(default_factory=frozenset)  # outputs to answer as binary data
    # Memory the graph itself takes to decode these inputs (an image a string input holds, from its header), which
    # the arrays' own cost does not show.
    graph_bytes: int = 0

    @property
    def rows(self) -> int:
        return len(self.arrays[0])


@dataclass(frozen=True)
class Answer:
    """A 200 answer's body and headers."""

    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Body:
    """A body of a content type of its own, as /swagger.json describes it: what it holds, and for a request, what
    POST /score's description says its content type selects and how it is answered."""

    description: str  # what the body holds: its schema's description
    selects: str = ""  # e.g. "the binary formats": content types of the same `selects` are named together
    answered_as: str = ""  # e.g. "the how-to's form"
    schema: dict = field(default_factory=lambda: {"type": "string", "format": "binary"})  # its schema, but the text

    def media_type(self) -> dict:
        """The OpenAPI media type object of the body."""
        return {"schema": {**self.schema, "description": self.description}}


@dataclass(frozen=True)
class Schema:
    """What /swagger.json says of a form, for one model (swagger.py puts them together).

    `request`, `answer`: named JSON schemas of a JSON body and of its answer, the form's own first, then any it
    refers to; `content`: a request body of a content type of its own, by content type; `answer_content`: an answer
    of a content type other than JSON, by content type."""

    request: dict[str, dict] = field(default_factory=dict)
    answer: dict[str, dict] = field(default_factory=dict)
    content: dict[str, Body] = field(default_factory=dict)
    answer_content: dict[str, Body] = field(default_factory=dict)


class Codec(ABC):
    name: str  # the form's name, as its module's
    content_type: str | None = None  # a body of a content type of its own (the registry's BODY_CODECS); JSON: None

    def first_weight(self, interface: Interface) -> int:
        """Bytes of the in-flight budget reserved per declared body byte, before the body is read."""
        return BINARY_WEIGHT

    @abstractmethod
    def decode(self, body: bytes, interface: Interface, limits: Limits, reserve: Reserve = no_reserve) -> Decoded:
        """The request's arrays, validated against the model's inputs (BadRequest, PayloadTooLarge)."""

    @abstractmethod
    def encode(self, decoded: Decoded, outputs: Batch, interface: Interface) -> Answer:
        """The answer to `decoded`, whose outputs are `outputs` (one array per output of the interface)."""

    def schema(self, interface: Interface) -> Schema | None:
        """What /swagger.json says of this form for the model; None where the model does not take it."""
        return None

    def __repr__(self) -> str:
        return f"<codec {self.name}>"


def only_input(interface: Interface, form: str) -> TensorSpec:
    """The input of a one-input model, for a form that has no names; a 400 for a model with several."""
    if len(interface.inputs) != 1:
        raise BadRequest(
            f"{form} is for a model with one input; this model has {len(interface.inputs)} "
            f"({interface.input_list()}): name each, e.g. {example(interface)}"
        )
    return interface.inputs[0]


def example(interface: Interface) -> str:
    """A JSON request to the model, as messages show one: the how-to's rows, where it takes them, or the inputs
    by name (TF Serving's columns)."""
    if interface.howto_width:
        return decode.expected_shape(interface.howto_width)
    names = ", ".join(f'"{spec.name}": [{_rows_of(spec)}]' for spec in interface.inputs)
    return f'{{"inputs": {{{names}}}}}'


def _rows_of(spec: TensorSpec) -> str:
    return f"rows of shape ({spec.shown()[4:]}" if spec.shape else "one value per row"


def answer_values(spec: TensorSpec, values: np.ndarray | list) -> object:
    """An output's values for a JSON answer: numbers and booleans as they are (orjson writes the array), byte
    strings as strings or {"b64": ...} (strings.answered: TF Serving's rule, `_bytes` outputs always in base64)."""
    if not isinstance(values, np.ndarray) or values.dtype != BYTES:  # class ids may be a list
        return values
    return strings.answered(values, strings.is_binary_name(spec.name))


def answer_outputs(specs: tuple[TensorSpec, ...], outputs: Batch) -> tuple:
    """Every output's values for a JSON answer (answer_values)."""
    return tuple(answer_values(spec, values) for spec, values in zip(specs, outputs, strict=True))


def json_answer(value: object) -> Answer:
    return Answer(dumps(value), JSON_CONTENT_TYPE)


def dumps(value: object) -> bytes:
    # numpy arrays straight to JSON; NaN and infinities (which a model may answer) become null.
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_to_list)


def _to_list(value: object) -> object:
    if isinstance(value, np.ndarray) and value.dtype == BYTES:  # byte strings, not through answer_values
        return strings.answered(value)
    if isinstance(value, (np.ndarray, np.generic)):  # e.g. a non-contiguous array, which orjson leaves to this
        return value.tolist()
    if isinstance(value, bytes):
        return strings.answered(np.array([value], BYTES))[0]
    raise TypeError

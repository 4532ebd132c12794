"""Which codec reads a request: by the path it came to, the headers it carries and its content type.

    Inference-Header-Content-Length header   oip_binary: the JSON read as its path reads JSON, binary tensors after
    the Open Inference Protocol's infer path  oip_json
    a content type of BODY_CODECS            that codec (raw, .npy, images; one-input models)
    anything else (any content type)         JSON: the first of JSON_FORMS that claims the document (jsonforms.py)

A new request form is one module with its codec, and one line here: in JSON_FORMS for a JSON document told apart by
its keys, in BODY_CODECS for a content type of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from tfscoring.protocols import howto, images, npy, oip_binary, oip_json, raw, tfserving_columns, tfserving_rows
from tfscoring.protocols.codec import Codec
from tfscoring.protocols.jsonforms import JsonForms

# In order: the first that claims a document reads it ("data" wins over the others' keys); /swagger.json describes
# them in this order too (Swagger 2.0, which has no alternatives, takes a key named twice from the first).
JSON_FORMS = (howto.CODEC, tfserving_rows.CODEC, tfserving_columns.CODEC, oip_json.CODEC)
BODY_CODECS = (raw.CODEC, npy.CODEC, *images.CODECS)

JSON = JsonForms(JSON_FORMS)
_BY_CONTENT_TYPE = {codec.content_type: codec for codec in BODY_CODECS}


def find(content_type: str, headers: Mapping[str, str], oip_path: bool = False) -> Codec:
    """The codec of a request: `content_type` its mimetype (lower case, no parameters), `headers` its headers,
    `oip_path` whether it came to the Open Inference Protocol's infer path (through the front door)."""
    json = oip_json.CODEC if oip_path else JSON
    header_length = headers.get(oip_binary.HEADER_LENGTH)
    if header_length is not None:
        return oip_binary.BinaryTensorsCodec(header_length, json)
    if oip_path:
        return json
    return _BY_CONTENT_TYPE.get(content_type, JSON)


def codecs() -> tuple[Codec, ...]:
    """Every codec, in the order /swagger.json describes them: the JSON forms, then the bodies of their own type."""
    return (*JSON_FORMS, *BODY_CODECS)

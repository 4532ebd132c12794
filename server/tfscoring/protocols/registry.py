"""Which codec reads a request: by the route it came to, the headers it carries and its content type.

    Inference-Header-Content-Length header   oip_binary: the JSON read as its route reads JSON, binary tensors after
    a route of BY_ROUTE                       that codec (the Open Inference Protocol's infer path: oip_json)
    a content type of BODY_CODECS            that codec (raw, .npy, images; one-input models)
    anything else (any content type)         JSON: the first of JSON_FORMS that claims the document (jsonforms.py)

A new request form is one module with its codec (codec.py says what it provides), and one line here: in JSON_FORMS
for a JSON document told apart by its keys, in BODY_CODECS for a content type of its own, in BY_ROUTE for a form of
a path of its own (and that path's route in http/routes.py, which resolves it to the route's name).  Nothing else
changes: the app decodes and encodes through the codec found here, swagger.py describes codecs() in order, and a JSON
body is counted within the largest row_overhead and depth of the forms it may be in.
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
# A route's name (http/routes.py's Route.action) -> the codec of a POST to it, whatever the body's content type.
BY_ROUTE = {"infer": oip_json.CODEC}

JSON = JsonForms(JSON_FORMS)
_BY_CONTENT_TYPE = {codec.content_type: codec for codec in BODY_CODECS}


def find(content_type: str, headers: Mapping[str, str], route: str | None = None) -> Codec:
    """The codec of a request: `content_type` its mimetype (lower case, no parameters), `headers` its headers,
    `route` the name of the route it came to through the front door (None: POST /score)."""
    by_route = BY_ROUTE.get(route)
    header_length = headers.get(oip_binary.HEADER_LENGTH)
    if header_length is not None:
        return oip_binary.BinaryTensorsCodec(header_length, by_route or JSON)
    if by_route is not None:
        return by_route
    return _BY_CONTENT_TYPE.get(content_type, JSON)


def codecs() -> tuple[Codec, ...]:
    """Every codec, in the order /swagger.json describes them: the JSON forms, then the bodies of their own type."""
    return (*JSON_FORMS, *BODY_CODECS)

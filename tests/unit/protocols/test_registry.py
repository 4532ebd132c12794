"""Which form reads a body (protocols/registry.py): the Inference-Header-Content-Length header makes it the Open
Inference Protocol's binary extension, whatever its content type; the protocol's infer path makes it the protocol's
JSON; a content type of its own makes it raw, .npy or an image; any other body is JSON, in the form its keys say:
"data" the how-to's, "instances" TF Serving's rows, "inputs" TF Serving's columns, or the Open Inference Protocol's
where it is a list of tensors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.unit.protocols.tables import (
    DEMO,
    PAIR,
    array,
    assert_outcome,
    bad_request,
    binary_body,
    json_forms,
    one_input,
    receive,
)

ROWS = [[1, 2], [3, 4.5]]
EXPECTED = array(ROWS, "FP32")
TENSOR = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4.5]}
RAW = EXPECTED.astype("<f4").tobytes()


def npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values)
    return buffer.getvalue()


def png(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 51).save(buffer, "PNG")
    return buffer.getvalue()


IMAGE_MODEL = one_input("FP32", (4,))  # takes a 2 x 2 grayscale image, flat
IMAGE_ROW = array([[0.2] * 4], "FP32")  # 51 / 255: IMAGE_SCALE=unit

BY_KEYS = [
    pytest.param({"data": ROWS}, "howto", id="data: the how-to's"),
    pytest.param({"instances": ROWS}, "tfserving_rows", id="instances: TF Serving's rows"),
    pytest.param({"instances": [{"x": row} for row in ROWS]}, "tfserving_rows", id="instances naming the input"),
    pytest.param({"inputs": ROWS}, "tfserving_columns", id="inputs: TF Serving's columns"),
    pytest.param({"inputs": {"x": ROWS}}, "tfserving_columns", id="inputs naming the input"),
    pytest.param({"inputs": [TENSOR]}, "oip_json", id="inputs a list of tensors: the Open Inference Protocol's"),
    pytest.param({"data": ROWS, "instances": [[0, 0]], "inputs": [[0, 0]]}, "howto", id="data before the others"),
    pytest.param({"signature_name": "serving_default", "instances": ROWS}, "tfserving_rows",
                 id="with TF Serving's signature_name"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "form"), BY_KEYS)
def test_a_json_body_at_score_is_read_in_the_form_its_keys_say(body, form):
    decoded = receive(body, PAIR)
    assert_outcome(decoded, EXPECTED)
    assert decoded.form == form


NOT_CLAIMED = [
    pytest.param({"rows": ROWS},
                 bad_request('body has none of "data" (the how-to\'s form), "instances" (TF Serving\'s row form), '
                             '"inputs" (TF Serving\'s columnar form) or "inputs" as a list of tensors '
                             '(the Open Inference Protocol); e.g. {"data": [[2 numbers], ...]}'),
                 id="no form's key"),
    pytest.param({"instances": ROWS, "inputs": ROWS},
                 bad_request('body has both "instances" and "inputs"; TF Serving\'s forms take one or the other'),
                 id="both of TF Serving's keys"),
    pytest.param({"inputs": [{"name": "x"}]},
                 bad_request('input \'x\' has no "datatype" string; the input\'s is "FP32"'),
                 id="a list of objects with a tensor's key: the Open Inference Protocol's"),
    pytest.param({"inputs": [{"rows": [1, 2]}]},
                 bad_request('row 0 of "inputs" is an object, not a list of 2 numbers; expected shape (N, 2)'),
                 id="a list of objects without a tensor's key: TF Serving's columns"),
    pytest.param({"inputs": [TENSOR, [1, 2]]},
                 bad_request('row 0 of "inputs" is an object, not a list of 2 numbers; expected shape (N, 2)'),
                 id="a list of tensors and rows: TF Serving's columns"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), NOT_CLAIMED)
def test_a_json_body_that_no_form_or_another_claims_says_so(body, expected):
    assert_outcome(receive(body, PAIR), expected)


def test_a_body_that_no_form_claims_is_refused_naming_every_json_form_registered():
    refused = receive({"rows": ROWS}, PAIR)
    *others, last = json_forms().values()
    assert refused.message.startswith(f"body has none of {', '.join(others)} or {last}; e.g. ")


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/plain", "application/x-www-form-urlencoded", "image/gif"]
)
def test_a_body_of_any_other_content_type_is_json(content_type):
    decoded = receive({"data": ROWS}, PAIR, content_type=content_type)
    assert_outcome(decoded, EXPECTED)
    assert decoded.form == "howto"


BY_CONTENT_TYPE = [
    pytest.param("application/octet-stream", RAW, PAIR, EXPECTED, "raw", id="raw"),
    pytest.param("application/x-npy", npy(EXPECTED), PAIR, EXPECTED, "npy", id=".npy"),
    pytest.param("image/png", png(2, 2), IMAGE_MODEL, IMAGE_ROW, "image", id="a PNG"),
    pytest.param("image/jpeg", png(2, 2), IMAGE_MODEL, IMAGE_ROW, "image", id="a PNG sent as image/jpeg"),
    pytest.param("image/webp", png(2, 2), IMAGE_MODEL, IMAGE_ROW, "image", id="a PNG sent as image/webp"),
]  # fmt: skip


@pytest.mark.parametrize(("content_type", "body", "model", "expected", "form"), BY_CONTENT_TYPE)
def test_a_body_of_a_content_type_of_its_own_is_read_as_that(content_type, body, model, expected, form):
    decoded = receive(body, model, content_type=content_type)
    assert_outcome(decoded, expected)
    assert decoded.form == form


MISMATCHED = [
    pytest.param("application/octet-stream", b'{"data": [[1, 2]]}',
                 bad_request("body is 18 bytes, not a whole number of rows: one row is 2 float32 values = 8 bytes "
                             "(application/octet-stream)"),
                 id="JSON sent as raw"),
    pytest.param("text/plain", RAW, bad_request("body is not valid UTF-8; send JSON encoded as UTF-8"),
                 id="raw sent as text"),
    pytest.param("application/x-npy", RAW,
                 bad_request("body is not a .npy array (application/x-npy): the magic string is not correct; expected "
                             "b'\\x93NUMPY', got b'\\x00\\x00\\x80?\\x00\\x00'"),
                 id="raw sent as .npy"),
    pytest.param("image/png", RAW,
                 bad_request("the model's input 'x' FP32 (N, 2) does not take images: an image input's row shape is "
                             "(H, W, C) with C = 1, 3 or 4, (H, W) grayscale, or (H*W,) grayscale flattened with H*W a "
                             "square > 1"),
                 id="an image for an input that takes none"),
]  # fmt: skip


@pytest.mark.parametrize(("content_type", "body", "expected"), MISMATCHED)
def test_the_content_type_decides_whatever_the_body_holds(content_type, body, expected):
    assert_outcome(receive(body, PAIR, content_type=content_type), expected)


OIP_EXAMPLE = '[{"name": "x", "shape": [1, ...], "datatype": "FP32", "data": [...]}]'


@pytest.mark.parametrize("path", ["/v2/models/m/infer", "/v2/models/m/versions/1/infer"])
def test_the_open_inference_protocols_infer_path_reads_its_json_only(path):
    decoded = receive({"inputs": [TENSOR]}, PAIR, path=path, content_type="text/plain")
    assert_outcome(decoded, EXPECTED)
    assert decoded.form == "oip_json"
    assert_outcome(
        receive({"data": ROWS}, PAIR, path=path),
        bad_request(f'"inputs" must be a non-empty list of tensors, e.g. {OIP_EXAMPLE}'),
    )


BINARY_DOCUMENT = {
    "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]
}


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/json", "image/png", None])
@pytest.mark.parametrize("path", [None, "/v2/models/m/infer"])
def test_the_header_length_makes_a_body_the_binary_extensions_whatever_its_content_type(content_type, path):
    body, headers = binary_body(BINARY_DOCUMENT, RAW)
    decoded = receive(body, PAIR, content_type=content_type, path=path, headers=headers)
    assert_outcome(decoded, EXPECTED)
    assert decoded.form == "oip_binary"


def test_with_the_header_and_no_binary_data_a_body_at_score_is_read_in_the_form_its_keys_say():
    body, headers = binary_body({"data": ROWS})
    decoded = receive(body, PAIR, headers=headers)
    assert_outcome(decoded, EXPECTED)
    assert decoded.form == "howto"
    assert_outcome(
        receive(body, PAIR, headers=headers, path="/v2/models/m/infer"),
        bad_request(f'"inputs" must be a non-empty list of tensors, e.g. {OIP_EXAMPLE}'),
    )


def test_binary_data_after_a_body_of_another_form_makes_it_the_open_inference_protocols():
    body, headers = binary_body({"data": ROWS}, RAW)
    assert_outcome(
        receive(body, PAIR, headers=headers),
        bad_request(f'"inputs" must be a non-empty list of tensors, e.g. {OIP_EXAMPLE}'),
    )


@pytest.mark.parametrize(
    ("content_type", "what"),
    [("application/octet-stream", "an application/octet-stream body"),
     ("application/x-npy", "an application/x-npy body"), ("image/png", "an image/png body"),
     (None, 'the how-to\'s {"data": ...} form')],
)  # fmt: skip
def test_the_forms_without_names_are_for_models_of_one_input(content_type, what):
    body = {"data": [[1, 2]]} if content_type is None else RAW
    assert_outcome(
        receive(body, DEMO, content_type=content_type),
        bad_request(
            f"{what} is for a model with one input; this model has 2 ('image' FP32 (N, 2, 2, 1), 'offset' INT64 (N)): "
            'name each, e.g. {"inputs": {"image": [rows of shape (2, 2, 1)], "offset": [one value per row]}}'
        ),
    )


def test_without_the_header_a_body_with_binary_data_is_json():
    body, _ = binary_body(BINARY_DOCUMENT, b"[]")
    assert_outcome(
        receive(body, PAIR, content_type="application/octet-stream", path="/v2/models/m/infer"),
        bad_request(f"body is not valid JSON: unexpected content after document at line 1 column {len(body) - 1}"),
    )

"""The swagger documents init() publishes for the how-to's model, generated in-process (protocols/swagger.py).  The
server serving them, and schemathesis fuzzing it from them: tests/http/test_swagger.py."""

from __future__ import annotations

import pytest

from tests.support import howto_interface
from tfscoring.protocols import images, swagger

# The how-to's model as the server reads it from its graph (models/tf-dnn-mnist/1).
HOWTO = howto_interface()


def published(version: int | str) -> dict:
    return swagger.documents(HOWTO)[str(version)]


@pytest.mark.parametrize("version", [2, 3])
def test_the_schema_describes_the_request_and_the_answers(version):
    spec = published(version)
    schemas = spec["definitions"] if version == 2 else spec["components"]["schemas"]
    score = spec["paths"]["/score"]["post"]
    assert schemas["ServiceInput"]["required"] == ["data"]
    assert schemas["ServiceInput"]["properties"]["data"]["minItems"] == 1
    assert schemas["Row"]["minItems"] == schemas["Row"]["maxItems"] == 784
    nullable = {"x-nullable": True} if version == 2 else {"nullable": True}  # null: the scores tell no class
    assert schemas["ServiceOutput"]["items"] == {"type": "integer", "minimum": 0, "maximum": 9, **nullable}
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert {"200", "400", "401", "413", "503"} <= score["responses"].keys()
    media_types = score["consumes"] if version == 2 else score["requestBody"]["content"].keys()
    assert set(media_types) == {
        "application/json",
        "application/octet-stream",
        "application/x-npy",
        *images.CONTENT_TYPES,
    }
    assert "/" in spec["paths"] and "/swagger.json" in spec["paths"]


def test_swagger_2_describes_a_key_two_forms_share_as_the_first_form_in_the_registry_has_it():
    """Swagger 2.0 has no alternatives: ScoreRequest merges the JSON forms, and "inputs" (TF Serving's columns, and
    the Open Inference Protocol's tensor list) is described as the columns: the rows of the input."""
    schemas = published(2)["definitions"]
    inputs = schemas["ScoreRequest"]["properties"]["inputs"]
    assert inputs == schemas["ColumnarRequest"]["properties"]["inputs"]
    assert inputs["items"]["items"]["type"] == "number"  # rows of numbers, not tensor objects

"""The Open Inference Protocol's paths as nginx hands them to the script (tfscoring/http/routes.py).  Through the front
door with Triton's client: tests/http/test_open_inference_paths.py."""

from __future__ import annotations

import numpy as np

from tfscoring.http import routes
from tfscoring.interface import Interface, TensorSpec


def test_a_model_name_beyond_ascii_is_matched_as_nginx_passes_it():
    """nginx hands the decoded path over as UTF-8 bytes, which the WSGI server reads as latin-1 text."""
    spec = TensorSpec("x", "x:0", np.dtype("float32"), (2,))
    interface = Interface("démo", "1", (spec,), (spec,))
    as_received = "/v2/models/démo/infer".encode().decode("latin-1")
    assert routes.resolve(as_received, "POST", interface).action == "infer"

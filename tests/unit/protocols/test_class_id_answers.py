"""The how-to's form and the Open Inference Protocol's for a graph whose output already is the class id, in-process
(tfscoring/protocols/howto.py, oip_json.py).  The forms over HTTP: tests/http/test_protocols.py."""

from __future__ import annotations

import json

import numpy as np

from tfscoring.interface import Interface, TensorSpec
from tfscoring.protocols import howto, oip_json
from tfscoring.protocols.codec import Decoded


def test_the_howto_form_answers_an_output_of_one_value_per_row_as_it_is():
    # A graph whose output already is the class id (int, (N, 1)): argmax would answer 0 for every row.
    interface = Interface(
        "m", "1", (TensorSpec("x", "x:0", np.dtype("float32"), (784,)),),
        (TensorSpec("label", "label:0", np.dtype("int32"), (1,)),),
    )  # fmt: skip
    labels = (np.array([[3], [7]], np.int32),)
    answer = howto.CODEC.encode(Decoded((), howto.CODEC), labels, interface)
    assert json.loads(answer.body) == [3, 7]
    oip = oip_json.CODEC.encode(Decoded((), oip_json.CODEC), labels, interface)
    assert json.loads(oip.body)["outputs"][0]["datatype"] == "INT32"

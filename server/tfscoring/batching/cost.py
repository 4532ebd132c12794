"""What a decoded request costs in memory until it is answered, for its reservation of the in-flight budget.

From the moment its arrays are decoded (the body freed) to its answer, a request holds:
- its input arrays;
- their copy in a batch: the batcher concatenates the rows of concurrent requests into one array per input,
  and TensorFlow copies a fed array into a tensor of its own (counted once more);
- its outputs: TensorFlow's arrays, its rows of them, and the answer they are encoded into.  A JSON answer
  takes up to ANSWER_BYTES_PER_VALUE per number; a binary one (the Open Inference Protocol's binary tensor
  extension) the outputs' bytes again.
Outputs whose row shape the graph leaves free are counted once scored, from the arrays themselves.

Byte strings (BYTES) are object arrays, whose nbytes count only their pointers: their values are counted besides,
each value's bytes and its Python object (STRING_VALUE_BYTES), once in Python and once in TensorFlow's tensor (the
batch's copy shares the request's bytes objects).  String outputs are counted once scored: no shape bounds them.
"""

from __future__ import annotations

from tfscoring.interface import BYTES, Batch, Interface

INPUT_COPIES = 3  # the request's arrays, the batch's, TensorFlow's tensor
# A number in a JSON answer, at most: "-1.1754944e-38," is 15 characters, a float64 or int64 up to 24.
ANSWER_BYTES_PER_VALUE = 25
# A byte string's own cost besides its bytes: a Python bytes object (33 bytes) and TensorFlow's tstring (24).
STRING_VALUE_BYTES = 33 + 24
# A byte string's bytes in a JSON answer, at most: a control byte is escaped as \u00XX (6 characters); base64
# takes 4 for 3.  With the answer's own copy of the values (a str or a b64 object each).
ANSWER_BYTES_PER_STRING_BYTE = 6 + 1


def decoded_bytes(arrays: Batch, interface: Interface, graph_bytes: int = 0) -> int:
    """The inputs' share, and the outputs' where their row shapes are fixed (free ones and strings: see
    scored_bytes); `graph_bytes`: what the graph takes to decode the inputs itself (codec.Decoded.graph_bytes)."""
    count = len(arrays[0]) if arrays else 0
    outputs = sum(
        count * spec.row_size * (2 * spec.dtype.itemsize + ANSWER_BYTES_PER_VALUE)
        for spec in interface.outputs
        if spec.fixed and spec.dtype != BYTES
    )
    return _inputs(arrays) + outputs + graph_bytes


def scored_bytes(arrays: Batch, outputs: Batch) -> int:
    """Once scored: the inputs' share and the outputs as they are, whatever their shapes."""
    answers = sum(array.nbytes * 2 + array.size * ANSWER_BYTES_PER_VALUE for array in outputs)
    strings = sum(
        string_bytes(array) * ANSWER_BYTES_PER_STRING_BYTE + array.size * 2 * STRING_VALUE_BYTES
        for array in outputs
        if array.dtype == BYTES
    )
    return _inputs(arrays) + answers + strings


def string_bytes(array) -> int:
    """The bytes an object array of byte strings holds in its values (its nbytes are only the pointers)."""
    return sum(map(len, array.flat))


def _inputs(arrays: Batch) -> int:
    pointers = INPUT_COPIES * sum(array.nbytes for array in arrays)
    values = sum(2 * (string_bytes(a) + a.size * STRING_VALUE_BYTES) for a in arrays if a.dtype == BYTES)
    return pointers + values

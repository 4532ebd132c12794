"""What a decoded request costs in memory until it is answered, for its reservation of the in-flight budget.

From the moment its arrays are decoded (the body freed) to its answer, a request holds:
- its input arrays;
- their copy in a batch: the batcher concatenates the rows of concurrent requests into one array per input,
  and TensorFlow copies a fed array into a tensor of its own (counted once more);
- its outputs: TensorFlow's arrays, its rows of them, and the answer they are encoded into.  A JSON answer
  takes up to ANSWER_BYTES_PER_VALUE per number; a binary one (the Open Inference Protocol's binary tensor
  extension) the outputs' bytes again.
Outputs whose row shape the graph leaves free are counted once scored, from the arrays themselves.
"""

from __future__ import annotations

from tfscoring.interface import Batch, Interface

INPUT_COPIES = 3  # the request's arrays, the batch's, TensorFlow's tensor
# A number in a JSON answer, at most: "-1.1754944e-38," is 15 characters, a float64 or int64 up to 24.
ANSWER_BYTES_PER_VALUE = 25


def decoded_bytes(arrays: Batch, interface: Interface) -> int:
    """The inputs' share, and the outputs' where their row shapes are fixed (free ones: see scored_bytes)."""
    count = len(arrays[0]) if arrays else 0
    inputs = sum(array.nbytes for array in arrays)
    outputs = sum(
        count * spec.row_size * (2 * spec.dtype.itemsize + ANSWER_BYTES_PER_VALUE)
        for spec in interface.outputs
        if spec.fixed
    )
    return INPUT_COPIES * inputs + outputs


def scored_bytes(arrays: Batch, outputs: Batch) -> int:
    """Once scored: the inputs' share and the outputs as they are, whatever their shapes."""
    inputs = sum(array.nbytes for array in arrays)
    answers = sum(array.nbytes * 2 + array.size * ANSWER_BYTES_PER_VALUE for array in outputs)
    return INPUT_COPIES * inputs + answers

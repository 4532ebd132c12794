"""server/score.py on a pretend device with little memory: session calls above SMALL_DEVICE_ROWS rows fail.

The failure is TensorFlow's own ResourceExhaustedError, raised where the
session call would be, so that out-of-memory handling can be tested on a
machine without a GPU.  Everything else is the real entry script.
"""

import os

import tensorflow as tf

import score  # the real entry script, in AML_APP_ROOT (server/), which azmlinfsrv puts on sys.path

run = score.run  # decorated with @rawhttp: the server calls it with the Flask request


def init():
    score.init()
    capacity = int(os.environ["SMALL_DEVICE_ROWS"])
    session_call = score.app.model.session_call

    def small_device(*arrays):  # one array per input, as TensorFlow's callable takes them
        n_rows = len(arrays[0])
        if n_rows > capacity:
            raise tf.errors.ResourceExhaustedError(
                None, None, f"OOM when allocating tensor with shape[{n_rows},300] (pretend device)"
            )
        return session_call(*arrays)

    score.app.model.session_call = small_device

"""The how-to's DNN as a TF1 graph: 784 -> 300 ReLU -> 100 ReLU -> 10 logits.

Names matter: the how-to's score.py reads `network/X:0` and
`network/output/MatMul:0`.  That op is the output layer's matrix product, so
the output layer has no bias: what the how-to serves is then exactly the
logits the model was trained and evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow.compat.v1 as tf

INPUT_WIDTH = 28 * 28
HIDDEN = (300, 100)
CLASSES = 10
INPUT_TENSOR = "network/X:0"
OUTPUT_TENSOR = "network/output/MatMul:0"


@dataclass(frozen=True)
class Network:
    x: tf.Tensor
    logits: tf.Tensor


def _dense(inputs: tf.Tensor, units: int, name: str, seed: int, bias: bool) -> tf.Tensor:
    """A dense layer whose matrix product is the op `<scope>/<name>/MatMul`."""
    with tf.variable_scope(name):
        kernel = tf.get_variable(
            "kernel", (inputs.shape[1], units), initializer=tf.glorot_uniform_initializer(seed=seed)
        )
        out = tf.matmul(inputs, kernel, name="MatMul")
        if bias:
            b = tf.get_variable("bias", (units,), initializer=tf.zeros_initializer())
            out = tf.nn.bias_add(out, b, name="BiasAdd")
        return out


def build(seed: int) -> Network:
    """Add the network to the current default graph."""
    with tf.variable_scope("network"):
        x = tf.placeholder(tf.float32, shape=(None, INPUT_WIDTH), name="X")
        hidden = x
        for i, units in enumerate(HIDDEN, start=1):
            hidden = tf.nn.relu(_dense(hidden, units, f"h{i}", seed + i, bias=True))
        logits = _dense(hidden, CLASSES, "output", seed + len(HIDDEN) + 1, bias=False)
    if x.name != INPUT_TENSOR or logits.name != OUTPUT_TENSOR:
        raise AssertionError(f"graph names drifted: {x.name}, {logits.name}")
    return Network(x=x, logits=logits)

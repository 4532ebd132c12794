"""Small TF1 graphs with the shapes and dtypes other teams' models have, saved in the registered-model layout for
tests: numbers of every kind and booleans, an op that refuses some values, a free dimension, two outputs of one op;
and the how-to's own network with its initial weights (`howto`), which the unit tests load instead of the trained
model.  No training: constants and seeded initial weights (a Saver needs a variable)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from model import build, network

v1 = tf.compat.v1


def save(model_dir: Path, build, signature: bool = True) -> Path:
    """Build the graph `build()` returns ({input key: tensor}, {output key: tensor}) for, and save it as
    <model_dir>/model/graph.*, with a serving_default signature of those tensors when `signature`."""
    graph = tf.Graph()
    with graph.as_default():
        inputs, outputs = build()
        v1.Variable(0.0, name="unused")
        saver = v1.train.Saver()
        prefix = model_dir / "model" / "graph"
        prefix.parent.mkdir(parents=True)
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            saver.save(session, str(prefix))
        if signature:
            meta_path = prefix.with_name("graph.meta")
            meta = v1.MetaGraphDef()
            meta.ParseFromString(meta_path.read_bytes())
            meta.signature_def["serving_default"].CopyFrom(
                v1.saved_model.signature_def_utils.predict_signature_def(inputs, outputs)
            )
            meta_path.write_bytes(meta.SerializeToString())
    return prefix


def howto(model_dir: Path, seed: int = 42) -> Path:
    """The how-to's network (model/network.py: network/X:0 -> network/output/MatMul:0, 784 -> 300 -> 100 -> 10) with
    its seeded initial weights, untrained, saved as model.build lays it out: <model_dir>/model/mnist-tf.model.*.
    Its class ids are no better than chance, but each row's is its own; built in about a second."""
    graph = tf.Graph()
    with graph.as_default(), v1.variable_scope(v1.get_variable_scope(), use_resource=True):
        network.build(seed)  # resource variables, as model.build's TF2 process makes them
        saver = v1.train.Saver()
        prefix = model_dir / build.MODEL_FOLDER / build.CHECKPOINT_PREFIX
        prefix.parent.mkdir(parents=True)
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            saver.save(session, str(prefix))
    return prefix


def dtypes() -> tuple[dict, dict]:
    """ids INT32 (N,) picked from a table of 3 (an id out of range: InvalidArgumentError), half FP16 (N, 2),
    flag BOOL (N,), pixels UINT8 (N, 2)."""
    ids = v1.placeholder(tf.int32, [None], name="ids")
    half = v1.placeholder(tf.float16, [None, 2], name="half")
    flag = v1.placeholder(tf.bool, [None], name="flag")
    pixels = v1.placeholder(tf.uint8, [None, 2], name="pixels")
    picked = tf.gather(tf.constant([0.5, 1.5, 2.5]), ids, name="picked")
    return (
        {"ids": ids, "half": half, "flag": flag, "pixels": pixels},
        {
            "picked": picked,
            "doubled": tf.multiply(half, tf.constant(2, tf.float16), name="doubled"),
            "notflag": tf.logical_not(flag, name="notflag"),
            "total": tf.reduce_sum(tf.cast(pixels, tf.int32), axis=1, name="total"),
        },
    )


def free_width() -> tuple[dict, dict]:
    """values FP32 (N, any): each row's sum."""
    values = v1.placeholder(tf.float32, [None, None], name="values")
    return {"values": values}, {"sum": tf.reduce_sum(values, axis=1, name="sum")}


def top_two() -> tuple[dict, dict]:
    """x FP32 (N, 5) -> tf.nn.top_k's values (topk:0) and indices (topk:1): two outputs of one op."""
    x = v1.placeholder(tf.float32, [None, 5], name="x")
    top = tf.nn.top_k(x, k=2, name="topk")
    return {"x": x}, {"values": top.values, "indices": top.indices}


def byte_strings() -> tuple[dict, dict]:
    """raw BYTES (N,) -> length INT32 (N,) (tf.strings.length: its bytes), and the strings back as echo_bytes
    (a name TF Serving answers in base64) and echo (answered as text where it is UTF-8)."""
    raw = v1.placeholder(tf.string, [None], name="raw")
    return (
        {"raw": raw},
        {
            "length": tf.strings.length(raw, name="length"),
            "echo_bytes": tf.identity(raw, name="echo_bytes"),
            "echo": tf.identity(raw, name="echo"),
        },
    )


JPEG_SIDE = 28


def jpeg_bytes() -> tuple[dict, dict]:
    """image_bytes BYTES (N,): encoded JPEG (or PNG) bytes, decoded in the graph (tf.io.decode_image, grayscale),
    resized to 28 x 28 -> mean FP32 (N,): each image's mean pixel in [0, 1], and size INT32 (N, 2): its height and
    width as decoded, as the Object Detection API's encoded_image_string_tensor graphs take images."""
    encoded = v1.placeholder(tf.string, [None], name="image_bytes")

    def one(image_bytes):
        image = tf.io.decode_image(image_bytes, channels=1, expand_animations=False)
        size = tf.shape(image)[:2]
        small = v1.image.resize_bilinear(tf.cast(image[tf.newaxis], tf.float32), [JPEG_SIDE, JPEG_SIDE])[0]
        return tf.reduce_mean(small) / 255.0, size

    mean, size = tf.map_fn(one, encoded, fn_output_signature=(tf.float32, tf.int32))
    return {"image_bytes": encoded}, {"mean": tf.identity(mean, name="mean"), "size": tf.identity(size, name="size")}

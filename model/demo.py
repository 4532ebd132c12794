"""A small untrained TF1 meta-graph checkpoint with a serving signature: a graph the server has never seen.

    python -m model.demo --out DIR [--kind two-inputs|image] [--prefix demo.model]

writes DIR/model/<prefix>.meta, .index, .data-00000-of-00001 and checkpoint, the registered-model layout.
The weights are seeded random normals, not trained: the same on every run, no dataset needed, built in seconds.
The tensors' names in the graph differ from the signature's keys, which are what clients call.

    kind        signature inputs                          signature outputs
    two-inputs  image  float32 (None, 28, 28, 1)          probabilities float32 (None, 10)  head/probs:0
                       inputs/pixels:0                    label         int64   (None,)     head/label:0
                offset int64 (None,)  inputs/shift:0
    image       image  float32 (None, 28, 28, 1)          scores        float32 (None, 10)  head/logits:0
                       inputs/pixels:0

In two-inputs, probabilities = softmax(dense(flattened image) + 0.1 * offset * v) for a fixed random v, so both
inputs change the answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tensorflow.compat.v1 as tf

MODEL_FOLDER = "model"
DEFAULT_PREFIX = "demo.model"
KINDS = ("two-inputs", "image")
SIGNATURE_KEY = "serving_default"
SEED = 1234
CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)

# {kind: ({input key: tensor}, {output key: tensor})}, as the signature declares them.
SIGNATURES = {
    "two-inputs": (
        {"image": "inputs/pixels:0", "offset": "inputs/shift:0"},
        {"probabilities": "head/probs:0", "label": "head/label:0"},
    ),
    "image": ({"image": "inputs/pixels:0"}, {"scores": "head/logits:0"}),
}


def _weights(name: str, shape: tuple[int, ...], stddev: float, seed: int) -> tf.Variable:
    # Resource variables whatever the caller's TF behaviour, so the graph does not depend on the process.
    initializer = tf.random_normal_initializer(stddev=stddev, seed=seed)
    return tf.get_variable(name, shape, initializer=initializer, use_resource=True)


def _graph(kind: str) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """Add the kind's network to the current default graph; returns its signature's tensors by key."""
    width = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
    with tf.name_scope("inputs"):
        pixels = tf.placeholder(tf.float32, (None, *IMAGE_SHAPE), name="pixels")
        shift = tf.placeholder(tf.int64, (None,), name="shift") if kind == "two-inputs" else None
    # Small weights keep the softmax away from saturation, so offsets visibly move the probabilities.
    with tf.variable_scope("dense"):
        kernel = _weights("kernel", (width, CLASSES), 0.05, SEED)
        bias = _weights("bias", (CLASSES,), 0.1, SEED + 1)
    with tf.name_scope("head"):
        flat = tf.reshape(pixels, (-1, width), name="flat")
        if shift is None:
            logits = tf.nn.bias_add(tf.matmul(flat, kernel), bias, name="logits")
            return {"image": pixels}, {"scores": logits}
        with tf.variable_scope("offset"):
            direction = _weights("direction", (CLASSES,), 1.0, SEED + 2)
        logits = tf.nn.bias_add(tf.matmul(flat, kernel), bias) + 0.1 * tf.cast(shift, tf.float32)[:, None] * direction
        probs = tf.nn.softmax(logits, name="probs")
        label = tf.argmax(probs, axis=1, output_type=tf.int64, name="label")
        return {"image": pixels, "offset": shift}, {"probabilities": probs, "label": label}


def build(out: Path, kind: str = "two-inputs", prefix: str = DEFAULT_PREFIX) -> Path:
    """Write the kind's checkpoint under `out`/model and return its prefix (`out`/model/`prefix`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    folder = Path(out) / MODEL_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / prefix
    graph = tf.Graph()  # its own graph: the caller's default graph stays as it was
    with graph.as_default():
        tf.set_random_seed(SEED)
        inputs, outputs = _graph(kind)
        expected = SIGNATURES[kind]
        actual = ({k: t.name for k, t in inputs.items()}, {k: t.name for k, t in outputs.items()})
        if actual != expected:
            raise AssertionError(f"graph names drifted: {actual}")
        # Relative paths in `checkpoint`, so the folder can be copied or mounted elsewhere.
        saver = tf.train.Saver(save_relative_paths=True)
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            saver.save(session, str(path), write_meta_graph=False)
            # Saver writes no signatures: export the meta-graph, add the signature, write it ourselves.
            meta = saver.export_meta_graph()
        meta.signature_def[SIGNATURE_KEY].CopyFrom(
            tf.saved_model.signature_def_utils.predict_signature_def(inputs, outputs)
        )
    path.with_name(prefix + ".meta").write_bytes(meta.SerializeToString())
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="model directory to write (AZUREML_MODEL_DIR)")
    p.add_argument("--kind", choices=KINDS, default="two-inputs")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="checkpoint file prefix (default: %(default)s)")
    args = p.parse_args(argv)
    path = build(args.out, args.kind, args.prefix)
    print(f"wrote {path}.meta ({args.kind}; signature {SIGNATURE_KEY!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

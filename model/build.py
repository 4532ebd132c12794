"""Train the how-to's DNN on MNIST-format data and write the registered-model layout.

    python -m model.build --out models/tf-dnn-mnist [--data-dir DIR]

writes

    <out>/model/mnist-tf.model.meta, .index, .data-00000-of-00001, checkpoint
    <out>/model/model-info.json   tensor names, input width, held-out accuracy

which is what Azure ML mounts at AZUREML_MODEL_DIR for the how-to's score.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow
import tensorflow.compat.v1 as tf

from model import idx, network

MODEL_FOLDER = "model"
CHECKPOINT_PREFIX = "mnist-tf.model"
INFO_FILE = "model-info.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="model directory to write (AZUREML_MODEL_DIR)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=idx.DEFAULT_DATA_DIR,
        help="directory with train-/t10k- images and labels in idx format, gzipped or not "
        "(default: Debian's Fashion-MNIST, %(default)s; real MNIST files work the same)",
    )
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (0 = all)")
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> dict:
    x_train, y_train = idx.load_split(args.data_dir, "train")
    x_test, y_test = idx.load_split(args.data_dir, "t10k")
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]

    # Same seed, same data, same weights: seeded initialisers and shuffling,
    # deterministic kernels, and one intra-op thread so reductions keep their order.
    tf.disable_eager_execution()
    tensorflow.config.experimental.enable_op_determinism()
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(args.seed)
        net = network.build(args.seed)
        labels = tf.placeholder(tf.int64, shape=(None,), name="labels")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=net.logits))
        train_op = tf.train.AdamOptimizer(args.learning_rate).minimize(loss)
        saver = tf.train.Saver()
        config = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        with tf.Session(graph=graph, config=config) as sess:
            sess.run(tf.global_variables_initializer())
            rng = np.random.RandomState(args.seed)
            for epoch in range(1, args.epochs + 1):
                started = time.perf_counter()
                order = rng.permutation(len(x_train))
                for start in range(0, len(order), args.batch_size):
                    batch = order[start : start + args.batch_size]
                    sess.run(train_op, {net.x: x_train[batch], labels: y_train[batch]})
                accuracy = _accuracy(sess, net, x_test, y_test)
                print(
                    f"epoch {epoch}/{args.epochs}: t10k accuracy {accuracy:.4f} ({time.perf_counter() - started:.1f}s)",
                    flush=True,
                )
            folder = args.out / MODEL_FOLDER
            folder.mkdir(parents=True, exist_ok=True)
            saver.save(sess, str(folder / CHECKPOINT_PREFIX))

    info = {
        "input_tensor": network.INPUT_TENSOR,
        "output_tensor": network.OUTPUT_TENSOR,
        "input_width": network.INPUT_WIDTH,
        "classes": network.CLASSES,
        "checkpoint_prefix": CHECKPOINT_PREFIX,
        "data_dir": str(args.data_dir),
        "train_images": len(x_train),
        "test_images": len(x_test),
        "test_accuracy": round(float(accuracy), 4),
        "epochs": args.epochs,
        "seed": args.seed,
        "tensorflow": tf.__version__,
    }
    (args.out / MODEL_FOLDER / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def _accuracy(sess: tf.Session, net: network.Network, x: np.ndarray, y: np.ndarray) -> float:
    predictions = np.concatenate(
        [sess.run(net.logits, {net.x: x[i : i + 1000]}).argmax(axis=1) for i in range(0, len(x), 1000)]
    )
    return float((predictions == y).mean())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        info = train(args)
    except (FileNotFoundError, idx.IdxError) as err:
        print(f"model.build: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / MODEL_FOLDER}: held-out (t10k) accuracy {info['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

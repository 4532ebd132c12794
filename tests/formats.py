"""The model formats teams hold, built by TensorFlow itself for the tests: one small seeded model (4 values a row ->
3 class scores and the class id, the same weights in each) saved as a TF1 meta-graph checkpoint, a TF1 SavedModel
(SavedModelBuilder), a TF2 SavedModel (tf.saved_model.save of a tf.Module with a tf.function signature), a Keras 3
export (model.export()), a frozen GraphDef (convert_variables_to_constants); and what start-up refuses: a `.keras`
file, a graph with an op this TensorFlow lacks, a folder of two models.  `strings` takes byte strings (DT_STRING).

Each kind is built into <root>/<kind>/, with <root>/<kind>.npz beside it: the reference inputs and what the model
answered for them as it was built (the session or the eager call that exported it), to compare the served answers
with.  TF2's exports need eager execution, which loading a graph turns off for the whole process, so the kinds are
built in a process of their own: `build(root, kinds)`, or `python -m tests.formats <root> <kind>...`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEED = 24
ROWS = 16  # reference rows
FROZEN_FILE = "graph.pb"
# The frozen graph's tensors (it declares no signature: INPUT_TENSOR and OUTPUT_TENSOR name them).
FROZEN_INPUT, FROZEN_OUTPUTS = "input/x:0", "head/scores:0,head/label:0"
# An op of tf.contrib (its image ops' bipartite matching, which the Object Detection API's early graphs used),
# gone from TensorFlow 2.
CONTRIB_OP = "BipartiteMatch"


def weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    return rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)


def reference_inputs() -> np.ndarray:
    return np.random.default_rng(SEED + 1).standard_normal((ROWS, 4)).astype(np.float32)


def build(root: Path, kinds: list[str]) -> Path:
    """Build each kind under root in a new Python process (RuntimeError with its output where it fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.formats", str(root), *kinds],
        cwd=REPO,
        capture_output=True,
        text=True,
        # None of the caller's settings: the CPU, and Keras on TensorFlow whatever KERAS_BACKEND the shell has.
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
            "KERAS_BACKEND": "tensorflow",
        },
        timeout=300,
    )
    if done.returncode:
        raise RuntimeError(f"building {kinds} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return root


def reference(root: Path, kind: str) -> dict[str, np.ndarray]:
    """What the model built as `kind` answered as it was built: "x" (or "text"), and each output by its name."""
    with np.load(root / f"{kind}.npz", allow_pickle=True) as saved:
        return {name: saved[name] for name in saved.files}


# The builders: each writes <folder> (the model) and returns its reference answers.


def _tf1_graph():
    """The model as a TF1 graph: x (N, 4) -> scores (N, 3) softmax, label (N,) int64, from seeded variables."""
    import tensorflow as tf

    v1 = tf.compat.v1
    w, b = weights()
    x = v1.placeholder(tf.float32, [None, 4], name="input/x")
    kernel = v1.get_variable("w", initializer=w)
    bias = v1.get_variable("b", initializer=b)
    logits = tf.add(tf.matmul(x, kernel), bias, name="head/logits")
    scores = tf.nn.softmax(logits, name="head/scores")
    label = tf.argmax(logits, axis=1, name="head/label")
    return x, {"scores": scores, "label": label, "logits": logits}


def _run_tf1(build_and_save) -> dict[str, np.ndarray]:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        x, outputs = _tf1_graph()
        session.run(v1.global_variables_initializer())
        build_and_save(session, graph, x, outputs)
        answers = session.run(outputs, {x: reference_inputs()})
    return {"x": reference_inputs(), **answers}


def checkpoint(folder: Path) -> dict[str, np.ndarray]:
    """A tf.train.Saver checkpoint, <folder>/model/net.*, its meta-graph with a serving_default signature."""
    import tensorflow as tf

    v1 = tf.compat.v1

    def save(session, graph, x, outputs):
        prefix = folder / "model" / "net"
        prefix.parent.mkdir(parents=True)
        v1.train.Saver().save(session, str(prefix))
        meta_path = prefix.with_name("net.meta")
        meta = v1.MetaGraphDef()
        meta.ParseFromString(meta_path.read_bytes())
        meta.signature_def["serving_default"].CopyFrom(
            v1.saved_model.signature_def_utils.predict_signature_def(
                {"x": x}, {"scores": outputs["scores"], "label": outputs["label"]}
            )
        )
        meta_path.write_bytes(meta.SerializeToString())

    return _run_tf1(save)


def tf1_saved_model(folder: Path) -> dict[str, np.ndarray]:
    """SavedModelBuilder, tag set {serve}: serving_default (x -> scores, label) and logits (x -> logits)."""
    import tensorflow as tf

    v1 = tf.compat.v1

    def save(session, graph, x, outputs):
        builder = v1.saved_model.Builder(str(folder))
        predict = v1.saved_model.signature_def_utils.predict_signature_def
        builder.add_meta_graph_and_variables(
            session,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map={
                "serving_default": predict({"x": x}, {"scores": outputs["scores"], "label": outputs["label"]}),
                "logits": predict({"x": x}, {"logits": outputs["logits"]}),
            },
        )
        builder.save()

    return _run_tf1(save)


def frozen_graph(folder: Path) -> dict[str, np.ndarray]:
    """<folder>/graph.pb: the graph with its variables made constants; no signature."""
    import tensorflow as tf

    v1 = tf.compat.v1

    def save(session, graph, x, outputs):
        frozen = v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), ["head/scores", "head/label", "head/logits"]
        )
        folder.mkdir(parents=True)
        (folder / FROZEN_FILE).write_bytes(frozen.SerializeToString())

    return _run_tf1(save)


def unregistered_op(folder: Path) -> dict[str, np.ndarray]:
    """The frozen graph with its softmax's op renamed to a tf.contrib op: what an old graph of contrib ops is."""
    answers = frozen_graph(folder)
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString((folder / FROZEN_FILE).read_bytes())
    next(node for node in graph.node if node.name == "head/scores").op = CONTRIB_OP
    (folder / FROZEN_FILE).write_bytes(graph.SerializeToString())
    return answers


def tf2_saved_model(folder: Path) -> dict[str, np.ndarray]:
    """tf.saved_model.save of a tf.Module holding the weights as variables, with one tf.function signature."""
    import tensorflow as tf

    class Classifier(tf.Module):
        def __init__(self):
            super().__init__()
            w, b = weights()
            self.kernel, self.bias = tf.Variable(w), tf.Variable(b)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            logits = tf.matmul(x, self.kernel) + self.bias
            return {"scores": tf.nn.softmax(logits), "label": tf.argmax(logits, axis=1)}

    module = Classifier()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    answers = module.serve(tf.constant(reference_inputs()))
    return {"x": reference_inputs(), **{name: value.numpy() for name, value in answers.items()}}


def _keras_model():
    import keras

    w, b = weights()
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="scores")(inputs))
    model.get_layer("scores").set_weights([w, b])
    return model


def keras_export(folder: Path) -> dict[str, np.ndarray]:
    """Keras 3's model.export(): a TF2 SavedModel whose serving_default answers output_0 (the scores)."""
    model = _keras_model()
    model.export(str(folder), verbose=False)
    return {"x": reference_inputs(), "output_0": np.asarray(model(reference_inputs()))}


def keras_file(folder: Path) -> dict[str, np.ndarray]:
    """<folder>/model.keras alone: what start-up refuses with how to export it."""
    model = _keras_model()
    folder.mkdir(parents=True)
    model.save(str(folder / "model.keras"))
    return {"x": reference_inputs(), "output_0": np.asarray(model(reference_inputs()))}


def two_models(folder: Path) -> dict[str, np.ndarray]:
    """A SavedModel in <folder>/export/ and a frozen graph <folder>/graph.pb: two candidates."""
    answers = tf1_saved_model(folder / "export")
    frozen_graph(folder / "frozen")
    shutil.move(folder / "frozen" / FROZEN_FILE, folder / FROZEN_FILE)
    (folder / "frozen").rmdir()
    return answers


def strings(folder: Path) -> dict[str, np.ndarray]:
    """A TF1 SavedModel that takes byte strings: text (N,) -> length (N,) int32, each string's bytes."""
    import tensorflow as tf

    v1 = tf.compat.v1
    text = np.array([b"", b"a", b"jpeg\xff\xd8", b"\x00\x01"], dtype=object)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        placeholder = v1.placeholder(tf.string, [None], name="text")
        length = tf.strings.length(placeholder, name="length")
        builder = v1.saved_model.Builder(str(folder))
        builder.add_meta_graph_and_variables(
            session,
            ["serve"],
            signature_def_map={
                "serving_default": v1.saved_model.signature_def_utils.predict_signature_def(
                    {"text": placeholder}, {"length": length}
                )
            },
        )
        builder.save()
        return {"text": text, "length": session.run(length, {placeholder: text})}


KINDS = {
    builder.__name__: builder
    for builder in (
        checkpoint,
        tf1_saved_model,
        tf2_saved_model,
        keras_export,
        frozen_graph,
        unregistered_op,
        keras_file,
        two_models,
        strings,
    )
}


def main(root: Path, kinds: list[str]) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)  # nothing here is random but the weights, set from SEED: for certainty
    tf.config.set_visible_devices([], "GPU")
    for kind in kinds:
        answers = KINDS[kind](root / kind)
        np.savez(root / f"{kind}.npz", **answers)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])

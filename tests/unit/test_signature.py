"""A meta-graph's serving signature is its interface: served with no tensor settings (issue: any TF1 graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfscoring.config import Settings
from tfscoring.errors import StartupError
from tfscoring.interface import DATATYPES
from tfscoring.tf.model import GraphModel

v1 = tf.compat.v1


def export(model_dir: Path, signatures: dict[str, tuple[dict[str, str], dict[str, str]]]) -> np.ndarray:
    """Train nothing: a 784 -> 10 graph with seeded weights, saved as <model_dir>/model/net.* with the given
    signatures ({key: ({input key: tensor}, {output key: tensor})}); returns the weights."""
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [None, 784], name="input/images")
        weights = v1.get_variable("w", [784, 10], initializer=v1.random_normal_initializer(seed=7))
        logits = tf.matmul(images, weights, name="head/logits")
        tf.nn.softmax(logits, name="head/probabilities")
        v1.placeholder(tf.float32, [None, 28, 28, 1], name="input/grid")  # an image batch, not (N, width)
        tf.reduce_mean(logits, axis=0, keepdims=True, name="head/mean")  # (1, 10): mixes the rows
        tf.strings.as_string(tf.argmax(logits, axis=1, output_type=tf.int32)[:, None], name="head/label")
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            prefix = model_dir / "model" / "net"
            prefix.parent.mkdir(parents=True)
            saver.save(session, str(prefix))
            values = session.run(weights)
        meta_path = prefix.with_name("net.meta")
        meta = v1.MetaGraphDef()
        meta.ParseFromString(meta_path.read_bytes())
        for key, (inputs, outputs) in signatures.items():
            tensors = {name: graph.get_tensor_by_name(t) for name, t in {**inputs, **outputs}.items()}
            meta.signature_def[key].CopyFrom(
                v1.saved_model.signature_def_utils.predict_signature_def(
                    {k: tensors[k] for k in inputs}, {k: tensors[k] for k in outputs}
                )
            )
        meta_path.write_bytes(meta.SerializeToString())
    return values


IMAGES = {"images": "input/images:0"}
LOGITS = {"scores": "head/logits:0"}


def class_ids(model: GraphModel, images: np.ndarray) -> np.ndarray:
    """The argmax of the model's first output's scores."""
    return model.predict((images,))[0].argmax(axis=1)


def test_a_graph_with_a_serving_signature_is_served_with_no_tensor_settings(tmp_path, t10k):
    weights = export(tmp_path, {"serving_default": (IMAGES, LOGITS)})
    model = GraphModel.load(Settings(azureml_model_dir=tmp_path))
    try:
        images = t10k[0][:100]
        assert class_ids(model, images).tolist() == (images @ weights).argmax(axis=1).tolist()
    finally:
        model.close()


def test_the_only_signature_is_served_whatever_its_key(tmp_path, t10k):
    weights = export(tmp_path, {"predict": (IMAGES, LOGITS)})
    model = GraphModel.load(Settings(azureml_model_dir=tmp_path))
    try:
        assert class_ids(model, t10k[0][:10]).tolist() == (t10k[0][:10] @ weights).argmax(axis=1).tolist()
    finally:
        model.close()


def test_several_signatures_without_serving_default_stop_start_up_naming_them(tmp_path):
    export(tmp_path, {"a": (IMAGES, LOGITS), "b": (IMAGES, LOGITS)})
    with pytest.raises(StartupError, match=r"2 signatures \(a, b\) and none is 'serving_default'"):
        GraphModel.load(Settings(azureml_model_dir=tmp_path))


def test_a_signature_with_two_outputs_serves_both_in_key_order(tmp_path, t10k):
    weights = export(tmp_path, {"serving_default": (IMAGES, {**LOGITS, "probabilities": "head/probabilities:0"})})
    model = GraphModel.load(Settings(azureml_model_dir=tmp_path))
    try:
        assert [spec.name for spec in model.outputs] == ["probabilities", "scores"]
        probabilities, scores = model.predict((t10k[0][:10],))
        assert np.allclose(scores, t10k[0][:10] @ weights, rtol=1e-4, atol=1e-3)
        assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    finally:
        model.close()


def test_a_tensor_setting_replaces_its_side_of_the_signature_only(tmp_path, t10k):
    weights = export(tmp_path, {"serving_default": (IMAGES, {**LOGITS, "probabilities": "head/probabilities:0"})})
    model = GraphModel.load(Settings(azureml_model_dir=tmp_path, output_tensor="head/probabilities:0"))
    try:  # the input still comes from the signature, under its key
        assert model.inputs[0].name == "images"
        assert class_ids(model, t10k[0][:10]).tolist() == (t10k[0][:10] @ weights).argmax(axis=1).tolist()
    finally:
        model.close()


def test_an_output_that_is_not_one_row_per_input_row_stops_start_up(tmp_path):
    export(tmp_path, {"serving_default": (IMAGES, {"mean": "head/mean:0"})})
    with pytest.raises(StartupError, match=r"signature output 'mean' head/mean:0 has a fixed batch size of 1"):
        GraphModel.load(Settings(azureml_model_dir=tmp_path))


def test_an_output_of_strings_is_served_as_bytes_where_the_interface_has_bytes(tmp_path, t10k):
    # Byte strings (DT_STRING) are served once the interface names them (BYTES); until then they stop start-up.
    weights = export(tmp_path, {"serving_default": (IMAGES, {"label": "head/label:0"})})
    if "BYTES" not in DATATYPES.values():
        with pytest.raises(
            StartupError, match=r"output 'label' head/label:0 has dtype string; this server takes and answers numbers"
        ):
            GraphModel.load(Settings(azureml_model_dir=tmp_path))
        return
    model = GraphModel.load(Settings(azureml_model_dir=tmp_path))
    try:
        assert (model.outputs[0].datatype, model.outputs[0].shape) == ("BYTES", (1,))
        (labels,) = model.predict((t10k[0][:10],))
        assert labels[:, 0].tolist() == [str(i).encode() for i in (t10k[0][:10] @ weights).argmax(axis=1)]
    finally:
        model.close()


def test_a_signature_name_that_is_set_and_absent_stops_start_up_naming_those_present(tmp_path):
    export(tmp_path, {"serving_default": (IMAGES, LOGITS), "other": (IMAGES, LOGITS)})
    with pytest.raises(StartupError) as caught:
        GraphModel.load(Settings(azureml_model_dir=tmp_path, signature_name="predict"))
    assert str(caught.value) == (
        f"signature 'predict' (SIGNATURE_NAME) is not in meta-graph {tmp_path}/model/net.meta; its signatures: "
        "other, serving_default"
    )


def test_signature_name_picks_one_of_several(tmp_path, t10k):
    weights = export(tmp_path, {"a": (IMAGES, {"probabilities": "head/probabilities:0"}), "b": (IMAGES, LOGITS)})
    model = GraphModel.load(Settings(azureml_model_dir=tmp_path, signature_name="b"))
    try:
        assert (model.signature_key, [spec.name for spec in model.outputs]) == ("b", ["scores"])
        assert class_ids(model, t10k[0][:10]).tolist() == (t10k[0][:10] @ weights).argmax(axis=1).tolist()
    finally:
        model.close()


def test_tensor_settings_win_over_the_signature(tmp_path, t10k):
    weights = export(tmp_path, {"serving_default": (IMAGES, {**LOGITS, "probabilities": "head/probabilities:0"})})
    settings = Settings(azureml_model_dir=tmp_path, input_tensor="input/images:0", output_tensor="head/probabilities:0")
    model = GraphModel.load(settings)
    try:
        assert class_ids(model, t10k[0][:10]).tolist() == (t10k[0][:10] @ weights).argmax(axis=1).tolist()
    finally:
        model.close()


def test_an_output_that_needs_a_tensor_the_signature_does_not_feed_stops_start_up_naming_it(tmp_path):
    export(tmp_path, {"serving_default": ({"grid": "input/grid:0"}, LOGITS)})
    model = GraphModel.load(Settings(azureml_model_dir=tmp_path))
    try:
        with pytest.raises(StartupError, match=r"warm-up with zero rows failed: .*input/images"):
            model.warm_up(model.predict)
    finally:
        model.close()

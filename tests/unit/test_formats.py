"""Every format teams hold is served (issue 24): a TF1 meta-graph checkpoint, a TF1 SavedModel, a TF2 SavedModel, a
Keras 3 export, a frozen GraphDef; detected from the served folder, or forced by MODEL_FORMAT; each answering what
TensorFlow answered as it built the model.  Whatever cannot be served stops start-up with one line that says why."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tests import formats
from tfscoring.config import Settings
from tfscoring.errors import StartupError
from tfscoring.interface import DATATYPES
from tfscoring.tf import formats as detect
from tfscoring.tf.model import GraphModel

FROZEN_TENSORS = {"input_tensor": formats.FROZEN_INPUT, "output_tensor": formats.FROZEN_OUTPUTS}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Every kind of tests/formats.py, built once (in a process of its own: TF2's exports need eager execution)."""
    return formats.build(tmp_path_factory.mktemp("formats"), list(formats.KINDS))


def copy(built: Path, kind: str, into: Path) -> Path:
    """A copy of a built model to change: <into>/<kind>."""
    return Path(shutil.copytree(built / kind, into / kind))


def load(folder: Path, **settings) -> GraphModel:
    return GraphModel.load(Settings(azureml_model_dir=folder, **settings))


def refusal(folder: Path, **settings) -> str:
    with pytest.raises(StartupError) as caught:
        load(folder, **settings).close()
    return str(caught.value)


# Detection


@pytest.mark.parametrize(
    ("kind", "found"),
    [
        ("checkpoint", ("checkpoint", "model/net")),
        ("tf1_saved_model", ("saved_model", ".")),
        ("tf2_saved_model", ("saved_model", ".")),
        ("keras_export", ("saved_model", ".")),
        ("frozen_graph", ("frozen_graph", "graph.pb")),
    ],
)
def test_each_format_is_detected_from_the_folder(built, kind, found):
    got = detect.find(Settings(azureml_model_dir=built / kind))
    assert (got.format, got.path) == (found[0], (built / kind / found[1]).resolve())


def test_a_saved_model_in_a_subfolder_is_found_as_azure_ml_registers_a_folder(built, tmp_path):
    shutil.copytree(built / "tf2_saved_model", tmp_path / "exported-model")
    got = detect.find(Settings(azureml_model_dir=tmp_path))
    assert (got.format, got.path) == ("saved_model", tmp_path / "exported-model")


def test_a_pb_beside_a_checkpoint_is_its_graph_dump_and_the_checkpoint_is_served(built, tmp_path):
    folder = copy(built, "checkpoint", tmp_path)
    shutil.copy(built / "frozen_graph" / formats.FROZEN_FILE, folder / "model" / "graph.pb")
    assert detect.find(Settings(azureml_model_dir=folder)).format == "checkpoint"
    forced = detect.find(Settings(azureml_model_dir=folder, model_format="frozen_graph"))
    assert (forced.format, forced.path) == ("frozen_graph", folder / "model" / "graph.pb")


@pytest.mark.parametrize(("model_format", "path"), [("saved_model", "export"), ("frozen_graph", "graph.pb")])
def test_model_format_picks_one_of_two_models_of_different_formats(built, model_format, path):
    got = detect.find(Settings(azureml_model_dir=built / "two_models", model_format=model_format))
    assert (got.format, got.path) == (model_format, built / "two_models" / path)


def test_model_file_prefix_naming_a_pb_file_serves_that_frozen_graph(built):
    settings = Settings(azureml_model_dir=built / "two_models", model_folder=".", model_file_prefix="graph.pb")
    assert detect.find(settings).format == "frozen_graph"


def test_the_highest_version_folder_is_the_one_detected(built, tmp_path):
    shutil.copytree(built / "checkpoint", tmp_path / "1")
    shutil.copytree(built / "tf2_saved_model", tmp_path / "2")
    got = detect.find(Settings(azureml_model_dir=tmp_path))
    assert (got.format, got.path) == ("saved_model", tmp_path / "2")


def test_the_how_tos_checkpoint_is_served_as_today(howto_model_dir):
    got = detect.find(Settings(azureml_model_dir=howto_model_dir))
    assert (got.format, got.path) == ("checkpoint", howto_model_dir / "model" / "mnist-tf.model")


# Loading: each format answers what TensorFlow answered as it built the model


def names(specs) -> list[tuple[str, str, tuple]]:
    return [(spec.name, spec.datatype, spec.shape) for spec in specs]


SCORES_AND_LABEL = [("label", "INT64", ()), ("scores", "FP32", (3,))]


@pytest.mark.parametrize(
    ("kind", "settings", "outputs"),
    [
        ("checkpoint", {}, SCORES_AND_LABEL),
        ("tf1_saved_model", {}, SCORES_AND_LABEL),
        ("tf2_saved_model", {}, SCORES_AND_LABEL),
        ("keras_export", {}, [("output_0", "FP32", (3,))]),
        ("frozen_graph", FROZEN_TENSORS, [("head/scores", "FP32", (3,)), ("head/label", "INT64", ())]),
        ("tf1_saved_model", {"signature_name": "logits"}, [("logits", "FP32", (3,))]),
    ],
)
def test_each_format_serves_what_tensorflow_answered(built, kind, settings, outputs):
    reference = formats.reference(built, kind)
    model = load(built / kind, **settings)
    try:
        assert names(model.inputs) == [("input/x" if kind == "frozen_graph" else "x", "FP32", (4,))]
        assert names(model.outputs) == outputs
        answers = model.predict((reference["x"],))
        for spec, answer in zip(model.outputs, answers, strict=True):
            expected = reference[spec.name.rsplit("/", 1)[-1]]
            assert answer.dtype == expected.dtype
            assert np.allclose(answer, expected, rtol=1e-6, atol=1e-6), spec.name
    finally:
        model.close()


def test_a_frozen_graphs_tensors_may_be_named_with_the_import_prefix(built):
    reference = formats.reference(built, "frozen_graph")
    model = load(built / "frozen_graph", input_tensor="import/input/x:0", output_tensor="import/head/label:0")
    try:
        assert (model.inputs[0].tensor, model.outputs[0].tensor) == ("input/x:0", "head/label:0")
        assert model.inputs[0].name == "input/x"  # as clients call it: the graph's own name
        assert model.predict((reference["x"],))[0].tolist() == reference["label"].tolist()
    finally:
        model.close()


def test_a_frozen_graph_saved_again_after_an_import_takes_its_names_without_the_prefix(built, tmp_path):
    # Imported with import_graph_def's default scope, then written out: every node is import/..., and users copy
    # the names they gave the graph (input/x) from the code that built it.
    folder = tmp_path / "reimported"
    folder.mkdir()
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((built / "frozen_graph" / "graph.pb").read_bytes())
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def)  # name="import"
        (folder / "graph.pb").write_bytes(graph.as_graph_def().SerializeToString())
    reference = formats.reference(built, "frozen_graph")
    model = load(folder, input_tensor="input/x:0", output_tensor="head/label:0")
    try:
        assert (model.inputs[0].tensor, model.outputs[0].tensor) == ("import/input/x:0", "import/head/label:0")
        assert model.predict((reference["x"],))[0].tolist() == reference["label"].tolist()
    finally:
        model.close()


def test_a_saved_models_weights_are_restored_by_its_loader(built):
    # The weights are not zeros or the initializers': the answers are the exported variables'.
    reference = formats.reference(built, "tf2_saved_model")
    model = load(built / "tf2_saved_model")
    try:
        w, b = formats.weights()
        logits = reference["x"] @ w + b
        assert model.predict((reference["x"],))[0].tolist() == logits.argmax(axis=1).tolist()
    finally:
        model.close()


def test_a_graph_taking_byte_strings_loads_where_the_interface_has_bytes(built):
    reference = formats.reference(built, "strings")
    if "BYTES" not in DATATYPES.values():  # until byte strings are served, they stop start-up in one line
        assert refusal(built / "strings") == (
            "signature input 'text' text:0 has dtype string; this server takes and answers numbers and booleans"
        )
        return
    model = load(built / "strings")
    try:
        assert names(model.inputs) == [("text", "BYTES", ())]
        assert model.predict((reference["text"],))[0].tolist() == reference["length"].tolist()
    finally:
        model.close()


# Start-up refusals, one line each


def test_a_frozen_graph_without_tensor_settings_names_its_placeholders_and_likely_outputs(built):
    assert refusal(built / "frozen_graph") == (
        f"frozen graph {built}/frozen_graph/graph.pb declares no inputs or outputs: set INPUT_TENSOR and "
        "OUTPUT_TENSOR (placeholders: input/x:0; likely outputs: head/scores:0, head/label:0)"
    )
    assert refusal(built / "frozen_graph", input_tensor="input/x:0").startswith(
        f"frozen graph {built}/frozen_graph/graph.pb declares no inputs or outputs: set OUTPUT_TENSOR (placeholders"
    )


def test_an_op_this_tensorflow_does_not_register_is_named(built):
    assert refusal(built / "unregistered_op", **FROZEN_TENSORS) == (
        f"frozen graph {built}/unregistered_op/graph.pb uses an op that TensorFlow {tf.__version__} does not "
        f"register: {formats.CONTRIB_OP} (a tf.contrib op, gone since TF 2, or a custom op): export the model "
        "without it"
    )


def test_an_unregistered_op_in_a_saved_model_is_named(built, tmp_path):
    folder = copy(built, "tf1_saved_model", tmp_path)
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    next(n for n in saved.meta_graphs[0].graph_def.node if n.name == "head/scores").op = "ImageConnectedComponents"
    (folder / "saved_model.pb").write_bytes(saved.SerializeToString())
    assert refusal(folder) == (
        f"SavedModel {folder} uses an op that TensorFlow {tf.__version__} does not register: ImageConnectedComponents "
        "(a tf.contrib op, gone since TF 2, or a custom op): export the model without it"
    )


def test_tags_that_do_not_match_list_the_tag_sets_present(built):
    assert refusal(built / "tf1_saved_model", saved_model_tags="serve, gpu") == (
        f"SavedModel {built}/tf1_saved_model has no meta-graph tagged gpu,serve (SAVED_MODEL_TAGS); its tag sets: serve"
    )


@pytest.mark.parametrize("name", ["model.keras", "weights.h5"])
def test_a_keras_file_says_to_export_a_saved_model(built, tmp_path, name):
    folder = tmp_path / "registered"
    folder.mkdir()
    shutil.copy(built / "keras_file" / "model.keras", folder / name)
    assert refusal(folder) == (
        f"{folder}/{name} is a Keras file, which this server does not load: export a SavedModel from it (Keras 3: "
        '`model.export("<folder>")`; TF 2 Keras: `tf.saved_model.save(model, "<folder>")`) and serve that folder'
    )


def test_a_keras_file_beside_its_export_is_no_candidate(built, tmp_path):
    folder = copy(built, "keras_export", tmp_path)
    shutil.copy(built / "keras_file" / "model.keras", tmp_path / "model.keras")
    assert detect.find(Settings(azureml_model_dir=tmp_path)).path == folder


def test_several_candidates_are_named_with_the_settings_that_pick(built):
    assert refusal(built / "two_models") == (
        f"2 models under {built}/two_models (export/saved_model.pb (SavedModel), graph.pb (frozen graph)); set "
        "MODEL_FORMAT (checkpoint, saved_model, frozen_graph) to pick one by its format, or MODEL_FOLDER and "
        "MODEL_FILE_PREFIX by its path"
    )


def test_several_saved_models_are_named_with_the_setting_that_picks(built, tmp_path):
    shutil.copytree(built / "tf1_saved_model", tmp_path / "a")
    shutil.copytree(built / "tf2_saved_model", tmp_path / "b")
    assert refusal(tmp_path, model_format="saved_model") == (
        f"2 SavedModels under {tmp_path} (a/saved_model.pb, b/saved_model.pb); set MODEL_FOLDER to the one to serve"
    )


def test_a_signature_name_not_present_lists_those_present(built):
    assert refusal(built / "tf1_saved_model", signature_name="predict") == (
        f"signature 'predict' (SIGNATURE_NAME) is not in SavedModel {built}/tf1_saved_model; its signatures: logits, "
        "serving_default"
    )


def test_a_saved_model_without_signatures_needs_the_tensor_settings(built, tmp_path):
    folder = copy(built, "tf1_saved_model", tmp_path)
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    saved.meta_graphs[0].ClearField("signature_def")
    (folder / "saved_model.pb").write_bytes(saved.SerializeToString())
    assert refusal(folder) == (
        f"SavedModel {folder} declares no signature: set INPUT_TENSOR and OUTPUT_TENSOR to the tensors to serve"
    )
    load(folder, input_tensor="input/x:0", output_tensor="head/label:0").close()


@pytest.mark.parametrize(
    ("kind", "file", "content", "message"),
    [
        ("tf1_saved_model", "saved_model.pb", b"", "cannot read SavedModel {file}: it holds no meta-graph"),
        ("tf1_saved_model", "saved_model.pb", b"\xff" * 64, "cannot read SavedModel {file}: Error parsing message"),
        ("frozen_graph", "graph.pb", b"", "cannot read frozen graph {file}: it holds no graph (no nodes)"),
        ("frozen_graph", "graph.pb", b"\xff" * 64, "cannot read frozen graph {file}: Error parsing message"),
    ],
)
def test_a_corrupt_model_file_is_named(built, tmp_path, kind, file, content, message):
    folder = copy(built, kind, tmp_path)
    (folder / file).write_bytes(content)
    got = refusal(folder, **(FROZEN_TENSORS if kind == "frozen_graph" else {}))
    assert got.startswith(message.format(file=folder / file)), got


def test_truncated_saved_model_variables_are_named(built, tmp_path):
    folder = copy(built, "tf1_saved_model", tmp_path)
    data = next((folder / "variables").glob("variables.data-*"))
    data.write_bytes(data.read_bytes()[:10])
    assert refusal(folder).startswith(f"cannot load SavedModel {folder}: ")


def test_a_forced_format_that_is_not_there_says_so(built):
    assert refusal(built / "frozen_graph", model_format="saved_model") == (
        f"no SavedModel (saved_model.pb) under {built}/frozen_graph (MODEL_FORMAT=saved_model)"
    )
    assert refusal(built / "tf2_saved_model", model_format="checkpoint") == (
        f"{built}/tf2_saved_model holds a SavedModel (saved_model.pb) and MODEL_FORMAT=checkpoint: set "
        "MODEL_FORMAT=saved_model (or auto) to serve it"
    )


def test_an_object_detection_export_folder_names_its_frozen_graph_and_the_setting_that_serves_it(built, tmp_path):
    # The Object Detection API's export: model.ckpt.*, frozen_inference_graph.pb and saved_model/ side by side.
    folder = Path(shutil.copytree(built / "checkpoint" / "model", tmp_path / "export"))
    shutil.copy(built / "frozen_graph" / "graph.pb", folder / "frozen_inference_graph.pb")
    shutil.copytree(built / "tf1_saved_model", folder / "saved_model")
    message = refusal(folder)
    assert message.startswith(
        f"2 models under {folder} (net.meta (checkpoint), saved_model/saved_model.pb (SavedModel))"
    )
    assert message.endswith(
        "; frozen_inference_graph.pb, beside a meta-graph, is served as a frozen graph only with "
        "MODEL_FORMAT=frozen_graph"
    )

"""Export the served model to a SavedModel, then prove that the export answers as the served model does.

    python -m tools.export_savedmodel --model-dir models/tf-dnn-mnist/1 --out exports/tf-dnn-mnist/1

What is exported is what the server serves: the graph `load_graph(settings)` loads (server/tfscoring/tf/load.py),
read from the same settings (AZUREML_MODEL_DIR, or MODEL_DIR, or --model-dir; INPUT_TENSOR, OUTPUT_TENSOR,
MODEL_VERSION, ... from the environment).  It is written by TF1's SavedModel builder from the loaded session (its
variables saved as they are in that session; a frozen graph has none) with the tag `serve` and one signature,
`serving_default`, whose keys are the names clients call the inputs and outputs by: what TF Serving, Vertex AI,
TF2's `tf.saved_model.load` and this server load.

The proof: the served model and the export each answer one reference batch (files given by --inputs, else the
Fashion-MNIST t10k rows for the how-to's model, else seeded random values), the export loaded twice, in a fresh TF1
graph and session (tf.compat.v1.saved_model.load) and through TF2's
`tf.saved_model.load(...).signatures["serving_default"]` in a process of its own (load_graph turns eager execution
off for its process; TF2 needs it on).  Integer, boolean and byte-string outputs must be equal; float outputs within
|export - served| <= atol + rtol * |served|.  A difference is one line per output (the largest difference and where)
and exit status 1; an export that cannot be made or loaded, or any failure not foreseen, one line and exit status
2.  With --onnx, the export is also converted by tf2onnx (requirements/onnx.txt) and compared through onnxruntime.
docs/export.md says more.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SERVE_TAG = "serve"  # tf.saved_model.SERVING: the tag TF Serving and Vertex load
SERVING_DEFAULT = "serving_default"  # the signature a TF Serving client gets without naming one
TF2_CHILD = "--tf2-child"  # argv[1] of the process that runs the export through TF2
# The exit statuses: the export answers as the served model does; it does not; it could not be made or checked.
SAME, DIFFERENT, FAILED = 0, 1, 2
# Fewer: a short report. More: still well within a second on the CPU for the how-to's model.
DEFAULT_ROWS = 256


class ExportError(Exception):
    """The export cannot be made or checked; the message is the one line the command prints."""


@dataclass(frozen=True)
class Input:
    """One served input, as the reference batch needs it (a TensorSpec's name, dtype and row shape)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 where free


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def shown(self) -> str:
        return f"|diff| <= {self.atol:g} + {self.rtol:g}*|served|"


@dataclass(frozen=True)
class Comparison:
    """One output of one loader of the export against the served model's."""

    output: str
    same: bool
    line: str  # what the report says of it


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [TF2_CHILD]:
        return _tf2_child(*argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _export_and_check(args)
    except ExportError as err:
        print(f"export failed: {err}", file=sys.stderr)
        return FAILED
    except Exception as err:  # TensorFlow, protobuf and the file system raise many types: still one line, not 1
        print(f"export failed: {type(err).__name__}: {_first_line(err)}", file=sys.stderr)
        return FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.export_savedmodel",
        description="Export the served model to a SavedModel (tag serve, signature serving_default) and compare "
        "its answers with the served model's on a reference batch.",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="the model directory as the server is given it (default: AZUREML_MODEL_DIR, else MODEL_DIR); the "
        "other settings (INPUT_TENSOR, OUTPUT_TENSOR, MODEL_VERSION, ...) come from the environment",
    )
    parser.add_argument("--out", type=Path, required=True, help="the SavedModel's folder (must not exist yet)")
    parser.add_argument(
        "--check-only", action="store_true", help="compare the SavedModel already at --out; export nothing"
    )
    parser.add_argument(
        "--inputs",
        action="append",
        default=[],
        metavar="[NAME=]FILE.npy",
        help="the reference batch: one .npy per input, its rows first (NAME may be left out for a one-input model)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR", "/usr/share/datasets/fashion-mnist")),
        help="Fashion-MNIST, the reference batch of the how-to's model where --inputs is not given",
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows of the reference batch, at most")
    parser.add_argument("--seed", type=int, default=0, help="the seed of random reference values")
    parser.add_argument("--rtol", type=float, default=1e-6, help="float outputs: relative tolerance")
    parser.add_argument("--atol", type=float, default=1e-6, help="float outputs: absolute tolerance")
    parser.add_argument("--onnx", type=Path, help="also convert the export to this ONNX file and compare it")
    parser.add_argument("--onnx-rtol", type=float, default=1e-5, help="ONNX float outputs: relative tolerance")
    parser.add_argument("--onnx-atol", type=float, default=1e-5, help="ONNX float outputs: absolute tolerance")
    return parser


def _export_and_check(args: argparse.Namespace) -> int:
    import tensorflow as tf

    from tfscoring.errors import StartupError

    tf.get_logger().setLevel("ERROR")  # TF1's deprecation notices, which say nothing of the export
    out = args.out.resolve()
    if args.check_only and not (out / "saved_model.pb").is_file():
        raise ExportError(f"no SavedModel at {out} to check (saved_model.pb is missing)")
    if not args.check_only and out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty: give a new folder (for TF Serving, <base>/<version>)")
    try:
        graph = _load_served(args.model_dir)
    except StartupError as err:
        raise ExportError(f"the served model cannot be loaded: {err}") from None
    inputs = [Input(spec.name, spec.dtype, spec.shape) for spec in graph.inputs]
    outputs = [spec.name for spec in graph.outputs]
    batch, source = reference_batch(inputs, args)
    served = _run_served(graph, batch)
    if not args.check_only:
        export(graph, out)
    graph.session.close()

    tolerance = Tolerance(args.rtol, args.atol)
    print(f"SavedModel {out}: tag {SERVE_TAG!r}, signature {SERVING_DEFAULT!r}")
    print(f"  inputs {', '.join(i.name for i in inputs)}; outputs {', '.join(outputs)}")
    print(f"reference batch: {len(batch[0])} rows, {source}")
    print(f"float outputs pass where {tolerance.shown()}; integer, boolean and byte-string outputs must be equal")
    results = {}
    results["TF1 session (tf.compat.v1.saved_model.load)"] = (run_tf1(out, inputs, outputs, batch), tolerance)
    tf2_outputs, arguments = run_tf2(out, inputs, batch)
    results[f"TF2 (tf.saved_model.load(...).signatures[{SERVING_DEFAULT!r}])"] = (tf2_outputs, tolerance)
    if args.onnx:
        onnx_tolerance = Tolerance(args.onnx_rtol, args.onnx_atol)
        onnx_outputs = run_onnx(out, args.onnx.resolve(), inputs, outputs, batch, arguments)
        results[f"ONNX {args.onnx} (tf2onnx, onnxruntime; {onnx_tolerance.shown()})"] = (onnx_outputs, onnx_tolerance)

    different = []
    for loader, (answers, tol) in results.items():
        print(f"{loader}:")
        for name, expected in zip(outputs, served, strict=True):
            result = compare(name, expected, answers.get(name), tol)
            print(f"  {result.line}")
            if not result.same:
                different.append(f"{loader}: {result.line}")
    if different:
        print(f"DIFFERENT: the export does not answer as the served model does ({len(different)}):", file=sys.stderr)
        for line in different:
            print(f"  {line}", file=sys.stderr)
        return DIFFERENT
    print("the export answers as the served model does")
    return SAME


def _load_served(model_dir: Path | None):
    """The served graph, loaded as a worker loads it, from the server's settings (the environment)."""
    from tfscoring.config import Settings
    from tfscoring.tf.load import load_graph

    if model_dir is not None:
        os.environ["AZUREML_MODEL_DIR"] = str(model_dir.resolve())
    elif "AZUREML_MODEL_DIR" not in os.environ and os.environ.get("MODEL_DIR"):
        os.environ["AZUREML_MODEL_DIR"] = str(Path(os.environ["MODEL_DIR"]).resolve())  # make's name for it
    return load_graph(Settings.from_env())


# The reference batch.


def reference_batch(inputs: list[Input], args: argparse.Namespace) -> tuple[tuple[np.ndarray, ...], str]:
    """Each input's rows, and where they come from: the --inputs files, else the t10k images where the model is the
    how-to's (one FP32 input of 784 values), else seeded random values."""
    if args.rows < 1:
        raise ExportError(f"--rows {args.rows}: give 1 or more")
    if args.inputs:
        return _from_files(inputs, args.inputs, args.rows), "from " + ", ".join(args.inputs)
    if _is_howto(inputs):
        try:
            from model import idx

            images = idx.load_split(args.data_dir, "t10k")[0][: args.rows]
            return (images,), f"Fashion-MNIST t10k images from {args.data_dir}"
        except (OSError, ValueError) as err:
            print(f"no Fashion-MNIST ({err}): random reference values instead", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    return tuple(_random(rng, i, args.rows) for i in inputs), f"random values (seed {args.seed}, free dimensions 3)"


def _is_howto(inputs: list[Input]) -> bool:
    return len(inputs) == 1 and inputs[0].dtype == np.float32 and inputs[0].shape == (784,)


def _from_files(inputs: list[Input], given: list[str], rows: int) -> tuple[np.ndarray, ...]:
    files: dict[str, str] = {}
    for item in given:
        name, _, path = item.rpartition("=")
        if not name and len(inputs) == 1:
            name = inputs[0].name
        if name not in {i.name for i in inputs}:
            raise ExportError(f"--inputs {item}: say which input it holds, NAME=FILE.npy, NAME one of {_names(inputs)}")
        files[name] = path
    missing = [i.name for i in inputs if i.name not in files]
    if missing:
        raise ExportError(f"--inputs gives no file for {', '.join(missing)}")
    arrays = []
    for spec in inputs:
        try:
            array = np.load(files[spec.name], allow_pickle=spec.dtype.kind == "O")[:rows]
        except (OSError, ValueError) as err:
            raise ExportError(f"cannot read {files[spec.name]}: {err}") from None
        arrays.append(_as_input(array, spec, files[spec.name]))
    if len({len(a) for a in arrays}) > 1:
        raise ExportError(f"the --inputs files hold different numbers of rows: {[len(a) for a in arrays]}")
    return tuple(arrays)


def _as_input(array: np.ndarray, spec: Input, path: str) -> np.ndarray:
    """The file's rows as the server would decode them for this input: its dtype (a safe cast) and row shape."""
    fits = array.ndim == len(spec.shape) + 1 and all(
        n in (-1, m) for n, m in zip(spec.shape, array.shape[1:], strict=True)
    )
    if not fits:
        raise ExportError(f"{path} has shape {array.shape}; input {spec.name} takes rows of {spec.shape} (-1: any)")
    if spec.dtype.kind == "O":  # byte strings
        return array.astype(object)
    if not np.can_cast(array.dtype, spec.dtype, "same_kind"):
        raise ExportError(f"{path} holds {array.dtype}; input {spec.name} takes {spec.dtype}")
    return array.astype(spec.dtype)


def _random(rng: np.random.Generator, spec: Input, rows: int) -> np.ndarray:
    """Seeded values in the input's dtype: floats N(0, 1); integers in [0, 3), small enough to index any table of
    3 or more (ids are the integer inputs most graphs take); booleans either; byte strings short words."""
    shape = (rows, *(3 if n < 0 else n for n in spec.shape))
    kind = spec.dtype.kind
    if kind == "f":
        return rng.standard_normal(shape).astype(spec.dtype)
    if kind in "iu":
        return rng.integers(0, 3, shape).astype(spec.dtype)
    if kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    words = rng.integers(0, 1000, shape)
    return np.vectorize(lambda n: f"word{n}".encode(), otypes=[object])(words)


def _names(inputs: list[Input]) -> str:
    return ", ".join(i.name for i in inputs)


def _run_served(graph, batch: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The served model's answers: the session call a worker makes."""
    import tensorflow.compat.v1 as tf

    try:
        return tuple(np.asarray(a) for a in graph.session_call(*batch))
    except tf.errors.OpError as err:
        raise ExportError(
            f"the served model refused the reference batch ({_first_line(err)}): give one with --inputs"
        ) from None


# The export.


def export(graph, out: Path) -> None:
    """The loaded graph and its session's variables as a SavedModel at `out`: tag serve, one signature keyed
    serving_default whose input and output keys are the served names."""
    import tensorflow.compat.v1 as tf

    signature = tf.saved_model.signature_def_utils.predict_signature_def(
        {spec.name: tensor for spec, tensor in zip(graph.inputs, graph.feeds, strict=True)},
        {spec.name: tensor for spec, tensor in zip(graph.outputs, graph.fetches, strict=True)},
    )
    with graph.session.graph.as_default():
        builder = tf.saved_model.Builder(str(out))
        builder.add_meta_graph_and_variables(
            graph.session,
            [SERVE_TAG],
            signature_def_map={SERVING_DEFAULT: signature},
            main_op=_tables_initializer(),
            saver=_variables_saver(graph.session),
            clear_devices=True,  # run wherever the export is loaded, not where this session ran
            strip_default_attrs=True,  # loadable by older TensorFlow (TF Serving) that lacks newer ops' defaults
        )
        builder.save()


# The ops that hold a variable's value: TF1's reference variables and resource variables (TF2's).
VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp")


def _variables_saver(session):
    """A saver of every variable of the graph that holds a value, where the graph's variables collection misses
    some (a TF2 SavedModel's variables, loaded into a TF1 graph, are in no collection: the builder's own saver, made
    from the collection, would save none of them); None where the collection has them all, for the builder's own.

    A variable op whose variable the session does not hold is left out: Keras 3's model.export() leaves in its graph
    the handles of the layers' variables as they were first traced (scores/bias), which nothing restores or reads;
    the loader restores the variables the signature reads under other handles (scores/bias_1).  Such a handle has no
    value to save, and anything that read it would fail in the served model as in the export."""
    import tensorflow.compat.v1 as tf

    graph = tf.get_default_graph()
    held = _with_values(session, [op for op in graph.get_operations() if op.type in VARIABLE_OPS])
    collected = {v.op.name for v in tf.global_variables() + tf.get_collection(tf.GraphKeys.SAVEABLE_OBJECTS)}
    if {op.name for op in held} <= collected:
        return None

    def saved(op):  # a saver takes a resource variable as a read of its handle, a reference variable as it is
        if op.type != "VarHandleOp":
            return op.outputs[0]
        return tf.raw_ops.ReadVariableOp(
            resource=op.outputs[0], dtype=op.get_attr("dtype"), name=f"{op.name}/export_read"
        )

    return tf.train.Saver(var_list={op.name: saved(op) for op in held}, sharded=True, allow_empty=True)


def _with_values(session, variables: list) -> list:
    """The variable ops whose variable the session holds (a resource variable created, a reference variable
    initialized), asked in one session call."""
    import tensorflow.compat.v1 as tf

    if not variables:
        return []
    asked = [
        tf.raw_ops.VarIsInitializedOp(resource=op.outputs[0], name=f"{op.name}/export_has_value")
        if op.type == "VarHandleOp"
        else tf.raw_ops.IsVariableInitialized(ref=op.outputs[0], name=f"{op.name}/export_has_value")
        for op in variables
    ]
    return [op for op, has in zip(variables, session.run(asked), strict=True) if has]


def _tables_initializer():
    """The op that fills the graph's lookup tables, run by every loader of the SavedModel (their values are not
    variables the builder saves); None where the graph has no tables or already carries its own main op, which
    the builder keeps with the graph's collections (a second one makes the export unloadable)."""
    import tensorflow.compat.v1 as tf

    graph = tf.get_default_graph()
    carried = tf.saved_model.constants.MAIN_OP_KEY, tf.saved_model.constants.LEGACY_INIT_OP_KEY
    if not graph.get_collection(tf.GraphKeys.TABLE_INITIALIZERS) or any(graph.get_collection(k) for k in carried):
        return None
    return tf.tables_initializer(name="export_tables_initializer")


# The export's answers, by each loader.


def run_tf1(out: Path, inputs: list[Input], outputs: list[str], batch) -> dict[str, np.ndarray]:
    """The export's answers loaded in a fresh graph and session, through its serving_default signature."""
    import tensorflow.compat.v1 as tf

    graph = tf.Graph()
    with tf.Session(graph=graph) as session:
        try:
            meta = tf.saved_model.load(session, [SERVE_TAG], str(out))
        except Exception as err:  # TF raises many types for a model it cannot load
            raise ExportError(f"TF1 cannot load the export {out}: {_first_line(err)}") from None
        if SERVING_DEFAULT not in meta.signature_def:
            raise ExportError(f"the export {out} has no {SERVING_DEFAULT!r} signature ({sorted(meta.signature_def)})")
        signature = meta.signature_def[SERVING_DEFAULT]
        _same_keys("inputs", [i.name for i in inputs], signature.inputs)
        _same_keys("outputs", outputs, signature.outputs)
        feed = {signature.inputs[i.name].name: array for i, array in zip(inputs, batch, strict=True)}
        answers = session.run([signature.outputs[name].name for name in outputs], feed)
    return dict(zip(outputs, answers, strict=True))


def _same_keys(side: str, served: list[str], keys) -> None:
    if sorted(served) != sorted(keys):
        raise ExportError(f"the export's signature {side} are {sorted(keys)}; the served model's are {sorted(served)}")


def run_tf2(out: Path, inputs: list[Input], batch) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The export's answers through TF2 (tf.saved_model.load(...).signatures["serving_default"]), in a Python of
    its own, and the keyword each input key became in the signature function (ONNX names its inputs by them)."""
    with tempfile.TemporaryDirectory(prefix="export-check-") as folder:
        sent, got = Path(folder, "inputs.pickle"), Path(folder, "outputs.pickle")
        sent.write_bytes(pickle.dumps({i.name: a for i, a in zip(inputs, batch, strict=True)}))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        command = [sys.executable, "-m", "tools.export_savedmodel", TF2_CHILD, str(out), str(sent), str(got)]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not got.is_file():
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise ExportError(f"TF2 cannot load or call the export {out}: {reason}")
        answer = pickle.loads(got.read_bytes())  # written just now by our own child process
    return answer["outputs"], answer["arguments"]


def _tf2_child(out: str, sent: str, got: str) -> int:
    """In the process run_tf2 starts: TF2 as a TF Serving or Keras user loads the export, eager."""
    import tensorflow as tf

    batch = pickle.loads(Path(sent).read_bytes())  # written by the parent process
    function = tf.saved_model.load(out).signatures[SERVING_DEFAULT]
    answers = function(**{name: tf.constant(array) for name, array in batch.items()})
    arguments = {key: spec.name for key, spec in function.structured_input_signature[1].items()}
    outputs = {name: tensor.numpy() for name, tensor in answers.items()}
    Path(got).write_bytes(pickle.dumps({"outputs": outputs, "arguments": arguments}))
    return 0


def run_onnx(
    out: Path, onnx_file: Path, inputs: list[Input], outputs: list[str], batch, arguments: dict[str, str]
) -> dict[str, np.ndarray]:
    """The export converted by tf2onnx (its command, in a process of its own as it needs eager TF) and run by
    onnxruntime.  tf2onnx names an ONNX input by the TF2 signature function's keyword for it, an output by its key."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("--onnx needs tf2onnx and onnxruntime: pip install -r requirements/onnx.txt") from None
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(out), "--output", str(onnx_file)]
    command += ["--tag", SERVE_TAG, "--signature_def", SERVING_DEFAULT]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "Error" in line or "error" in line]
        raise ExportError(f"tf2onnx cannot convert {out}: {(lines or done.stderr.splitlines() or ['?'])[-1]}")
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    present = {i.name for i in session.get_inputs()}
    feed = {}
    for spec, array in zip(inputs, batch, strict=True):
        candidates = (spec.name, arguments.get(spec.name, ""), f"{arguments.get(spec.name, '')}:0")
        name = next((c for c in candidates if c in present), None)
        if name is None:
            raise ExportError(f"the ONNX model has no input for {spec.name} (it has {sorted(present)})")
        feed[name] = array
    names = [o.name for o in session.get_outputs()]
    missing = [o for o in outputs if o not in names]
    if missing:
        raise ExportError(f"the ONNX model has no output {', '.join(missing)} (it has {names})")
    return dict(zip(outputs, session.run(outputs, feed), strict=True))


# The comparison.


def compare(name: str, served: np.ndarray, exported: np.ndarray | None, tolerance: Tolerance) -> Comparison:
    """One output, the export's against the served model's: equal for integers, booleans and byte strings, within
    the tolerance for floats (NaN where the served model has NaN)."""
    if exported is None:
        return Comparison(name, False, f"{name}: missing from the export's answers")
    exported = np.asarray(exported)
    head = f"{name} {served.dtype} {served.shape}"
    if exported.shape != served.shape or exported.dtype != served.dtype:
        return Comparison(name, False, f"{head}: the export answers {exported.dtype} {exported.shape}")
    if served.dtype.kind == "f":
        return _compare_floats(head, name, served, exported, tolerance)
    unequal = served != exported
    if not unequal.any():
        return Comparison(name, True, f"{head}: equal")
    where = _index(np.argmax(unequal), served.shape)
    line = f"{head}: {int(unequal.sum())} values differ, first at {where}: served {served[where]!s}, "
    line += f"export {exported[where]!s}"
    if served.dtype.kind in "iu":
        diff = np.abs(served.astype(np.float64) - exported.astype(np.float64))
        line += f"; max |diff| {diff.max():g} at {_index(np.argmax(diff), served.shape)}"
    return Comparison(name, False, line)


def _compare_floats(head: str, name: str, served, exported, tolerance: Tolerance) -> Comparison:
    wide_served, wide_exported = served.astype(np.float64), exported.astype(np.float64)
    nan_differs = np.isnan(wide_served) != np.isnan(wide_exported)
    diff = np.where(np.isnan(wide_served) | np.isnan(wide_exported), 0.0, np.abs(wide_served - wide_exported))
    diff = np.where(np.isinf(wide_served) & (wide_served == wide_exported), 0.0, diff)  # inf - inf is NaN
    too_far = nan_differs | (diff > tolerance.atol + tolerance.rtol * np.abs(np.nan_to_num(wide_served)))
    largest = _index(np.argmax(diff), served.shape) if diff.size else ()
    exact = np.array_equal(served, exported, equal_nan=True)
    summary = f"max |diff| {diff.max() if diff.size else 0.0:g}" + (" (bit-exact)" if exact else f" at {largest}")
    if not too_far.any():
        return Comparison(name, True, f"{head}: {summary}")
    worst = _index(np.argmax(np.where(nan_differs, np.inf, np.where(too_far, diff, -1.0))), served.shape)
    line = f"{head}: {summary}; {int(too_far.sum())} values beyond the tolerance, worst at {worst}: "
    line += f"served {served[worst]!s}, export {exported[worst]!s}"
    return Comparison(name, False, line)


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape))


def _first_line(err: BaseException) -> str:
    try:
        from tfscoring.tf.messages import first_line
    except ImportError:  # main's last resort must not fail in turn where the server's package is missing
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    return first_line(err)


if __name__ == "__main__":
    sys.exit(main())

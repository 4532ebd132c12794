"""Which model the served folder holds, and in which format: detected from its files, or forced by MODEL_FORMAT.

- a TF1 meta-graph checkpoint: `<prefix>.meta` with `<prefix>.index` and `<prefix>.data-*` (the how-to's);
- a SavedModel, TF1 (SavedModelBuilder, simple_save, an Estimator's export) or TF2 (tf.saved_model.save, Keras 3's
  model.export()): a folder holding `saved_model.pb` (or `saved_model.pbtxt`);
- a frozen GraphDef: a `*.pb` file of constants and ops (freeze_graph, the Object Detection API's
  frozen_inference_graph.pb).

The how-to's checkpoint (MODEL_FOLDER/MODEL_FILE_PREFIX), where it is there, or the file MODEL_FILE_PREFIX names is
served as it is.  Otherwise the folder (MODEL_FOLDER, where that alone is set) is searched, through linked folders
too: the one model found is served; several stop start-up naming them.  A `.pb` beside a checkpoint's `.meta` is
taken for a dump of its graph (tf.train.write_graph) and found only where MODEL_FORMAT=frozen_graph, and a
SavedModel's own folders (variables/, assets/) are not searched.  Keras files are not served: they stop start-up
with what to export instead, where nothing else is found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tfscoring import log
from tfscoring.config import Settings
from tfscoring.errors import StartupError

Format = Literal["checkpoint", "saved_model", "frozen_graph"]
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SHOWN = 5  # candidates a message names


@dataclass(frozen=True)
class Found:
    format: Format
    path: Path  # a checkpoint's prefix, a SavedModel's folder, a frozen graph's file


@dataclass
class _Files:
    """What a search of a folder found, each as a path."""

    checkpoints: list[Path] = field(default_factory=list)  # prefixes of .meta files
    saved_models: list[Path] = field(default_factory=list)  # folders
    frozen_graphs: list[Path] = field(default_factory=list)  # .pb files not beside a .meta
    graph_dumps: list[Path] = field(default_factory=list)  # .pb files beside a .meta
    keras: list[Path] = field(default_factory=list)


def find(settings: Settings) -> Found:
    """The model to load (StartupError: none, or several the settings do not choose between)."""
    chosen = settings.model_format
    prefix, root = settings.checkpoint_prefix, settings.checkpoint_search
    if root is None:  # MODEL_FILE_PREFIX is set: the file it names, as it is
        if chosen == "frozen_graph" or (chosen == "auto" and prefix.suffix == ".pb"):
            _require(prefix.is_file(), f"frozen graph not found: {prefix} (check MODEL_FOLDER and MODEL_FILE_PREFIX)")
            return Found("frozen_graph", prefix)
        if chosen != "saved_model":
            return _checkpoint(prefix)
        root = prefix.parent
    elif chosen in ("auto", "checkpoint") and prefix.with_name(prefix.name + ".meta").is_file():
        return _checkpoint(prefix)  # the how-to's layout
    files = _search(root)
    if chosen == "checkpoint":
        return _checkpoint(_one_checkpoint(files.checkpoints, root, prefix, files))
    if chosen == "saved_model":
        return Found("saved_model", _one(files.saved_models, root, "saved_model", "set MODEL_FOLDER", files))
    if chosen == "frozen_graph":
        found = files.frozen_graphs + files.graph_dumps
        return Found("frozen_graph", _one(found, root, "frozen_graph", "set MODEL_FOLDER and MODEL_FILE_PREFIX", files))
    checkpoints = _latest_steps(files.checkpoints)
    candidates = [
        *(Found("checkpoint", p) for p in checkpoints),
        *(Found("saved_model", p) for p in files.saved_models),
        *(Found("frozen_graph", p) for p in files.frozen_graphs),
    ]
    if len(candidates) > 1 and len(candidates) == len(checkpoints):
        return _checkpoint(_one_checkpoint(files.checkpoints, root, prefix, files))  # today's words for several
    if len(candidates) > 1:
        shown = ", ".join(f"{_shown(c.path, root, c.format)} ({_NAMES[c.format]})" for c in candidates[:SHOWN])
        raise StartupError(
            f"{len(candidates)} models under {root} ({shown}); set MODEL_FORMAT (checkpoint, saved_model, "
            "frozen_graph) to pick one by its format, or MODEL_FOLDER and MODEL_FILE_PREFIX by its path"
            + _dumps_said(files, root)
        )
    if not candidates:
        _refuse_keras(files, root)
        return _checkpoint(prefix)  # says what is missing
    found = candidates[0]
    if found.format != "checkpoint":
        log.info("%s found: %s (MODEL_FORMAT=auto)", _NAMES[found.format], found.path)
        return found
    return _checkpoint(_one_checkpoint(files.checkpoints, root, prefix, files))


_NAMES = {"checkpoint": "checkpoint", "saved_model": "SavedModel", "frozen_graph": "frozen graph"}


def _dumps_said(files: _Files, root: Path) -> str:
    """What a message adds for a .pb beside a meta-graph, which auto detection takes for a dump of its graph: an
    Object Detection API export's frozen_inference_graph.pb is one such, served with MODEL_FORMAT=frozen_graph."""
    if not files.graph_dumps:
        return ""
    shown = ", ".join(str(p.relative_to(root)) for p in files.graph_dumps[:SHOWN])
    return f"; {shown}, beside a meta-graph, is served as a frozen graph only with MODEL_FORMAT=frozen_graph"


def _checkpoint(prefix: Path) -> Found:
    meta = prefix.with_name(prefix.name + ".meta")
    _require(meta.is_file(), f"meta-graph not found: {meta} (check MODEL_FOLDER and MODEL_FILE_PREFIX)")
    index = prefix.with_name(prefix.name + ".index")
    _require(index.is_file(), f"checkpoint not found: {index} (check MODEL_FOLDER and MODEL_FILE_PREFIX)")
    return Found("checkpoint", prefix)


def _one_checkpoint(found: list[Path], root: Path, default: Path, files: _Files) -> Path:
    """Of the meta-graphs found, the only one, or the latest of a folder's `checkpoint` file (a tf.train.Saver folder
    holds one meta-graph per saved step); the default prefix where there is none (its absence is then worded)."""
    found = _latest_steps(found)
    if len(found) > 1:
        shown = ", ".join(f"{p.relative_to(root)}.meta" for p in found[:SHOWN])
        raise StartupError(
            f"{len(found)} meta-graphs under {root} ({shown}); set MODEL_FOLDER and MODEL_FILE_PREFIX to the one to "
            "serve"
        )
    if not found:
        if files.saved_models:
            raise StartupError(
                f"{root} holds a SavedModel ({_shown(files.saved_models[0], root, 'saved_model')}) and "
                "MODEL_FORMAT=checkpoint: set MODEL_FORMAT=saved_model (or auto) to serve it"
            )
        _refuse_keras(files, root)
        return default
    log.info("checkpoint found: %s (MODEL_FILE_PREFIX is not set)", found[0])
    return found[0]


def _latest_steps(found: list[Path]) -> list[Path]:
    """The meta-graphs found, a tf.train.Saver folder's steps cut down to the latest its `checkpoint` file names."""
    found = sorted(found)
    if len(found) > 1 and len({p.parent for p in found}) == 1:
        latest = _latest_checkpoint(found[0].parent)
        named = [p for p in found if latest and p.name == Path(latest).name]
        return named or found
    return found


def _latest_checkpoint(folder: Path) -> str | None:
    import tensorflow.compat.v1 as tf  # only where a folder holds several steps

    return tf.train.latest_checkpoint(str(folder))  # None without a `checkpoint` file


def _one(found: list[Path], root: Path, format_: Format, setting: str, files: _Files) -> Path:
    """The only model of one format (StartupError: none, or several)."""
    if not found:
        _refuse_keras(files, root)
        raise StartupError(f"no {_LOOKED_FOR[format_]} under {root} (MODEL_FORMAT={format_})")
    if len(found) > 1:
        shown = ", ".join(_shown(p, root, format_) for p in sorted(found)[:SHOWN])
        raise StartupError(f"{len(found)} {_NAMES[format_]}s under {root} ({shown}); {setting} to the one to serve")
    log.info("%s found: %s", _NAMES[format_], found[0])
    return found[0]


_LOOKED_FOR = {"saved_model": "SavedModel (saved_model.pb)", "frozen_graph": "frozen graph (*.pb)"}


def _refuse_keras(files: _Files, root: Path) -> None:
    if files.keras:
        raise StartupError(
            f"{files.keras[0]} is a Keras file, which this server does not load: export a SavedModel "
            'from it (Keras 3: `model.export("<folder>")`; TF 2 Keras: `tf.saved_model.save(model, "<folder>")`) '
            "and serve that folder"
        )


def _shown(path: Path, root: Path, format_: str) -> str:
    """A model's path as messages show it: from the searched folder, a SavedModel by its saved_model.pb."""
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    if format_ == "checkpoint":
        return f"{shown}.meta"
    if format_ == "saved_model":
        return str(shown / next(name for name in SAVED_MODEL_FILES if (path / name).is_file()))
    return str(shown)


def _search(root: Path) -> _Files:
    """Every model file under root, through symbolic links too (a model folder mounted or linked in; Path.rglob does
    not enter linked folders before Python 3.13); a SavedModel's own subfolders are not entered."""
    files, seen = _Files(), set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree: walked already
            subfolders.clear()
            continue
        seen.add(real)
        if any(name in names for name in SAVED_MODEL_FILES):
            files.saved_models.append(Path(folder))
            subfolders.clear()
            continue
        metas = [Path(folder, name[: -len(".meta")]) for name in names if name.endswith(".meta")]
        files.checkpoints += metas
        graphs = [Path(folder, name) for name in names if name.endswith(".pb")]
        (files.graph_dumps if metas else files.frozen_graphs).extend(graphs)
        files.keras += [Path(folder, name) for name in names if name.endswith(KERAS_SUFFIXES)]
    files.saved_models.sort()
    files.frozen_graphs.sort()
    files.keras.sort()
    return files


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StartupError(message)

"""Which version of a model folder is served: TF Serving's layout, a folder of `<version>/` subfolders.

A model folder holding subfolders named by integers (`1/`, `2/`, `10/`) is a versioned one: the highest version is
served, or the one MODEL_VERSION pins.  Any other folder is one version itself (Azure ML mounts a registered
model's `<name>/<version>/` folder), served as it is.  The workers read this once at start-up; serve.py's watcher
(process/versions.py) reads it again to see a new version arrive, and pins the one it starts workers on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tfscoring.errors import StartupError


@dataclass(frozen=True)
class ServedFolder:
    path: Path  # the folder the model is loaded from
    name: str  # the model's name: the versioned folder's own, else the folder above the version
    version: str  # the version folder's name


def versions(root: Path) -> list[int]:
    """The versions under `root`, lowest first: its subfolders named by a non-negative integer (links followed);
    empty where it holds none (or cannot be read)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.name.isascii() and entry.name.isdigit():
            try:
                if entry.is_dir():  # follows a link, as a mounted or linked-in version folder is
                    found.append(int(entry.name))
            except OSError:
                continue
    return sorted(found)


def served_folder(root: Path, pinned: str | None, name: str | None = None) -> ServedFolder:
    """The folder to load for the model folder `root`: its highest version, or `pinned` (MODEL_VERSION) where it is
    versioned (StartupError: the pinned version is absent); `root` itself where it is not."""
    root = Path(os.path.abspath(root))  # not resolve(): a symlink's own name counts
    found = versions(root)
    if not found or _is_itself(root, pinned, found):
        return ServedFolder(root, name or root.parent.name or "model", pinned or root.name or "1")
    if pinned is None:
        chosen = str(found[-1])
    else:
        match = [v for v in found if pinned.isascii() and pinned.isdigit() and v == int(pinned)]
        if not match:
            shown = ", ".join(str(v) for v in found[-10:])
            raise StartupError(f"MODEL_VERSION={pinned} is not a version under {root} (versions: {shown})")
        chosen = str(match[0])
    folder = root / chosen
    if not folder.is_dir():  # 007/ and 7/ both read as 7: load the folder that is there
        folder = next(p for p in root.iterdir() if p.name.isdigit() and int(p.name) == int(chosen))
    return ServedFolder(folder, name or root.name or "model", chosen)


def _is_itself(root: Path, pinned: str | None, found: list[int]) -> bool:
    """MODEL_VERSION names the folder itself, not one inside it: a version folder whose model has integer-named
    folders of its own (an Estimator's export, `2/1700000000/saved_model.pb`), as serve.py starts each version."""
    numbers = [name for name in (root.name, pinned or "") if name.isascii() and name.isdigit()]
    return len(numbers) == 2 and int(numbers[0]) == int(numbers[1]) and int(numbers[1]) not in found

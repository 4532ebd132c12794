"""What each format's loader hands load.py: the tensors to serve, what messages call the model, and the step that
restores its variables once the tensors are checked (nothing, where the loader restored them already)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tfscoring.tf.tensors import Served


@dataclass(frozen=True)
class Imported:
    served: Served
    where: Path  # the file or folder loaded, as messages name it
    restore: Callable[[], None] = lambda: None

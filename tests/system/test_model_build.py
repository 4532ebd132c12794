"""model/build.py as make model runs it (python -m model.build): the same seed gives the same weights, a short build
reports its accuracy, missing data is a clear error."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.support import REPO


def _build(out: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "model.build", "--out", str(out), "--data-dir", str(data_dir), *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("mnist-tf.model.data-*")}


def test_same_seed_same_weights_and_a_short_build_reports_accuracy(tmp_path, data_dir):
    small = ("--epochs", "1", "--limit", "3000")
    first, second = _build(tmp_path / "a", data_dir, *small), _build(tmp_path / "b", data_dir, *small)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:]
    assert "held-out (t10k) accuracy" in first.stdout
    assert _digest(tmp_path / "a" / "model") == _digest(tmp_path / "b" / "model") != {}


def test_missing_data_is_a_clear_error(tmp_path):
    result = _build(tmp_path / "m", tmp_path / "no-data")
    assert result.returncode == 2
    assert f"no train-images-idx?-ubyte[.gz] in {tmp_path / 'no-data'}" in result.stderr

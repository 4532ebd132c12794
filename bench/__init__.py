"""The benchmark (make bench) and the scripts it compares."""

import sys
from pathlib import Path

# The benchmark reuses the server's sizing and the tests' server launcher, as pytest does (pyproject.toml).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

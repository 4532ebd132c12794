"""The layers of server/tfscoring (docs/architecture.md): each folder imports only itself and the shared modules at
the bottom; app.py alone puts the layers together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "tfscoring"
LAYERS = ("http", "protocols", "batching", "tf", "observability", "process")
# The bottom every layer may use: settings, error types, the model's interface, constants, the small HTTP responder,
# which version folder is served (versions.py),
# the package's logger; and process/sizing.py, arithmetic on the machine's cores and memory that config.py's defaults
# and tf/devices.py read (it imports nothing of the package).
BOTTOM = {"tfscoring", "config", "errors", "interface", "shared", "responder", "versions", "process.sizing"}


def imports(path: Path) -> set[str]:
    """The tfscoring modules `path` imports, relative to the package ("protocols.codec", "errors", ...)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tfscoring":
            base = node.module.removeprefix("tfscoring").removeprefix(".")
            for alias in node.names:  # `from tfscoring.protocols import codec` imports protocols.codec
                module = f"{base}.{alias.name}" if base else alias.name
                found.add(module if (PACKAGE / (module.replace(".", "/") + ".py")).exists() else base or "tfscoring")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("tfscoring.") for a in node.names if a.name.startswith("tfscoring.")}
    return found


def layer_of(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_itself_and_the_bottom(layer):
    strays = {
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in (PACKAGE / layer).rglob("*.py")
        for module in imports(path)
        if layer_of(module) != layer and module not in BOTTOM
    }
    assert not strays


def test_the_bottom_imports_no_layer():
    bottom_files = [PACKAGE / f"{name}.py" for name in BOTTOM if "." not in name and name != "tfscoring"]
    bottom_files += [PACKAGE / "process" / "sizing.py"]
    strays = {
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in bottom_files
        for module in imports(path)
        if module not in BOTTOM
    }
    assert not strays


def test_only_the_entry_script_imports_the_application():
    users = {path.relative_to(PACKAGE.parent) for path in PACKAGE.rglob("*.py") if "app" in imports(path)}
    assert not users  # server/score.py, outside the package, is the one that does


def test_the_layers_are_what_the_package_holds():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS)

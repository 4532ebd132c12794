"""Which version of a model folder is served (versions.py), and the folder each generation's azmlinfsrv is given
(process/generation.py); when serve.py looks for a new one: test_versions.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfscoring.errors import StartupError
from tfscoring.process.generation import with_model_dir
from tfscoring.versions import ServedFolder, served_folder, versions


def folder_of(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_a_folder_of_integer_subfolders_serves_the_highest(tmp_path):
    root = folder_of(tmp_path / "mnist", "1", "2", "10", "latest", ".3.partial")
    (root / "11").write_text("a file, not a version")
    assert versions(root) == [1, 2, 10]
    assert served_folder(root, None) == ServedFolder(root / "10", "mnist", "10")


def test_model_version_pins_one_and_an_absent_one_is_a_startup_error(tmp_path):
    root = folder_of(tmp_path / "mnist", "1", "2")
    assert served_folder(root, "1") == ServedFolder(root / "1", "mnist", "1")
    with pytest.raises(StartupError, match=r"MODEL_VERSION=7 is not a version under .*mnist \(versions: 1, 2\)"):
        served_folder(root, "7")


def test_a_version_folder_with_leading_zeros_is_loaded_as_it_is_named(tmp_path):
    root = folder_of(tmp_path / "mnist", "007")
    assert served_folder(root, None) == ServedFolder(root / "007", "mnist", "7")


def test_a_folder_without_versions_is_served_itself_named_by_the_registered_layout(tmp_path):
    folder = folder_of(tmp_path / "mnist" / "3", "model", "variables")
    assert served_folder(folder, None) == ServedFolder(folder, "mnist", "3")
    assert served_folder(folder, "v7", "digits") == ServedFolder(folder, "digits", "v7")  # labels only


def test_a_version_folder_whose_model_has_integer_folders_is_served_itself_when_pinned(tmp_path):
    # An Estimator's export inside version 2: serve.py starts version 2's workers on <root>/2 with MODEL_VERSION=2.
    version = folder_of(tmp_path / "mnist", "2/1700000000") / "2"
    assert served_folder(version, "2") == ServedFolder(version, "mnist", "2")
    assert served_folder(version, None) == ServedFolder(version / "1700000000", "2", "1700000000")  # unpinned


def test_a_version_folder_linked_in_counts(tmp_path):
    target = folder_of(tmp_path, "elsewhere") / "elsewhere"
    root = folder_of(tmp_path / "mnist", "1")
    (root / "2").symlink_to(target, target_is_directory=True)
    (root / "3").symlink_to(tmp_path / "gone", target_is_directory=True)  # a dangling link is no version
    assert served_folder(root, None).path == root / "2"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["azmlinfsrv", "--model_dir", "/m", "--port", "1"], ["azmlinfsrv", "--model_dir", "/m/2", "--port", "1"]),
        (["azmlinfsrv", "--model_dir=/m", "--port", "1"], ["azmlinfsrv", "--model_dir=/m/2", "--port", "1"]),
        (["azmlinfsrv", "--port", "1"], ["azmlinfsrv", "--port", "1"]),  # AZUREML_MODEL_DIR, set beside it
    ],
)
def test_each_generation_is_given_its_versions_folder(argv, expected):
    assert with_model_dir(argv, Path("/m/2")) == expected

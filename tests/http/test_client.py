"""The fixed how-to client scores t10k images against a running server."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import REPO


def _client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "client.score_client", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_one_random_image_prints_label_and_prediction(server, data_dir):
    result = _client("--url", server.score_url, "--data-dir", str(data_dir), "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert f"POST to url {server.score_url}" in result.stdout
    assert re.search(r"^label: \d$", result.stdout, re.M)
    assert re.search(r"^prediction: \[\d\]$", result.stdout, re.M)


def test_many_images_print_accuracy(server, data_dir):
    result = _client("--url", server.score_url, "--data-dir", str(data_dir), "--count", "2000", "--key", "k")
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"2000 images, accuracy (\d\.\d+)", result.stdout).group(1))
    assert accuracy >= 0.85


def test_an_error_answer_is_reported_not_hidden(server, data_dir):
    result = _client("--url", server.url + "/nowhere", "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert "answered 404" in result.stderr

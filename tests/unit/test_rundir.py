"""process/rundir.py: a run folder locked for its server's life; dead servers' folders removed at the next start,
never a live one's, never one without a lock file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tfscoring.process import rundir

SERVER_DIR = Path(__file__).resolve().parents[2] / "server"


def holder(parent: Path) -> tuple[subprocess.Popen, Path]:
    """Another process that makes a run folder in `parent` and keeps it (a server); (the process, its folder)."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(SERVER_DIR)!r})
        from tfscoring.process import rundir
        print(rundir.create({str(parent)!r}), flush=True)
        time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())


def test_a_run_folder_is_made_with_its_lock_file(tmp_path):
    path = rundir.create(tmp_path)
    assert path.parent == tmp_path and path.name.startswith(rundir.PREFIX)
    assert (path / rundir.LOCK).is_file()
    assert not (path / (rundir.LOCK + ".new")).exists()


def test_a_killed_servers_folder_is_removed_and_a_live_ones_kept(tmp_path):
    killed, killed_folder = holder(tmp_path)
    live, live_folder = holder(tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        (killed_folder / "nginx.conf").write_text("left behind")
        assert killed_folder.exists()
        own = rundir.create(tmp_path)
        assert not killed_folder.exists()
        assert live_folder.exists() and (live_folder / rundir.LOCK).exists()
        assert own.exists()
        assert rundir.remove_stale(tmp_path) == []  # this process's own folder is in use too
    finally:
        live.kill()
        live.wait(30)
        killed.stdout.close()
        live.stdout.close()


def test_folders_without_a_lock_file_or_of_another_name_are_left_alone(tmp_path):
    (tmp_path / "tfscoring-older").mkdir()  # made by an older server, or one being made: no lock file yet
    (tmp_path / "tfscoring-metrics-1-2").mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    (other / rundir.LOCK).touch()
    (tmp_path / "tfscoring-file").write_text("not a folder")
    assert rundir.remove_stale(tmp_path) == []
    assert {p.name for p in tmp_path.iterdir()} == {
        "tfscoring-older",
        "tfscoring-metrics-1-2",
        "unrelated",
        "tfscoring-file",
    }


def test_a_folder_whose_lock_file_belongs_to_another_user_is_left_alone(tmp_path, monkeypatch):
    folder = tmp_path / "tfscoring-theirs"
    folder.mkdir()
    (folder / rundir.LOCK).touch()
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    assert rundir.remove_stale(tmp_path) == []
    assert folder.exists()

"""Which version serve.py swaps onto and when it looks (process/versionwatch.py), and the line it logs for a new
version's azmlinfsrv that exits (process/generation.py's OutputTail).  The swaps themselves, on real servers:
tests/http/test_versions.py."""

from __future__ import annotations

import asyncio

from tfscoring.process.generation import OutputTail
from tfscoring.process.versionwatch import VersionWatch


def folders(root, *names: str) -> None:
    for name in names:
        (root / name).mkdir()


def test_the_highest_version_is_due_unless_it_is_served(tmp_path):
    folders(tmp_path, "1", "2", "model", ".3.partial")  # neither a plain folder nor a staging one is a version
    watch = VersionWatch(tmp_path, "1", poll_s=60)
    assert watch.due() == "2"
    watch.serving = "2"
    assert watch.due() is None


def test_a_version_whose_swap_failed_waits_for_a_newer_one(tmp_path):
    folders(tmp_path, "1", "2")
    watch = VersionWatch(tmp_path, "1", poll_s=60)
    watch.failed("2")
    assert watch.due() is None  # not retried on every poll
    folders(tmp_path, "10")  # numerically newer, whatever the names sort as
    assert watch.due() == "10"


def test_sighup_looks_at_once_and_tries_a_failed_version_again(tmp_path):
    folders(tmp_path, "1", "2")
    watch = VersionWatch(tmp_path, "1", poll_s=0)  # polling off: only SIGHUP looks

    async def look() -> str:
        watch.ask()
        return await asyncio.wait_for(watch.next_look(), 5)

    watch.failed("2")
    assert asyncio.run(look()) == "SIGHUP"
    assert watch.due() == "2"


def test_a_poll_looks_after_model_poll_s(tmp_path):
    watch = VersionWatch(tmp_path, "1", poll_s=0.01)
    assert asyncio.run(asyncio.wait_for(watch.next_look(), 5)) == "poll"


def test_the_served_folder_removed_rolls_back_to_the_highest_left(tmp_path):
    folders(tmp_path, "1", "2")
    watch = VersionWatch(tmp_path, "2", poll_s=60)
    (tmp_path / "2").rmdir()
    assert watch.due() == "1"


def test_no_version_left_swaps_nothing(tmp_path):
    assert VersionWatch(tmp_path / "gone", "1", poll_s=60).due() is None


def test_the_line_that_says_why_is_score_pys_own_else_the_last_error():
    tail = OutputTail()
    tail.add(b"2026 E [7] azmlinfsrv.tfscoring - start-up failed: model/x.meta is not a meta graph\n[ERROR] Worker ")
    tail.add(b"(pid:7) exited with code 3\nReason: Worker failed to boot.\n")
    assert tail.why() == "start-up failed: model/x.meta is not a meta graph"
    other = OutputTail()
    other.add(b"starting\nSegmentation fault ERROR in worker\nbye\n")
    assert other.why() == "Segmentation fault ERROR in worker"
    assert OutputTail().why() == ""


def test_the_tail_keeps_bounded_lines():
    tail = OutputTail()
    tail.add(b"x" * 100_000)  # a line without its end yet: kept cut short
    tail.add(b"\n" + b"line\n" * 1000)
    assert len(tail.lines) <= 64 and all(len(line) <= 1000 for line in tail.lines)


def test_a_failed_version_is_tried_again_once_its_folder_changes(tmp_path):
    # A poll that found a copy still under way failed it; the copy completing changes the folder.
    folders(tmp_path, "1", "2")
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"half")
    watch = VersionWatch(tmp_path, "1", poll_s=60)
    watch.failed("2")
    assert watch.due() is None
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"half and the rest")
    (tmp_path / "2" / "variables").mkdir()
    assert watch.due() == "2"


def test_a_version_that_changed_while_it_loaded_is_tried_again(tmp_path):
    # A look found a copy still under way; the copy completed while its load was failing.
    folders(tmp_path, "1", "2")
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"half")
    watch = VersionWatch(tmp_path, "1", poll_s=60)
    before = watch.fingerprint("2")  # when its load began
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"half and the rest")
    watch.failed("2", before)
    assert watch.due() == "2"

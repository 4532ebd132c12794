"""Which version to swap the workers onto, and when to look: serve.py's watch of a versioned model folder.

The highest `<version>/` subfolder is the one to serve (versions.py).  It is looked for every MODEL_POLL_S and at
once on SIGHUP to serve.py; looks that come while a swap runs are coalesced into one after it.  A version whose
swap failed (its workers did not load or warm) is not tried again until its folder changes (a copy that was not
complete when a look found it), a newer one appears or SIGHUP asks for it.  The highest going down (the served
version's folder removed) swaps back to the new highest: a rollback.  A pinned MODEL_VERSION, or a folder that
holds no versions at start, is not watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from tfscoring import versions
from tfscoring.errors import StartupError

MAX_ENTRIES = 10_000  # files of a version folder looked at to see it change (a SavedModel has a handful)


class VersionWatch:
    def __init__(self, root: Path, serving: str, poll_s: float):
        self.root = root
        self.serving = serving  # the version the front door sends requests to
        self._poll_s = poll_s
        self._failed: dict[str, tuple] = {}  # version -> its folder's fingerprint when it failed
        self._asked = asyncio.Event()  # SIGHUP

    def due(self) -> str | None:
        """The version to swap onto now: the highest under the root where it is not the one served and has not
        failed; None otherwise (no version there at all, for one)."""
        found = versions.versions(self.root)
        if not found:
            return None
        highest = str(found[-1])
        if highest == self.serving:
            return None
        if highest in self._failed:
            if self._failed[highest] == self.fingerprint(highest):
                return None
            del self._failed[highest]  # changed since it failed: tried again
        return highest

    def failed(self, version: str, before: tuple | None = None) -> None:
        """`version` did not load: not tried again until its folder differs from `before` (what it held when its
        load began; default: now)."""
        self._failed[version] = self.fingerprint(version) if before is None else before

    @property
    def failed_versions(self) -> set[str]:
        return set(self._failed)

    def fingerprint(self, version: str) -> tuple:
        """What the version's folder holds (empty where it is gone)."""
        try:
            return fingerprint(versions.served_folder(self.root, version).path)
        except (StartupError, StopIteration, OSError):  # the version's folder went meanwhile
            return ()

    def ask(self) -> None:
        """SIGHUP: look at once, and try again a version that failed."""
        self._asked.set()

    async def next_look(self) -> str:
        """Wait for the next look: "SIGHUP" (failed versions forgotten) or "poll" (MODEL_POLL_S; never when 0)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._asked.wait(), self._poll_s or None)
        if self._asked.is_set():
            self._asked.clear()
            self._failed.clear()
            return "SIGHUP"
        return "poll"


def fingerprint(folder: Path, most: int = MAX_ENTRIES) -> tuple:
    """What a version folder holds, as names, sizes and modification times of its files (the first `most`, links
    followed): a copy still under way changes it."""
    entries = []
    for parent, subfolders, names in os.walk(folder, followlinks=True):
        subfolders.sort()
        for name in sorted(names):
            path = os.path.join(parent, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            entries.append((os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns))
            if len(entries) >= most:
                return tuple(entries)
    return tuple(entries)

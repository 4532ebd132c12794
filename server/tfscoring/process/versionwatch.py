"""Which version to swap the workers onto, and when to look: serve.py's watch of a versioned model folder.

The highest `<version>/` subfolder is the one to serve (versions.py).  It is looked for every MODEL_POLL_S and at
once on SIGHUP to serve.py; looks that come while a swap runs are coalesced into one after it.  A version whose
swap failed (its workers did not load or warm) is not tried again until a newer one appears or SIGHUP asks for
it.  The highest going down (the served version's folder removed) swaps back to the new highest: a rollback.  A
pinned MODEL_VERSION, or a folder that holds no versions at start, is not watched.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tfscoring import versions


class VersionWatch:
    def __init__(self, root: Path, serving: str, poll_s: float):
        self.root = root
        self.serving = serving  # the version the front door sends requests to
        self._poll_s = poll_s
        self._failed: set[str] = set()
        self._asked = asyncio.Event()  # SIGHUP

    def due(self) -> str | None:
        """The version to swap onto now: the highest under the root where it is not the one served and has not
        failed; None otherwise (no version there at all, for one)."""
        found = versions.versions(self.root)
        if not found:
            return None
        highest = str(found[-1])
        return None if highest == self.serving or highest in self._failed else highest

    def failed(self, version: str) -> None:
        self._failed.add(version)

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

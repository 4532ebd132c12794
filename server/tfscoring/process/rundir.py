"""The server's private run folder (nginx's config and temp folders, the sockets, the workers' states), and the
removal of those that servers killed outright (SIGKILL, a lost node) left behind.

Each folder, `tfscoring-XXXXXXXX` in the temp dir, holds a lock file on which its server keeps an flock for its
whole life (the descriptor stays open until the process ends; the kernel drops the lock however it ends).  At
start, every other such folder of this user whose lock can be taken is removed: its server is dead.  An flock
is held by an open file, not a pid, so pid reuse cannot make a live server's folder look dead, and a folder in
use is never removed.  The lock file appears already locked (it is locked under a temporary name, then
renamed), so a folder being made is never taken for a dead one; a folder without a lock file is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path

PREFIX = "tfscoring-"
LOCK = "tfscoring.lock"
_held: list[int] = []  # the lock descriptors of this process's folders, open until it exits


def create(parent: str | Path | None = None) -> Path:
    """A new run folder in `parent` (the temp dir), locked for this process's life; dead servers' folders
    there are removed first."""
    parent = Path(parent or tempfile.gettempdir())
    remove_stale(parent)
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    staged = path / (LOCK + ".new")
    fd = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
    os.rename(staged, path / LOCK)
    _held.append(fd)
    return path


def remove_stale(parent: str | Path) -> list[Path]:
    """Remove the run folders in `parent` of this user whose lock can be taken (their server is gone)."""
    removed = []
    for path in Path(parent).glob(PREFIX + "*"):
        with contextlib.suppress(OSError):
            if _dead(path):
                removed.append(path)
    return removed


def _dead(path: Path) -> bool:
    """Remove `path` if it is a dead server's run folder, holding its lock meanwhile; whether it was."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return False
    try:
        fd = os.open(path / LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False  # no lock file: not a run folder of this kind, or one being made
    try:
        if os.fstat(fd).st_uid != os.geteuid():  # the lock file stays its server's user's (frontdoor.give_to_workers)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False  # its server is alive
            raise
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        os.close(fd)

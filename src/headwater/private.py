"""Files only their owner can read: the system database (password hashes, sessions, encrypted
secrets), the warehouse and its snapshots (the organisation's data), dbt's logs, the key file.

Created 0600 and folders 0700, whatever the umask, unless the umask is stricter still: modes are
always the process's umask with group and others' bits added, never loosened. See docs/operations.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700
_PRIVATE = 0o077  # group's and others' bits

_lock = threading.Lock()
_depth = 0
_saved = 0


def make_folder(path: Path) -> Path:
    """``mkdir -p`` with the folder itself (not its parents, which may be the user's own) 0700."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    return path


def create_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (SQLite then keeps that mode, and
    gives it to the ``-wal`` and ``-shm`` files it makes beside it)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))


@contextmanager
def private_files() -> Iterator[None]:
    """Within: whatever this process creates (by DuckDB, dbt, or our own code) is 0600, folders 0700.

    The umask belongs to the process, so nested or concurrent uses in several threads share one
    change: the first in sets it, the last out restores it."""
    global _depth, _saved  # noqa: PLW0603 - the umask is the process's: one count and one saved mask per process is the design
    with _lock:
        if _depth == 0:
            _saved = os.umask(_PRIVATE)
            os.umask(_saved | _PRIVATE)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                os.umask(_saved)

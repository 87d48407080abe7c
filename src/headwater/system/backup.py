"""`headwater backup`: a consistent copy of a SQLite system database, taken while it is in use.

SQLite's online backup API copies the pages as of one moment, whatever other processes write
meanwhile (copying the file with ``cp`` can catch a half-written transaction, or miss what is still
in the ``-wal`` file). The copy is written to a ``.partial`` file created 0600 (it holds password
hashes, sessions and encrypted secrets), checked with SQLite's integrity check, then renamed.

What it does not copy, on purpose: the key file (``secret.key``), which decrypts the secrets in the
database, so the two are kept apart: a stolen backup alone reveals no secret. The warehouse: its
build database is rebuilt by a run (`headwater sync --full-refresh`), and published snapshots are
immutable files a plain ``cp`` copies safely at any time. See docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

from headwater.errors import HeadwaterError
from headwater.system.db import SystemDB, damaged, sqlite_path


def default_target(database: Path, now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return database.parent / "backups" / f"{database.stem}-{stamp}.db"


def backup(db: SystemDB, target: Path | None = None) -> Path:
    """Copy the system database to ``target`` (default: ``backups/system-<UTC time>.db`` beside it)."""
    source = sqlite_path(db.engine)
    if source is None:
        raise HeadwaterError(
            "`headwater backup` copies a SQLite system database; this one is a server database",
            fix="Back it up with the server's own tools (e.g. pg_dump for PostgreSQL).",
        )
    target = target or default_target(source)
    if target.exists():
        raise HeadwaterError(f"{target} exists already", fix="Name a new file with -o, or move the old one aside.")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        _copy(source, partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _copy(source: Path, partial: Path) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(partial)
    try:
        src.execute("PRAGMA busy_timeout=10000")
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        problems = [row[0] for row in dst.execute("PRAGMA quick_check(5)")]
    finally:
        dst.close()
        src.close()
    if problems != ["ok"]:
        raise damaged(source, "; ".join(problems))
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Which worker runs a pipeline: a claim in the system database, so that several workers sharing one
PostgreSQL system database (on different hosts, with their own copies of the project folder) never
run one pipeline at the same time, and a worker that dies gives its claim up without anyone's help.

On PostgreSQL a claim is a session-level advisory lock keyed by (project, pipeline), held on a
connection of its own for the run's whole life. The server releases it when that connection ends:
at `release`, when the process dies (its socket closes), or, for a host that vanished, when the
server's TCP keepalives give up on it (set on the connection: about a minute). Nothing is written,
so there is no lease to renew and no stale row to clean up; the price is one connection per run in
progress. (A claims table with ``SELECT ... FOR UPDATE SKIP LOCKED`` would need a lease and a
heartbeat to tell a dead worker from a slow one: the advisory lock gets that from the server.)

On SQLite the system database is a file on one machine, and the project's writer lock (a file
lock, `Warehouse.writer_lock`) already keeps one run at a time: a claim is always granted there,
and changes nothing.

Claims are re-entrant within a thread: the scheduler claims a pipeline before it decides to run a
scheduled fire, and the supervised run it then starts (`supervise.execute`, same thread) claims
it again, which must not wait for itself. Another thread of the same process is another holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from headwater.system.db import SystemDB

log = logging.getLogger("headwater.claims")

POLL_SECONDS = 0.2  # between tries while waiting for a claim another worker holds

# Server settings of the claim's own connection: a dead host's claim is given up after
# idle + interval x count seconds; no idle timeout may end the (idle) connection and with it the claim.
_SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 30",
    "SET tcp_keepalives_interval = 10",
    "SET tcp_keepalives_count = 3",
    "SET idle_session_timeout = 0",  # PostgreSQL 14+; older servers have no such timeout
    "SET idle_in_transaction_session_timeout = 0",
)

_local = threading.local()  # .held: {(database, project, pipeline): depth} claimed by this thread


def shared(db: SystemDB) -> bool:
    """Whether claims mean anything on this system database (several machines can share it)."""
    return db.engine.dialect.name == "postgresql"


def lock_key(project: str, pipeline: str) -> int:
    """The advisory lock's 64-bit key: a hash of the names (signed, as PostgreSQL's bigint)."""
    digest = hashlib.sha256(f"headwater run\0{project}\0{pipeline}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def claimed(
    db: SystemDB,
    project: str,
    pipeline: str,
    *,
    wait: float = 0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[bool]:
    """Hold the claim on ``project``'s ``pipeline`` for the ``with`` block; yields False when another
    holder kept it for ``wait`` seconds (``on_wait`` is told once, with who holds it, when waiting starts)."""
    if not shared(db):
        yield True
        return
    ident = (db.engine.url.render_as_string(hide_password=True), project, pipeline)
    held: dict[tuple[str, str, str], int] = _local.__dict__.setdefault("held", {})
    if ident in held:  # this thread holds it already
        held[ident] += 1
        try:
            yield True
        finally:
            held[ident] -= 1
        return
    connection = _take(db, project, pipeline, wait, on_wait)
    if connection is None:
        yield False
        return
    held[ident] = 1
    try:
        yield True
    finally:
        del held[ident]
        _release(connection)


def holder(db: SystemDB, project: str, pipeline: str) -> str:
    """Who holds the claim, as the holder named itself (host and process), for log lines."""
    if not shared(db):
        return "this machine"
    key = lock_key(project, pipeline)
    query = text(
        "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :high AND l.objid = :low AND l.objsubid = 1"
    )
    try:
        with db.engine.connect() as connection:
            row = connection.execute(query, {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).first()
    except DBAPIError:
        return "another worker"
    if row is None:
        return "nobody (just released)"
    name, address = row
    return f"{name or 'another worker'}" + (f" at {address}" if address else "")


def held(db: SystemDB, project: str, pipelines: Iterable[str]) -> set[str]:
    """Of ``pipelines``, those whose claim some connection holds now (read from `pg_locks`; nothing
    is taken, so no worker's claim is disturbed). Always empty on SQLite."""
    wanted = {lock_key(project, p): p for p in pipelines}
    if not wanted or not shared(db):
        return set()
    query = text("SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1")
    with db.engine.connect() as connection:
        keys = {_key_of(high, low) for high, low in connection.execute(query)}
    return {pipeline for key, pipeline in wanted.items() if key in keys}


def _key_of(high: int, low: int) -> int:
    """The bigint key from `pg_locks`' two 32-bit halves."""
    return int.from_bytes(((high << 32) | low).to_bytes(8, "big"), "big", signed=True)


def _take(db: SystemDB, project: str, pipeline: str, wait: float, on_wait: Callable[[str], None] | None) -> Connection | None:
    connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        _configure(connection, project, pipeline)
        key = lock_key(project, pipeline)
        deadline = time.monotonic() + wait
        while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
            if time.monotonic() >= deadline:
                _release(connection)
                return None
            if on_wait is not None:
                on_wait(holder(db, project, pipeline))
                on_wait = None  # say it once
            time.sleep(POLL_SECONDS)
        log.debug("claimed %s.%s", project, pipeline)
        return connection
    except BaseException:
        _release(connection)
        raise


def _configure(connection: Connection, project: str, pipeline: str) -> None:
    # What pg_stat_activity shows, and what `holder` reports to the other workers.
    name = f"headwater {socket.gethostname()} pid {os.getpid()}: {project}.{pipeline}"[:63]
    connection.execute(text("SELECT set_config('application_name', :name, false)"), {"name": name})
    for statement in _SESSION_SETTINGS:
        try:
            connection.execute(text(statement))
        except DBAPIError as exc:  # an older server or a restricted role: the claim still works
            log.debug("claim connection: %s failed: %s", statement, exc.orig)


def _release(connection: Connection) -> None:
    """End the claim's connection (not back to the pool): the server drops the lock with it."""
    with contextlib.suppress(Exception):
        connection.invalidate()
    with contextlib.suppress(Exception):
        connection.close()

"""The warm CLI server: ``python -m headwater.cli.daemon FOLDER KEY IDLE_SECONDS`` (started by
`headwater daemon start`; the client is `headwater.cli.launch`).

It imports what commands need once (`PRELOAD`: SQLAlchemy, DuckDB, pydantic, Typer/Rich, Headwater's
config, sync and run modules), then waits on a Unix socket (mode 0600, in a 0700 folder) and forks
one process per command. The fork is made into the process the client would have started: it takes
the client's standard input/output/error (passed as file descriptors), arguments, environment,
folder and umask, then runs the same `headwater.cli.main.main` a cold process runs, and reports the
exit code. The server stays single-threaded (a fork copies no other thread's locks) and never reads
a request itself: each is read by its own fork, which first checks the peer's user id.

Headwater's CLI modules are *not* preloaded: they create their Rich consoles at import, which must
see the client's terminal (colours, width), not the server's /dev/null. They import in ~4 ms once
the libraries are loaded.

The server leaves when idle for IDLE_SECONDS with no command running, on SIGTERM (`headwater daemon
stop`; running commands finish), or when Headwater's code changes (an upgrade or an edit), since its
imported modules are then stale; clients of the new code look for a server with their own key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from headwater.cli.launch import (
    ACCEPTED,
    EXITED,
    SIGNALLED,
    code_key,
    recv_exact,
    recv_frame,
    send_frame,
    socket_path,
    unsafe_reason,
)

PRELOAD = (
    "sqlalchemy",
    "sqlalchemy.orm",
    "duckdb",
    "pydantic",
    "yaml",
    "typer",
    "rich.console",
    "rich.progress",
    "rich.table",
    "headwater.config",
    "headwater.system",
    "headwater.orchestrate.sync",
    "headwater.services.runs",
    "headwater.orchestrate.supervise",
    "headwater.publish.export",
    "headwater.sources.postgres",
    "headwater.sources.mysql",
    "headwater.sources.sqlite",
)
KEY_CHECK_SECONDS = 10


def pid_path(folder: Path, key: str) -> Path:
    return folder / f"cli-{key}.pid"


def log_path(folder: Path, key: str) -> Path:
    return folder / f"cli-{key}.log"


_LOG = [sys.stderr]  # the server's log: its own file descriptor, so a fork that takes the client's stderr still logs here


def _log(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        _LOG[0].write(f"{dt.datetime.now().isoformat(timespec='seconds')} {message}\n")
        _LOG[0].flush()


def preload() -> list[str]:
    """Import `PRELOAD`; returns what could not be imported (each command then imports it itself)."""
    failed = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a command that needs it imports it again and reports why
            failed.append(name)
    with contextlib.suppress(Exception):
        from headwater.system.models import configure_models

        configure_models()  # the system database's ORM classes: otherwise set up by each command's first query
    return failed


def serve(folder: Path, key: str, idle: float) -> int:
    _LOG[0] = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    reason = unsafe_reason(folder)
    if reason is not None:
        _log(f"not serving: {reason}")
        return 2
    pid_file = pid_path(folder, key)
    holder = open(pid_file, "a+")  # noqa: SIM115 - held (locked) for the server's life
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _log("another server of this code is running: leaving")
        return 0
    failed = preload()
    if failed:
        _log(f"could not preload {', '.join(failed)} (commands import them themselves)")
    path = socket_path(folder, key)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # `headwater daemon start` checked that no server answers on it
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(64)
    holder.truncate(0)
    holder.write(json.dumps({"pid": os.getpid(), "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "idle_seconds": idle}))
    holder.flush()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    gc.freeze()  # forks share the imported modules' pages instead of copying them on the collector's first pass
    _log(f"serving {path} (pid {os.getpid()}, idle timeout {idle:g} s)")
    children: set[int] = set()
    last_used = checked = time.monotonic()
    try:
        while not stopping:
            ready, _, _ = select.select([listener], [], [], 1.0)  # SIGTERM: the loop sees it within 1 s
            children -= _reaped(children)
            now = time.monotonic()
            if ready:
                conn, _ = listener.accept()
                last_used = now
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    holder.close()  # the server's lock stays the server's (closing a copy does not release it)
                    _command(conn)  # never returns
                conn.close()
                children.add(pid)
            elif not children and now - last_used > idle:
                _log(f"idle for {idle:g} s: leaving")
                break
            if now - checked > KEY_CHECK_SECONDS:
                checked = now
                if code_key() != key:
                    _log("Headwater's code changed since this server started: leaving (clients of the new code start cold until `headwater daemon start`)")
                    break
    finally:
        listener.close()
        for owned in (path, pid_file):
            with contextlib.suppress(FileNotFoundError):
                owned.unlink()
        holder.close()
        _log("stopped" + (f" ({len(children)} command(s) still running finish on their own)" if children else ""))
    return 0


def _reaped(children: set[int]) -> set[int]:
    done = set()
    for pid in children:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                done.add(pid)
        except ChildProcessError:
            done.add(pid)
    return done


def _command(conn: socket.socket) -> None:
    """In the fork: become the client's process, run its command, report the exit code."""
    code = 70
    try:
        os.setpgid(0, 0)  # its own process group: signals to the server's group do not reach it
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid != os.getuid():
            _log(f"refused a command from user id {uid} (pid {pid})")
            os._exit(1)
        received = _request(conn)
        if received is None:  # a probe (`headwater daemon start` checking that a server answers)
            os._exit(0)
        request, fds = received
        _adopt(request, fds)
        _log(f"pid {os.getpid()}: {request['argv'][1] if len(request['argv']) > 1 else ''} for pid {pid}")
        send_frame(conn, ACCEPTED)
        finished = threading.Event()
        threading.Thread(target=_relay_signals, args=(conn, finished), daemon=True).start()
        code = _run()
        finished.set()
        send_frame(conn, EXITED, str(code).encode())
    except BaseException as exc:  # noqa: BLE001 - the fork must never return into the server's loop
        with contextlib.suppress(Exception):
            _log(f"pid {os.getpid()}: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
        os._exit(code)


def _request(conn: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The client's request and its three file descriptors; None when it closed without sending one."""
    conn.settimeout(10)
    head, fds, _flags, _addr = socket.recv_fds(conn, 5, 3)
    if not head and not fds:
        return None
    if len(head) < 5:
        head += recv_exact(conn, 5 - len(head)) or b""
    if len(head) < 5 or head[:1] != b"R" or len(fds) != 3:
        raise ValueError("malformed request")
    (length,) = struct.unpack("!I", head[1:])
    payload = recv_exact(conn, length)
    if payload is None:
        raise ValueError("truncated request")
    conn.settimeout(None)
    return json.loads(payload), fds


def _adopt(request: dict[str, Any], fds: list[int]) -> None:
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    encoding, _, errors = (os.environ.get("PYTHONIOENCODING") or "utf-8").partition(":")
    sys.stdin = open(0, encoding=encoding or "utf-8", errors=errors or "strict", closefd=False)  # noqa: SIM115 - the process's own stdin
    sys.stdout = open(1, "w", encoding=encoding or "utf-8", errors=errors or "strict", closefd=False, buffering=1 if os.isatty(1) else -1)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding=encoding or "utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115


def _relay_signals(conn: socket.socket, finished: threading.Event) -> None:
    """Signals the client forwards are raised here; a client that vanishes (killed) takes the command
    with it, as it would a process of its own."""
    while True:
        try:
            frame = recv_frame(conn)
        except OSError:
            frame = None
        if finished.is_set():
            return
        if frame is None:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        kind, payload = frame
        if kind == SIGNALLED:
            with contextlib.suppress(ValueError, OSError):
                os.kill(os.getpid(), int(payload))


def _run() -> int:
    from headwater.cli.main import main

    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
    return code


if __name__ == "__main__":
    folder_arg, key_arg, idle_arg = sys.argv[1:4]
    sys.exit(serve(Path(folder_arg), key_arg, float(idle_arg)))

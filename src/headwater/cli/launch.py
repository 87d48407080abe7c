"""The `headwater` command's entry point: hands the command to a warm CLI server when one is running
for this installation (`headwater daemon start`), else runs it in this process.

Python's start-up and imports (SQLAlchemy, pydantic, DuckDB, Typer/Rich: ~0.4 s) are most of a short
command such as a `headwater sync` with little to do. The server (`headwater.cli.daemon`) has them
imported once and forks a process per command; this client, which imports only the standard library,
passes that process what a process of its own would have had — the arguments, the environment, the
current folder, the umask and its standard input/output/error themselves (as file descriptors over a
Unix socket, SCM_RIGHTS) — forwards the signals it gets (Ctrl+C, SIGTERM) and exits with the
command's exit code. Nothing is sent anywhere but to a socket in a folder only this user can open,
and the server runs a command only for a peer of its own user id (SO_PEERCRED).

Only commands that are short-lived and need no terminal of their own are handed over (`ROUTED`);
`HEADWATER_NO_DAEMON=1` runs every command in its own process.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import stat
import struct
import sys
from pathlib import Path

# Commands worth a warm start; the rest (servers, prompts for passwords, scaffolding) run here.
ROUTED = frozenset({"sync", "run", "runs", "logs", "export"})
RUNTIME_DIR_ENV = "HEADWATER_RUNTIME_DIR"
NO_DAEMON_ENV = "HEADWATER_NO_DAEMON"
ACCEPTED, EXITED = b"A", b"X"  # server → client: the command started / its exit code follows
SIGNALLED = b"S"  # client → server: a signal number follows
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def runtime_dir() -> Path:
    """Where servers' sockets live: $HEADWATER_RUNTIME_DIR, else $XDG_RUNTIME_DIR/headwater (a
    per-user tmpfs on systemd machines), else /tmp/headwater-UID."""
    if explicit := os.environ.get(RUNTIME_DIR_ENV):
        return Path(explicit)
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "headwater"
    return Path(f"/tmp/headwater-{os.getuid()}")  # noqa: S108 - safe only if ours with mode 0700: `unsafe_reason` checks before any use


def unsafe_reason(folder: Path) -> str | None:
    """Why ``folder`` must not hold our sockets (None when it is ours and closed to others)."""
    try:
        st = os.lstat(folder)
    except OSError as exc:
        return f"cannot read {folder}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{folder} is not a folder"
    if st.st_uid != os.getuid():
        return f"{folder} belongs to user id {st.st_uid}, not to you ({os.getuid()})"
    if st.st_mode & 0o077:
        return f"{folder} can be opened by other users (mode {oct(st.st_mode & 0o777)}; it must be 0700)"
    return None


def code_key() -> str:
    """Names this installation's code: the environment, the package's folder and version, and the
    newest change to its files. A server answers only clients with its own key, so an upgrade or
    an edit is never run by a server that imported the old code (that one idles out)."""
    package = Path(__file__).resolve().parent.parent
    newest = 0
    stack = [str(package)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        stack.append(entry.path)
                elif entry.name.endswith(".py"):
                    newest = max(newest, entry.stat().st_mtime_ns)
    from headwater import __version__

    text = f"{sys.prefix}\0{package}\0{__version__}\0{newest}"  # the environment (venv), not the interpreter's name
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def socket_path(folder: Path, key: str) -> Path:
    return folder / f"cli-{key}.sock"


def send_frame(sock: socket.socket, kind: bytes, payload: bytes = b"", fds: list[int] | None = None) -> None:
    data = kind + struct.pack("!I", len(payload)) + payload
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    sent = sock.sendmsg([data], ancillary)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes, or None at end of stream."""
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> tuple[bytes, bytes] | None:
    head = recv_exact(sock, 5)
    if head is None:
        return None
    (length,) = struct.unpack("!I", head[1:])
    payload = recv_exact(sock, length) if length else b""
    return None if payload is None else (head[:1], payload)


def _connect(argv: list[str]) -> socket.socket | None:
    """A connection to this installation's server that has accepted the command, or None (no server,
    a stale one, or a folder that is not safe): the command then runs here."""
    folder = runtime_dir()
    if unsafe_reason(folder) is not None:
        return None
    path = socket_path(folder, code_key())
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(str(path))
        request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": _umask()}
        send_frame(sock, b"R", json.dumps(request).encode(), [0, 1, 2])
        answer = recv_frame(sock)
        if answer is None or answer[0] != ACCEPTED:
            raise OSError("the server did not accept the command")
        sock.settimeout(None)
        return sock
    except OSError:  # gone, refused, or closed before the command started: nothing ran yet
        sock.close()
        return None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def run_remote(sock: socket.socket) -> int:
    """Forward signals until the server reports the command's exit code."""

    def forward(signum: int, _frame: object) -> None:
        try:
            send_frame(sock, SIGNALLED, str(signum).encode())
        except OSError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    while True:
        frame = recv_frame(sock)  # a forwarded signal interrupts recv, which resumes (PEP 475)
        if frame is None:
            sys.stderr.write("headwater: the warm CLI server's process for this command ended without an exit code (see `headwater daemon status`).\n")
            return 70
        kind, payload = frame
        if kind == EXITED:
            return int(payload)


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in ROUTED and not os.environ.get(NO_DAEMON_ENV):
        sock = _connect(sys.argv)
        if sock is not None:
            with sock:
                code = run_remote(sock)
            sys.exit(code)
    from headwater.cli.main import main as run_here

    run_here()

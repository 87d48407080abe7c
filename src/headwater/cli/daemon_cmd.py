"""`headwater daemon start|stop|status`: the warm CLI server (see `headwater.cli.daemon`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from headwater.cli.console import out
from headwater.cli.launch import (
    NO_DAEMON_ENV,
    ROUTED,
    RUNTIME_DIR_ENV,
    code_key,
    runtime_dir,
    socket_path,
    unsafe_reason,
)
from headwater.errors import HeadwaterError

daemon_app = typer.Typer(
    help=(
        "A warm server for short commands: `headwater " + "|".join(sorted(ROUTED)) + "` skip Python's start-up and imports (~0.4 s each), "
        "e.g. for syncs started by cron every few minutes."
    ),
    no_args_is_help=True,
)

START_SECONDS = 60  # the server imports SQLAlchemy, DuckDB and Headwater before it listens


def _folder() -> Path:
    folder = runtime_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise HeadwaterError(f"Cannot create {folder} for the warm CLI server: {exc.strerror}", fix=f"Set {RUNTIME_DIR_ENV} to a folder of yours.") from exc
    reason = unsafe_reason(folder)
    if reason is not None:
        raise HeadwaterError(
            f"The warm CLI server cannot use {folder}",
            why=f"{reason}; anyone who can open it could run commands as you",
            fix=f"Remove it (or `chmod 700` it if it is yours), or set {RUNTIME_DIR_ENV} to a folder only you can open.",
        )
    return folder


def _answers(path: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2)
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _servers(folder: Path) -> list[dict[str, Any]]:
    """Every server of this user in ``folder``, current code or not, that is still running."""
    found = []
    current = code_key()
    for pid_file in sorted(folder.glob("cli-*.pid")):
        key = pid_file.stem.removeprefix("cli-")
        try:
            info = json.loads(pid_file.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError):
            continue
        if not _is_server(pid):
            pid_file.unlink(missing_ok=True)  # left by a server that was killed
            continue
        found.append({"pid": pid, "key": key, "current": key == current, "started": info.get("started"), "idle_seconds": info.get("idle_seconds"), "socket": str(socket_path(folder, key))})
    return found


def _is_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"headwater.cli.daemon" in cmdline


def _seconds(text: str) -> float:
    from headwater.config.base import parse_duration

    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise HeadwaterError(f"--idle {text}: {exc}", fix="Write a duration such as 30m, 3h or 1d.") from exc
    if seconds <= 0:
        raise HeadwaterError(f"--idle {text}: must be longer than 0", fix="Write a duration such as 30m, 3h or 1d.")
    return seconds


@daemon_app.command("start")
def start(
    idle: Annotated[str, typer.Option("--idle", help="Leave after this long without a command (e.g. 30m, 3h, 1d).")] = "3h",
) -> None:
    """Start the warm server for this installation (a no-op when it is running).

    Commands use it by themselves; HEADWATER_NO_DAEMON=1 runs a command without it."""
    idle_seconds = _seconds(idle)
    folder = _folder()
    key = code_key()
    path = socket_path(folder, key)
    if _answers(path):
        out.print(f"The warm CLI server is already running ({path}).", highlight=False)
        return
    from headwater.cli.daemon import log_path

    log = log_path(folder, key)
    with open(log, "ab") as log_file:
        os.chmod(log, 0o600)
        proc = subprocess.Popen(
            [sys.executable, "-m", "headwater.cli.daemon", str(folder), key, str(idle_seconds)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True, close_fds=True,
            env={k: v for k, v in os.environ.items() if k != NO_DAEMON_ENV},
        )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise HeadwaterError(f"The warm CLI server stopped while starting (exit code {proc.returncode})", why=tail.strip() or "no output", fix=f"See {log}.")
        if _answers(path):
            out.print(f"Warm CLI server started (pid {proc.pid}); it leaves after {idle} without a command. Log: {log}", highlight=False)
            return
        time.sleep(0.05)
    proc.terminate()
    raise HeadwaterError(f"The warm CLI server did not start within {START_SECONDS} s", fix=f"See {log}.")


@daemon_app.command("stop")
def stop() -> None:
    """Stop every warm server of yours (commands already running finish)."""
    folder = runtime_dir()
    if not folder.is_dir() or unsafe_reason(folder) is not None:
        out.print("No warm CLI server is running.")
        return
    servers = _servers(folder)
    for server in servers:
        os.kill(server["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_is_server(s["pid"]) for s in servers):
        time.sleep(0.05)
    left = [s["pid"] for s in servers if _is_server(s["pid"])]
    if left:
        raise HeadwaterError(f"Warm CLI server(s) {', '.join(map(str, left))} did not stop within 10 s", fix=f"kill -9 {' '.join(map(str, left))}")
    out.print(f"Stopped {len(servers)} warm CLI server(s)." if servers else "No warm CLI server is running.")


@daemon_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")] = False) -> None:
    """Which warm servers are running, and whether they run the installed code.

    Exit code 0 when one serves the installed code, 1 when none does."""
    folder = runtime_dir()
    servers = _servers(folder) if folder.is_dir() and unsafe_reason(folder) is None else []
    if as_json:
        out.print_json(data={"folder": str(folder), "servers": servers})
    elif not servers:
        out.print(f"No warm CLI server is running (start one with `headwater daemon start`; sockets live in {folder}).", highlight=False)
    else:
        table = Table("pid", "started", "idle timeout", "code", title=f"warm CLI servers in {folder}", title_justify="left")
        for s in servers:
            table.add_row(str(s["pid"]), s["started"] or "?", f"{s['idle_seconds']:g} s", "installed" if s["current"] else "older (leaves by itself)")
        out.print(table)
    if not any(s["current"] for s in servers):
        raise typer.Exit(1)

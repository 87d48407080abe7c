"""A throwaway PostgreSQL server for the test suite.

The server runs from the Debian ``postgresql`` package's binaries (``/usr/lib/postgresql/*/bin``) in
a temporary folder, listens on 127.0.0.1 on a free port with ``trust`` authentication, and keeps its
unix socket inside that folder. PostgreSQL refuses to run as root, so as root every server command
runs through ``runuser -u postgres --`` on a folder owned by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loopback import free_port  # one free-port probe for every throwaway server

SERVICE_USER = "postgres"


class Unavailable(Exception):
    """PostgreSQL cannot be started here; the message says why and how to fix it."""


def find_bin_dir() -> Path:
    """The newest installed ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl."""

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([0-9.]+)/bin", path)
        return tuple(int(p) for p in match.group(1).split(".") if p) if match else (0,)

    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK)]
    if not found:
        raise Unavailable("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (install them with `apt-get install -y postgresql`)")
    return Path(max(found, key=version))


@dataclass
class Server:
    bin_dir: Path
    base: Path  # temp folder: data/, sock/, server.log
    port: int = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SERVICE_USER, "--", *args]
        return list(args)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # cwd: the service user may not be allowed into the caller's current folder.
        return subprocess.run(self._cmd(*args), cwd=self.base, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        data = self.base / "data"
        initdb = self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", check=False)
        if initdb.returncode != 0:
            raise Unavailable(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        last = ""
        for _attempt in range(5):  # another process may grab the free port between probe and start
            self.port = free_port()
            options = f"-p {self.port} -k {self.base / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            started = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.base / "server.log"), "-o", options, "-w", "-t", "60", "start", check=False)
            if started.returncode == 0:
                return
            log = self.base / "server.log"
            last = f"{started.stdout}\n{started.stderr}\n{log.read_text() if log.exists() else ''}"
        raise Unavailable(f"pg_ctl start failed:\n{last}")

    def stop(self) -> None:
        if (self.base / "data" / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def start_server() -> Server:
    """Start a server in a new temp folder; raises `Unavailable` if that is impossible here."""
    bin_dir = find_bin_dir()
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise Unavailable("running as root needs `runuser` (package util-linux) to start PostgreSQL as another user")
        try:
            user = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise Unavailable(f"running as root, and there is no '{SERVICE_USER}' user to run PostgreSQL as (the Debian package creates it)") from None
    # Not under pytest's tmp folder: that is private to the current user, and the server runs as another.
    base = Path(tempfile.mkdtemp(prefix="headwater-pg-"))
    (base / "sock").mkdir()
    if os.geteuid() == 0:
        for path in (base, base / "sock"):
            os.chown(path, user.pw_uid, user.pw_gid)
    server = Server(bin_dir, base)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def start_standby(primary: Server) -> Server:
    """A hot standby of ``primary`` (pg_basebackup -R, streaming replication): a real read replica."""
    base = Path(tempfile.mkdtemp(prefix="headwater-pg-standby-"))
    (base / "sock").mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVICE_USER)
        for path in (base, base / "sock"):
            os.chown(path, user.pw_uid, user.pw_gid)
    standby = Server(primary.bin_dir, base)
    backup = standby._run(str(primary.bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", str(base / "data"), "-R", "-X", "stream", "-c", "fast", check=False)
    if backup.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise Unavailable(f"pg_basebackup failed:\n{backup.stdout}\n{backup.stderr}")
    for _attempt in range(5):
        standby.port = free_port()
        options = f"-p {standby.port} -k {base / 'sock'} -c listen_addresses=127.0.0.1 -c hot_standby=on"
        started = standby._run(str(primary.bin_dir / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "server.log"), "-o", options, "-w", "-t", "60", "start", check=False)
        if started.returncode == 0:
            return standby
    log = base / "server.log"
    standby.stop()
    raise Unavailable(f"the standby did not start:\n{log.read_text() if log.exists() else ''}")

"""A throwaway MariaDB server for the test suite.

The server is Debian's ``mariadb-server`` (``mariadbd``), run from a fresh data folder in a temp
directory, listening on 127.0.0.1 on a free port, with its unix socket inside that folder. Its
``root`` has no password and is only reachable through that socket; tests connect over TCP as an
administrator with a password (`Server.admin_url`), so the extension's password path is exercised.
As root, ``mariadbd --user=mysql`` drops to the ``mysql`` user itself, which owns the folder.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopback import free_port  # one free-port probe for every throwaway server

SERVICE_USER = "mysql"
ADMIN = "hwadmin"


class Unavailable(Exception):
    """MariaDB cannot be started here; the message says why and how to fix it."""


def _find(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)
        if found:
            return found
    raise Unavailable(f"none of {', '.join(names)} is installed (apt-get install -y mariadb-server)")


@dataclass
class Server:
    base: Path  # temp folder: data/, mysqld.sock, error.log
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.base / "mysqld.sock"

    def url(self, database: str, user: str = ADMIN, password: str | None = None) -> str:
        return f"mysql://{user}:{self.password if password is None else password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        """A pymysql connection as the administrator (autocommit unless told otherwise)."""
        import pymysql

        options: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "user": ADMIN, "password": self.password, "autocommit": True, "charset": "utf8mb4"}
        return pymysql.connect(database=database, **(options | kwargs))

    def create_database(self) -> str:
        name = f"hw_{uuid.uuid4().hex[:12]}"
        with self.connect() as con, con.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def start(self) -> None:
        data = self.base / "data"
        install = [_find("mariadb-install-db", "mysql_install_db"), "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal", "--skip-test-db"]
        if os.geteuid() == 0:
            install.append(f"--user={SERVICE_USER}")
        done = subprocess.run(install, cwd=self.base, capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            raise Unavailable(f"mariadb-install-db failed:\n{done.stdout}\n{done.stderr}")
        server = _find("mariadbd", "mysqld")
        log = self.base / "error.log"
        for _attempt in range(5):  # another process may take the free port between probe and start
            self.port = free_port()
            command = [
                server, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mysqld.pid'}", f"--log-error={log}", "--skip-name-resolve", "--skip-log-bin",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci", "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M", "--max-connections=200", "--performance-schema=OFF",
            ]  # fmt: skip
            if os.geteuid() == 0:
                command.append(f"--user={SERVICE_USER}")
            self.process = subprocess.Popen(command, cwd=self.base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(60):
                self._create_admin()
                return
            self._kill()
        raise Unavailable(f"mariadbd did not start:\n{log.read_text() if log.exists() else '(no log)'}")

    def _wait_ready(self, seconds: float) -> bool:
        import pymysql

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            if self.socket.exists():
                try:
                    pymysql.connect(unix_socket=str(self.socket), user="root").close()
                    return True
                except pymysql.err.OperationalError:
                    pass
            time.sleep(0.1)
        return False

    def _create_admin(self) -> None:
        import pymysql

        with pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True) as con, con.cursor() as cur:
            cur.execute(f"CREATE USER '{ADMIN}'@'%%' IDENTIFIED BY %s", [self.password])
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN}'@'%' WITH GRANT OPTION")

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.base, ignore_errors=True)


def start_server() -> Server:
    """Start a server in a new temp folder; raises `Unavailable` if that is impossible here."""
    try:
        import pymysql  # noqa: F401 - the fixtures write through it
    except ImportError:
        raise Unavailable("pymysql is not installed: pip install -e '.[test]'") from None
    _find("mariadbd", "mysqld")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise Unavailable(f"running as root, and there is no '{SERVICE_USER}' user to run MariaDB as (the Debian package creates it)") from None
    # Not under pytest's tmp folder: that is private to the current user, and the server runs as another.
    base = Path(tempfile.mkdtemp(prefix="headwater-mariadb-"))
    if os.geteuid() == 0:
        os.chown(base, user.pw_uid, user.pw_gid)
    server = Server(base)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server

"""Database sources through an SSH tunnel: a private OpenSSH server (Debian's openssh-server) on a
free loopback port, with a generated host key and one authorized ed25519 key, forwards to the test
suite's MariaDB and PostgreSQL servers."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from loopback import free_port
from sqlalchemy.engine import make_url

from headwater.config import load_project
from headwater.errors import HeadwaterError
from headwater.sources import open_source
from headwater.sync import sync_source
from headwater.warehouse import Warehouse

SSHD = Path("/usr/sbin/sshd")


def _key_pair() -> tuple[str, str]:
    """(private key in OpenSSH format, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


class Bastion:
    """sshd -D on 127.0.0.1:port, accepting `private_key` for `user`, logging to `log`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.user = getpass.getuser()
        self.private_key, public = _key_pair()
        host_key, _ = _key_pair()
        (base / "host_ed25519").write_text(host_key)
        (base / "host_ed25519").chmod(0o600)
        (base / "authorized_keys").write_text(public + "\n")
        self.log = base / "sshd.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        for _attempt in range(5):
            self.port = free_port()
            config = self.base / "sshd_config"
            config.write_text(
                textwrap.dedent(f"""\
                Port {self.port}
                ListenAddress 127.0.0.1
                HostKey {self.base / "host_ed25519"}
                PidFile {self.base / "sshd.pid"}
                AuthorizedKeysFile {self.base / "authorized_keys"}
                PubkeyAuthentication yes
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PermitRootLogin prohibit-password
                AllowTcpForwarding yes
                UsePAM no
                StrictModes no
                LogLevel DEBUG1
                """)
            )
            with self.log.open("wb") as log:
                self.process = subprocess.Popen([str(SSHD), "-f", str(config), "-D", "-e"], stdout=log, stderr=subprocess.STDOUT)
            if self._wait_banner(15):
                return
            self.stop()
        raise RuntimeError(f"sshd did not start:\n{self.log.read_text()}")

    def _wait_banner(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture(scope="module")
def bastion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    if not SSHD.exists():
        reason = f"{SSHD} is missing: apt-get install openssh-server"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{reason} (CI is set, so this is an error rather than a skip)", pytrace=False)
        pytest.skip(reason)
    server = Bastion(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


def _sync_through(root: Path, source_yaml: str, bastion: Bastion, key: str) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "bastion_key").write_text(key)
    tunnel = f"ssh_tunnel: {{host: 127.0.0.1, port: {bastion.port}, user: {bastion.user}, private_key: bastion_key}}"
    (root / "headwater.yml").write_text(f"name: tunnel_test\nsources:\n  app:\n{textwrap.indent(source_yaml.strip() + chr(10) + tunnel, '    ')}\n")
    project = load_project(root, env={})
    con = Warehouse(project.root, project.config.warehouse).connect_build()
    try:
        stats = sync_source(con, open_source("app", project.config.sources["app"], project.root))
        rows = con.execute("SELECT id, name FROM raw_app.things ORDER BY id").fetchall()
    finally:
        con.close()
    return {"stats": {s.table: s for s in stats}, "rows": rows}


def _forwarded_to(bastion: Bastion, port: int) -> bool:
    """Whether sshd forwarded a connection to the database's port (its debug log says so)."""
    return "server_request_direct_tcpip: originator 127.0.0.1 port" in (text := bastion.log.read_text(errors="replace")) and f"target 127.0.0.1 port {port}\n" in text


@pytest.mark.mysql
def test_mysql_through_an_ssh_tunnel(tmp_path: Path, bastion: Bastion, mysql_server: Any, fresh_mysql_database: str) -> None:
    with mysql_server.connect(fresh_mysql_database) as con, con.cursor() as cur:
        cur.execute("CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(20))")
        cur.execute("INSERT INTO things VALUES (1, 'one'), (2, 'two')")
    result = _sync_through(tmp_path, f"type: mysql\nurl: {mysql_server.url(fresh_mysql_database)}", bastion, bastion.private_key)
    assert result["rows"] == [(1, "one"), (2, "two")]
    assert _forwarded_to(bastion, mysql_server.port)


@pytest.mark.postgres
def test_postgres_through_an_ssh_tunnel(tmp_path: Path, bastion: Bastion, fresh_pg_database: str) -> None:
    import psycopg

    url = make_url(fresh_pg_database)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True) as con:
        con.execute("CREATE TABLE things (id INT PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO things VALUES (1, 'one'), (2, 'two')")
    result = _sync_through(tmp_path, f"type: postgres\nurl: postgresql://{url.username}@{url.host}:{url.port}/{url.database}", bastion, bastion.private_key)
    assert result["rows"] == [(1, "one"), (2, "two")]
    assert _forwarded_to(bastion, url.port)


@pytest.mark.mysql
def test_a_key_the_bastion_does_not_accept_is_a_clear_error(tmp_path: Path, bastion: Bastion, mysql_server: Any, fresh_mysql_database: str) -> None:
    stranger, _ = _key_pair()
    with pytest.raises(HeadwaterError) as caught:
        _sync_through(tmp_path, f"type: mysql\nurl: {mysql_server.url(fresh_mysql_database)}", bastion, stranger)
    assert f"the SSH server 127.0.0.1:{bastion.port} refused user" in caught.value.what
    assert "authorized_keys" in (caught.value.fix or "")
    assert not caught.value.transient  # a wrong key is not retried: it will not fix itself

"""An optional SSH tunnel to a database that is only reachable through a bastion host."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from headwater.config.sources import SSHTunnel
from headwater.errors import ConfigError, TransientFailure, host_not_found, unresolved_host


class Tunnel:
    """``open(host, port)`` returns where to connect: the database itself, or the tunnel's local end."""

    def __init__(self, source: str, settings: SSHTunnel | None, root: Path) -> None:
        self.source, self.settings, self.root = source, settings, root
        self._forwarder: Any = None

    def open(self, host: str, port: int) -> tuple[str, int]:
        if self.settings is None:
            return host, port
        if self._forwarder is not None:
            return "127.0.0.1", self._forwarder.local_bind_port
        try:
            import paramiko
            import sshtunnel
        except ImportError:
            raise ConfigError(
                f"sources.{self.source}.ssh_tunnel needs the sshtunnel package", fix="pip install 'headwater[ssh]' (or pip install sshtunnel)."
            ) from None
        s = self.settings
        key: Any = None
        if s.private_key:
            text = s.private_key
            path = (self.root / text).expanduser()
            if "PRIVATE KEY" not in text and path.is_file():
                text = path.read_text()
            key = _load_key(paramiko, text, self.source)
        forwarder = sshtunnel.SSHTunnelForwarder(
            (s.host, s.port), ssh_username=s.user, ssh_pkey=key, ssh_password=s.password, remote_bind_address=(host, port), local_bind_address=("127.0.0.1", 0),
            allow_agent=False, host_pkey_directories=[],
        )
        try:
            forwarder.start()
        except Exception as exc:  # noqa: BLE001 - sshtunnel raises its own and paramiko's exceptions
            self._check_login(paramiko, key, s)  # sshtunnel's own message hides why: ask paramiko
            raise TransientFailure(
                f"Source '{self.source}': cannot open the SSH tunnel through {s.host}:{s.port}",
                why=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                fix=f"Check sources.{self.source}.ssh_tunnel (host, user, key) and that the bastion accepts the key.",
            ) from None
        self._forwarder = forwarder
        return "127.0.0.1", forwarder.local_bind_port

    def _check_login(self, paramiko: Any, key: Any, s: SSHTunnel) -> None:
        """A refused key or password is the user's to fix (not retried); raises ConfigError for it."""
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(s.host, s.port, username=s.user, pkey=key, password=s.password, allow_agent=False, look_for_keys=False, timeout=15)
        except paramiko.AuthenticationException as exc:
            raise ConfigError(
                f"Source '{self.source}': the SSH server {s.host}:{s.port} refused user '{s.user}' with the key or password given",
                why=str(exc) or type(exc).__name__,
                fix=f"Check sources.{self.source}.ssh_tunnel.user and private_key, and that the key's public half is in the bastion's authorized_keys.",
            ) from None
        except OSError as exc:  # unreachable and the like: the caller's TransientFailure says so
            if unresolved_host(str(exc)):
                raise host_not_found(f"Source '{self.source}'", s.host, f"sources.{self.source}.ssh_tunnel.host", str(exc)) from None
        except Exception:  # noqa: BLE001, S110 - paramiko's own errors: the caller's TransientFailure says so
            pass
        finally:
            client.close()

    def close(self) -> None:
        if self._forwarder is not None:
            self._forwarder.stop()
            self._forwarder = None


def _load_key(paramiko: Any, text: str, source: str) -> Any:
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except paramiko.SSHException:
            continue
    raise ConfigError(f"sources.{source}.ssh_tunnel.private_key is not a private key paramiko can read", fix="Use an unencrypted OpenSSH ed25519, ECDSA or RSA key.")

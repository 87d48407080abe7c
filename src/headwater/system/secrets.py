"""Secrets of each organisation (source passwords, service-account keys, SMTP passwords, webhook
URLs), encrypted at rest in the system database.

- **Encryption:** Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`). The plaintext is
  ``{"org": <org id>, "name": <name>, "value": <value>}``, so a ciphertext copied into another
  organisation's or another name's row is refused rather than used.
- **The key** comes from the environment (``HEADWATER_SECRET_KEY``) or else from a key file
  (``HEADWATER_SECRET_KEY_FILE``, default ``secret.key`` next to a SQLite system database, or in the
  project's ``.headwater/`` folder for a server database), created with mode 0600 when the first
  secret is set. Either may hold several keys, comma- or line-separated: the first encrypts, all
  decrypt. Each row records the id of the key that encrypted it (a fingerprint of the key, not the
  key), so a missing or wrong key is reported as such, never as a bare decryption failure.
- **A key per organisation:** each organisation's secrets are encrypted with a key derived from the
  install's key and the organisation's id (HKDF-SHA256, `org_key`), so a key handed to one
  organisation opens none of another's secrets (docs/security.md). Secrets stored before
  (encrypted with the install's key itself) are still read (`_ring`: the derived key, then the
  install's), and `rotate_key` re-encrypts every one with the derived keys.
- **Rotation** (`SecretStore.rotate_key`): with a key file, the new key is written to the file first
  (with the old ones still there), every secret is re-encrypted in one transaction, and only then are
  the old keys dropped from the file, so no crash can leave a secret that no stored key opens.
- Every value set or read is registered with `headwater.redact`, and every change is written to the
  audit log in the same transaction as the change.
"""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import CursorResult, delete, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from headwater.errors import HeadwaterError, NotFound
from headwater.redact import register
from headwater.system import audit
from headwater.system.db import SystemDB, resolve_url
from headwater.system.models import Organisation, Secret
from headwater.system.orgs import DEFAULT_ORG

KEY_ENV = "HEADWATER_SECRET_KEY"
KEY_FILE_ENV = "HEADWATER_SECRET_KEY_FILE"
KEY_FILE_NAME = "secret.key"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_VALUE = 64 * 1024  # a service-account JSON key is ~2.5 KB


class SecretError(HeadwaterError):
    """A secret cannot be stored or read as asked."""


class SecretNotFound(NotFound):
    pass


class KeyUnavailable(SecretError):
    """The key needed to encrypt or decrypt is missing or wrong."""


def key_id(key: bytes) -> str:
    """A fingerprint naming a key in records and messages; it tells nothing about the key."""
    return hashlib.sha256(b"headwater-secret-key\0" + key).hexdigest()[:16]


def generate_key() -> bytes:
    return Fernet.generate_key()


def org_key(install_key: bytes, org_id: int) -> bytes:
    """The Fernet key of one organisation's secrets: HKDF-SHA256 of the install's key, bound to the
    organisation's id. Knowing it tells nothing of the install's key nor of another organisation's."""
    secret = base64.urlsafe_b64decode(install_key)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"headwater organisation secrets\0" + str(org_id).encode()).derive(secret)
    return base64.urlsafe_b64encode(derived)


def _ring(install_key: bytes, org_id: int) -> MultiFernet:
    """What opens an organisation's secret: its own key; then the install's key itself, for secrets
    stored before keys were per organisation (until `rotate_key` re-encrypts them)."""
    return MultiFernet([Fernet(org_key(install_key, org_id)), Fernet(install_key)])


def _parse_keys(text: str, where: str) -> list[bytes]:
    keys = []
    for number, raw in enumerate(re.split(r"[,\n]", text), start=1):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        try:
            Fernet(item.encode())
        except (ValueError, TypeError):
            raise KeyUnavailable(
                f"{where}: entry {number} is not a Headwater secret key",
                why="a key is 44 characters of URL-safe base64 (32 random bytes), as `headwater secrets generate-key` prints",
                fix=f"Restore the right key into {where}; the secrets cannot be read without it.",
            ) from None
        keys.append(item.encode())
    return keys


# --- where the keys come from ----------------------------------------------------------------------


class EnvKeys:
    """Keys from ``HEADWATER_SECRET_KEY``: Headwater cannot change them, the operator does."""

    def __init__(self, value: str) -> None:
        self.where = f"the environment variable {KEY_ENV}"
        self.keys = _parse_keys(value, self.where)
        if not self.keys:
            raise KeyUnavailable(f"{KEY_ENV} is set but empty", fix="Set it to a key (`headwater secrets generate-key`), or unset it to use the key file.")

    def load(self) -> list[bytes]:
        return self.keys

    def create(self) -> bytes:
        return self.keys[0]

    def save(self, keys: list[bytes]) -> None:
        """Only drops keys no longer needed (the operator does, afterwards); a new key must already
        be first in the variable."""
        if not keys or keys[0] != self.keys[0] or not set(keys) <= set(self.keys):
            raise KeyUnavailable(
                f"Cannot store a new key in {KEY_ENV}",
                why="Headwater cannot change its own environment",
                fix=f"Generate a key (`headwater secrets generate-key`), set {KEY_ENV}=NEW,OLD, run `headwater secrets rotate-key`, then set {KEY_ENV}=NEW.",
            )


class FileKeys:
    """Keys in a file, one per line, the current one first; created 0600 on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"the key file {path}"

    def load(self) -> list[bytes]:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyUnavailable(f"Cannot read {self.where}", why=str(exc), fix=f"Check the file's permissions, or set {KEY_ENV}.") from None
        keys = _parse_keys(text, self.where)
        if not keys:
            raise KeyUnavailable(f"{self.where} is empty", fix="Restore the key from your backup; delete the empty file only if no secret was ever set.")
        return keys

    def create(self) -> bytes:
        key = generate_key()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made one first: use it
            return self.load()[0]
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.decode() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return key

    def save(self, keys: list[bytes]) -> None:
        """Replace the file atomically (write, fsync, rename), keeping mode 0600."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:  # mkstemp creates it 0600
                handle.write("".join(k.decode() + "\n" for k in keys))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


KeyProvider = EnvKeys | FileKeys


def default_key_file(system_url: str, root: Path) -> Path:
    """Next to a SQLite system database; in the project's .headwater folder for a server database."""
    url = make_url(resolve_url(system_url, root))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).parent / KEY_FILE_NAME
    return root / ".headwater" / KEY_FILE_NAME


def key_provider(default_file: Path, env: Mapping[str, str] | None = None) -> KeyProvider:
    env = os.environ if env is None else env
    if env.get(KEY_ENV) is not None:
        return EnvKeys(env[KEY_ENV])
    return FileKeys(Path(env[KEY_FILE_ENV]).expanduser() if env.get(KEY_FILE_ENV) else default_file)


# --- the store -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    updated_by: str
    key_id: str


@dataclass(frozen=True)
class Rotation:
    key_id: str  # the key every secret is encrypted with now
    secrets: int  # how many were re-encrypted
    retired: tuple[str, ...]  # ids of the keys no longer needed


class SecretStore:
    def __init__(self, db: SystemDB, keys: KeyProvider) -> None:
        self.db = db
        self.keys = keys

    # writing

    def set(self, org: str, name: str, value: str, actor: str) -> bool:
        """Store ``value`` as ``name`` of ``org``. True when it was new, False when it replaced one."""
        check_name(name)
        if not value:
            raise SecretError(f"The value for secret {name} is empty", fix="Give a value; to remove the secret use `headwater secrets delete`.")
        if len(value) > MAX_VALUE:
            raise SecretError(f"The value for secret {name} is {len(value):,} characters long", why=f"secrets are at most {MAX_VALUE:,} characters", fix="Store a smaller value (a key file's content, not a whole archive).")
        register(value)
        key = self._encryption_key()
        now = dt.datetime.now(dt.UTC)
        with self.db.session() as session, session.begin():
            org_id = _org_id(session, org)
            row = session.scalars(select(Secret).where(Secret.org_id == org_id, Secret.name == name)).first()
            created = row is None
            if row is None:
                row = Secret(org_id=org_id, name=name, created_at=now)
                session.add(row)
            row.ciphertext = _encrypt(key, org_id, name, value)
            row.key_id, row.updated_at, row.updated_by = key_id(key), now, actor
            audit.add(session, org=org, actor=actor, action="secret_set", target=name, detail={"created": created})
        return created

    def delete(self, org: str, name: str, actor: str) -> None:
        with self.db.session() as session, session.begin():
            org_id = _org_id(session, org)
            deleted = session.execute(delete(Secret).where(Secret.org_id == org_id, Secret.name == name))
            removed = cast("CursorResult[Any]", deleted).rowcount  # a DELETE's result is a cursor's
            if not removed:
                raise _not_found(org, name, self._names(session, org_id))
            audit.add(session, org=org, actor=actor, action="secret_deleted", target=name)

    def rotate_key(self, new_key: bytes | None = None, *, actor: str) -> Rotation:
        """Re-encrypt every secret of every organisation with a new key, in one transaction.

        Key file: ``new_key`` (default: a fresh one) is added first in the file, the old keys stay
        until the transaction has committed. Environment: the new key must already be first in
        ``HEADWATER_SECRET_KEY`` (NEW,OLD); afterwards the old ones can be removed from it."""
        old = self.keys.load()
        if new_key is None:
            if isinstance(self.keys, EnvKeys):
                if len(old) < 2:
                    raise KeyUnavailable(
                        f"{KEY_ENV} holds one key: there is nothing to rotate to",
                        fix=f"Generate a key (`headwater secrets generate-key`), set {KEY_ENV}=NEW,OLD (the new key first), run `headwater secrets rotate-key` again, then set {KEY_ENV}=NEW.",
                    )
                new_key = old[0]
            else:
                new_key = generate_key()
        keys = [new_key, *(k for k in old if k != new_key)]
        self.keys.save(keys)  # from here on old and new keys decrypt, whatever happens next
        by_id = {key_id(k): k for k in keys}
        with self.db.session() as session, session.begin():
            rows = session.scalars(select(Secret).with_for_update()).all()
            for row in rows:
                if row.key_id not in by_id:
                    raise self._missing_key(row.key_id, f"secret {row.name}")
                try:
                    plain = _ring(by_id[row.key_id], row.org_id).decrypt(row.ciphertext)
                except InvalidToken:
                    raise _damaged(row.name) from None
                row.ciphertext = Fernet(org_key(new_key, row.org_id)).encrypt(plain)  # the organisation's own key, whatever it was before
                row.key_id = key_id(new_key)
            audit.add(session, org=None, actor=actor, action="key_rotated", target="secret key", detail={"key_id": key_id(new_key), "secrets": len(rows)})
        with self.db.session() as session:  # a secret set with an old key while this ran keeps its key
            in_use = set(session.scalars(select(Secret.key_id).distinct()))
        kept = [k for k in keys if k == new_key or key_id(k) in in_use]
        self.keys.save(kept)
        return Rotation(key_id(new_key), len(rows), tuple(key_id(k) for k in keys if k not in kept))

    # reading

    def get(self, org: str, name: str) -> str:
        found = self.find(org, [name])
        if name not in found:
            with self.db.session() as session:
                raise _not_found(org, name, self._names(session, _org_id(session, org)))
        return found[name]

    def find(self, org: str, names: Iterable[str]) -> dict[str, str]:
        """Those of ``names`` that ``org`` has, decrypted, in one query (the missing ones left out)."""
        with self.db.session() as session:
            org_id = _org_id(session, org)
            rows = session.scalars(select(Secret).where(Secret.org_id == org_id, Secret.name.in_(sorted(set(names))))).all()
        keys = {key_id(k): k for k in self.keys.load()} if rows else {}
        return {row.name: self._decrypt(org_id, row, keys) for row in rows}

    def list(self, org: str) -> builtins.list[SecretInfo]:
        """Names and dates of ``org``'s secrets, never their values."""
        with self.db.session() as session:
            org_id = _org_id(session, org)
            rows = session.scalars(select(Secret).where(Secret.org_id == org_id).order_by(Secret.name)).all()
        return [SecretInfo(r.name, r.created_at, r.updated_at, r.updated_by, r.key_id) for r in rows]

    # keys

    def _encryption_key(self) -> bytes:
        """The key to encrypt with, made on first use. Refused while stored secrets need a key that
        is not at hand: a new or mistyped key would leave them unreadable next to the new ones."""
        keys = self.keys.load()
        with self.db.session() as session:
            needed = set(session.scalars(select(Secret.key_id).distinct())) - {key_id(k) for k in keys}
        if needed:
            raise self._missing_key(min(needed), "the stored secrets")
        return keys[0] if keys else self.keys.create()

    def _decrypt(self, org_id: int, row: Secret, keys: dict[str, bytes]) -> str:
        key = keys.get(row.key_id)
        if key is None:
            raise self._missing_key(row.key_id, f"secret {row.name}")
        try:
            plain = json.loads(_ring(key, org_id).decrypt(row.ciphertext))
        except (InvalidToken, ValueError):
            raise _misplaced(row.name) if self._another_organisations(key, row.ciphertext) else _damaged(row.name) from None
        if plain.get("org") != org_id or plain.get("name") != row.name:
            raise _misplaced(row.name)
        value = str(plain["value"])
        register(value)
        return value

    def _another_organisations(self, key: bytes, ciphertext: bytes) -> bool:
        """Whether another organisation's key opens ``ciphertext``: a record copied between rows,
        told apart from a damaged one (only on this error path: a key per organisation tried)."""
        with self.db.session() as session:
            ids = session.scalars(select(Organisation.id)).all()
        for other in ids:
            try:
                Fernet(org_key(key, other)).decrypt(ciphertext)
                return True
            except InvalidToken:
                continue
        return False

    def _missing_key(self, needed: str, what: str) -> KeyUnavailable:
        """Which key is needed, and where Headwater looked: the error a wrong or lost key gives."""
        try:
            have = [key_id(k) for k in self.keys.load()]
            held = f"{self.keys.where} holds key {', '.join(have)}" if have else f"{KEY_ENV} is not set and {self.keys.where} does not exist"
        except KeyUnavailable as unreadable:
            held = unreadable.what
        return KeyUnavailable(
            f"The secret key is missing or wrong: {what} cannot be decrypted",
            why=f"they need key {needed}; {held}",
            fix=f"Set {KEY_ENV} to the key used so far, or restore {self.keys.where if isinstance(self.keys, FileKeys) else 'the key file'} from your backup (a new key cannot read secrets set with another).",
        )

    def _names(self, session: Session, org_id: int) -> builtins.list[str]:
        return builtins.list(session.scalars(select(Secret.name).where(Secret.org_id == org_id).order_by(Secret.name)))


def _encrypt(key: bytes, org_id: int, name: str, value: str) -> bytes:
    return Fernet(org_key(key, org_id)).encrypt(json.dumps({"org": org_id, "name": name, "value": value}).encode())


def _org_id(session: Session, org: str) -> int:
    org_id = session.scalars(select(Organisation.id).where(Organisation.slug == org)).first()
    if org_id is None:
        known = ", ".join(session.scalars(select(Organisation.slug).order_by(Organisation.slug))) or "none"
        raise NotFound(f"No organisation '{org}'", fix=f"Organisations of this install: {known}.")
    return org_id


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise SecretError(
            f"'{name}' is not a valid secret name",
            why="names are what ${secret:NAME} refers to: letters, digits and underscores, not starting with a digit, at most 63 characters",
            fix="Use a name like SMTP_PASSWORD or crm_db_password.",
        )


def _not_found(org: str, name: str, names: builtins.list[str]) -> SecretNotFound:
    return SecretNotFound(
        f"No secret {name} in organisation {org}",
        why=f"its secrets are: {', '.join(names)}" if names else "it has no secrets yet",
        fix=f"Set it with `headwater secrets set {name}`" + (f" --org {org}" if org != DEFAULT_ORG else "") + ".",
    )


def _misplaced(name: str) -> SecretError:
    return SecretError(
        f"Secret {name} does not belong where it is stored",
        why="its encrypted record belongs to another organisation or secret: it was copied in the database, not set with Headwater",
        fix=f"Set it again with `headwater secrets set {name}`.",
    )


def _damaged(name: str) -> SecretError:
    return SecretError(
        f"Secret {name} cannot be decrypted: its stored record is damaged",
        why="the ciphertext does not match its key's signature (changed in the database, or truncated)",
        fix=f"Set it again with `headwater secrets set {name}`.",
    )


@contextmanager
def open_store(system_url: str, root: Path, env: Mapping[str, str] | None = None) -> Iterator[SecretStore]:
    """The secret store of the project whose system database is ``system_url``; closed afterwards."""
    keys = key_provider(default_key_file(system_url, root), env)
    db = SystemDB(resolve_url(system_url, root))
    try:
        yield SecretStore(db, keys)
    finally:
        db.close()

"""Secrets: encrypted at rest, keys and their rotation, ``${secret:NAME}`` in headwater.yml, and
redaction everywhere a secret could be written down — ending with the test that sets secrets, runs a
pipeline that uses them, and greps every byte it left behind for them."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cli_process import run_cli
from cryptography.fernet import Fernet, InvalidToken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from headwater import redact as redaction
from headwater.config.yamlfile import load_yaml, resolve_secrets
from headwater.errors import ConfigError, ExitCode, HeadwaterError
from headwater.system import SystemDB
from headwater.system.models import Organisation, Secret
from headwater.system.orgs import load_with_secrets
from headwater.system.secrets import (
    KEY_ENV,
    KEY_FILE_ENV,
    EnvKeys,
    FileKeys,
    KeyUnavailable,
    SecretError,
    SecretNotFound,
    SecretStore,
    generate_key,
    key_id,
    org_key,
)

ACTOR = "cli:tester"


def unique(label: str) -> str:
    """A value no run could contain by chance."""
    return f"{label}-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a test registers as secret is forgotten after it: random values from hypothesis must not
    redact other tests' output (the registry is process-wide)."""
    monkeypatch.setattr(redaction, "_registry", redaction._registry.copy())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SystemDB]:
    system = SystemDB(f"sqlite:///{tmp_path / 'system.db'}")
    yield system
    system.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "secret.key"


@pytest.fixture
def store(db: SystemDB, key_file: Path) -> SecretStore:
    return SecretStore(db, FileKeys(key_file))


def raw_bytes(folder: Path) -> bytes:
    """Every byte of every file under ``folder`` (the database, its WAL and shared memory, logs...)."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def add_org(db: SystemDB, slug: str) -> None:
    import datetime as dt

    with db.session() as session:
        session.add(Organisation(slug=slug, name=slug.title(), created_at=dt.datetime.now(dt.UTC)))
        session.commit()


# --- the store -----------------------------------------------------------------------------------


def test_values_are_encrypted_at_rest(store: SecretStore, db: SystemDB, tmp_path: Path) -> None:
    value = unique("smtp-pw")
    assert store.set("default", "SMTP_PASSWORD", value, ACTOR) is True
    assert store.get("default", "SMTP_PASSWORD") == value
    db.close()  # checkpoint the WAL: every page written so far is in the files grepped below
    disk = raw_bytes(tmp_path)
    assert value.encode() not in disk
    assert b"SMTP_PASSWORD" in disk  # the name is stored in the clear: the grep above looked in the right place
    with SystemDB(f"sqlite:///{tmp_path / 'system.db'}").engine.connect() as con:
        ciphertext, stored_key = con.execute(text("SELECT ciphertext, key_id FROM secrets")).one()
    assert value.encode() not in ciphertext and stored_key == key_id(FileKeys(tmp_path / "keys" / "secret.key").load()[0])


def test_the_key_file_is_made_on_first_set_with_mode_0600(store: SecretStore, key_file: Path) -> None:
    assert store.list("default") == [] and not key_file.exists()  # reading makes no key
    store.set("default", "A_TOKEN", "value-1234", ACTOR)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(FileKeys(key_file).load()) == 1


def test_set_replaces_list_shows_no_values_delete_removes(store: SecretStore) -> None:
    first, second = unique("v1"), unique("v2")
    assert store.set("default", "HOOK_URL", first, ACTOR) is True
    assert store.set("default", "HOOK_URL", second, "ana@example.org") is False
    store.set("default", "OTHER", unique("v3"), ACTOR)
    assert store.get("default", "HOOK_URL") == second
    listed = store.list("default")
    assert [(s.name, s.updated_by) for s in listed] == [("HOOK_URL", "ana@example.org"), ("OTHER", ACTOR)]
    assert second not in repr(listed) and first not in repr(listed)
    store.delete("default", "HOOK_URL", ACTOR)
    assert [s.name for s in store.list("default")] == ["OTHER"]
    with pytest.raises(SecretNotFound) as missing:
        store.get("default", "HOOK_URL")
    assert "headwater secrets set HOOK_URL" in missing.value.render() and "OTHER" in missing.value.render()
    with pytest.raises(SecretNotFound):
        store.delete("default", "HOOK_URL", ACTOR)


def test_secrets_belong_to_one_organisation(store: SecretStore, db: SystemDB) -> None:
    add_org(db, "acme")
    store.set("acme", "PW", "acme-secret-1", ACTOR)
    store.set("default", "PW", "default-secret-2", ACTOR)
    assert store.get("acme", "PW") == "acme-secret-1" and store.get("default", "PW") == "default-secret-2"
    assert store.find("default", ["PW", "NOPE"]) == {"PW": "default-secret-2"}
    with pytest.raises(HeadwaterError, match="No organisation 'nope'"):
        store.get("nope", "PW")


def test_a_ciphertext_copied_to_another_organisation_is_refused(store: SecretStore, db: SystemDB) -> None:
    add_org(db, "acme")
    store.set("acme", "PW", "acme-only-secret", ACTOR)
    store.set("default", "PW", "placeholder", ACTOR)
    with db.session() as session:
        acme = session.scalars(select(Secret).join(Organisation).where(Organisation.slug == "acme")).one()
        session.execute(update(Secret).where(Secret.id != acme.id).values(ciphertext=acme.ciphertext))
        session.commit()
    with pytest.raises(SecretError, match="does not belong where it is stored"):
        store.get("default", "PW")


def _row(db: SystemDB, slug: str, name: str = "PW") -> Secret:
    with db.session() as session:
        return session.scalars(select(Secret).join(Organisation).where(Organisation.slug == slug, Secret.name == name)).one()


def test_each_organisation_has_a_key_of_its_own(store: SecretStore, db: SystemDB, key_file: Path) -> None:
    """A key derived per organisation: neither another organisation's key nor the install's key
    itself opens an organisation's secret."""
    add_org(db, "acme")
    add_org(db, "beta")
    store.set("acme", "PW", "acme-password-1", ACTOR)
    store.set("beta", "PW", "beta-password-2", ACTOR)
    install_key = FileKeys(key_file).load()[0]
    acme, beta = _row(db, "acme"), _row(db, "beta")
    assert json.loads(Fernet(org_key(install_key, acme.org_id)).decrypt(acme.ciphertext))["value"] == "acme-password-1"
    for key, ciphertext in ((org_key(install_key, acme.org_id), beta.ciphertext), (org_key(install_key, beta.org_id), acme.ciphertext), (install_key, acme.ciphertext)):
        with pytest.raises(InvalidToken):
            Fernet(key).decrypt(ciphertext)
    assert len({org_key(install_key, acme.org_id), org_key(install_key, beta.org_id), install_key}) == 3
    assert org_key(install_key, acme.org_id) == org_key(install_key, acme.org_id)  # derived, not stored: the same every time


def test_secrets_of_an_install_made_before_keys_per_organisation_keep_working(store: SecretStore, db: SystemDB, key_file: Path) -> None:
    """An install whose secrets were encrypted with the install's key itself (the old scheme): still
    read, and moved to the organisation's own key by a rotation."""
    import datetime as dt

    add_org(db, "acme")
    old_key = generate_key()
    FileKeys(key_file).save([old_key])
    now = dt.datetime.now(dt.UTC)
    with db.session() as session:
        org_id = session.scalars(select(Organisation.id).where(Organisation.slug == "acme")).one()
        plain = json.dumps({"org": org_id, "name": "PW", "value": "set-long-ago-123"}).encode()
        session.add(Secret(org_id=org_id, name="PW", ciphertext=Fernet(old_key).encrypt(plain), key_id=key_id(old_key), created_at=now, updated_at=now, updated_by="old"))
        session.commit()
    assert store.get("acme", "PW") == "set-long-ago-123"
    store.set("acme", "NEW", "set-after-upgrade", ACTOR)  # new secrets use the organisation's key at once
    assert store.find("acme", ["PW", "NEW"]) == {"PW": "set-long-ago-123", "NEW": "set-after-upgrade"}
    store.rotate_key(actor=ACTOR)
    new_key = FileKeys(key_file).load()[0]
    moved = _row(db, "acme")
    assert json.loads(Fernet(org_key(new_key, org_id)).decrypt(moved.ciphertext))["value"] == "set-long-ago-123"
    with pytest.raises(InvalidToken):
        Fernet(new_key).decrypt(moved.ciphertext)
    assert store.find("acme", ["PW", "NEW"]) == {"PW": "set-long-ago-123", "NEW": "set-after-upgrade"}


def test_a_damaged_ciphertext_is_a_clear_error(store: SecretStore, db: SystemDB) -> None:
    store.set("default", "PW", "some-secret-value", ACTOR)
    with db.session() as session:
        row = session.scalars(select(Secret)).one()
        row.ciphertext = row.ciphertext[:-8] + b"AAAAAAAA"
        session.commit()
    with pytest.raises(SecretError) as damaged:
        store.get("default", "PW")
    assert "damaged" in damaged.value.what and "InvalidToken" not in damaged.value.render()


@pytest.mark.parametrize("name", ["", "1ABC", "has-dash", "has space", "x" * 64, "ünïcode"])
def test_bad_names_are_refused(store: SecretStore, name: str) -> None:
    with pytest.raises(SecretError, match="not a valid secret name"):
        store.set("default", name, "value-1234", ACTOR)


def test_empty_values_are_refused(store: SecretStore) -> None:
    with pytest.raises(SecretError, match="empty"):
        store.set("default", "PW", "", ACTOR)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(min_size=4, max_size=300).filter(lambda v: v.strip("\x00") == v))
def test_any_text_round_trips_and_never_lands_in_the_clear(store: SecretStore, db: SystemDB, value: str) -> None:
    store.set("default", "ANY", value, ACTOR)
    assert store.get("default", "ANY") == value
    with db.engine.connect() as con:
        ciphertext = con.execute(text("SELECT ciphertext FROM secrets WHERE name = 'ANY'")).scalar_one()
    assert value.encode() not in ciphertext


# --- keys ----------------------------------------------------------------------------------------


def test_a_wrong_key_says_which_key_and_where_it_looked(db: SystemDB) -> None:
    right, wrong = generate_key(), generate_key()
    SecretStore(db, EnvKeys(right.decode())).set("default", "PW", "secret-value-1", ACTOR)
    with pytest.raises(KeyUnavailable) as exc:
        SecretStore(db, EnvKeys(wrong.decode())).get("default", "PW")
    rendered = exc.value.render()
    assert key_id(right) in rendered and key_id(wrong) in rendered and KEY_ENV in rendered
    assert "InvalidToken" not in rendered and right.decode() not in rendered and wrong.decode() not in rendered
    with pytest.raises(KeyUnavailable):  # nor is anything encrypted with the wrong key next to the right one
        SecretStore(db, EnvKeys(wrong.decode())).set("default", "OTHER", "secret-value-2", ACTOR)


def test_a_lost_key_file_names_the_file_and_the_variable(store: SecretStore, db: SystemDB, key_file: Path) -> None:
    store.set("default", "PW", "secret-value-2", ACTOR)
    key_file.unlink()
    with pytest.raises(KeyUnavailable) as exc:
        store.get("default", "PW")
    assert str(key_file) in exc.value.render() and KEY_ENV in exc.value.render()
    with pytest.raises(KeyUnavailable):  # a new key would strand the stored secret: refused, nothing made
        store.set("default", "OTHER", "value-3333", ACTOR)
    assert not key_file.exists()


@pytest.mark.parametrize("value", ["not-a-key", "", "   "])
def test_an_invalid_key_in_the_environment_is_a_clear_error(value: str) -> None:
    with pytest.raises(KeyUnavailable) as exc:
        EnvKeys(value)
    assert KEY_ENV in exc.value.render()


def test_key_provider_prefers_the_environment_then_the_key_file_variable(tmp_path: Path) -> None:
    from headwater.system.secrets import default_key_file, key_provider

    default = default_key_file("sqlite:///.headwater/system.db", tmp_path)
    assert default == tmp_path / ".headwater" / "secret.key"
    assert default_key_file("postgresql+psycopg://u@h/db", tmp_path) == tmp_path / ".headwater" / "secret.key"
    assert isinstance(key_provider(default, {KEY_ENV: generate_key().decode()}), EnvKeys)
    chosen = key_provider(default, {KEY_FILE_ENV: str(tmp_path / "elsewhere.key")})
    assert isinstance(chosen, FileKeys) and chosen.path == tmp_path / "elsewhere.key"
    assert isinstance(key_provider(default, {}), FileKeys) and key_provider(default, {}).path == default  # type: ignore[union-attr]


def test_rotation_with_a_key_file(store: SecretStore, db: SystemDB, key_file: Path) -> None:
    add_org(db, "acme")
    values = {("default", "A"): unique("a"), ("default", "B"): unique("b"), ("acme", "A"): unique("c")}
    for (org, name), value in values.items():
        store.set(org, name, value, ACTOR)
    [old] = FileKeys(key_file).load()
    with db.session() as session:
        before = {r.id: r.ciphertext for r in session.scalars(select(Secret))}

    done = store.rotate_key(actor=ACTOR)

    [new] = FileKeys(key_file).load()  # the old key is gone from the file
    assert new != old and done.key_id == key_id(new) and done.retired == (key_id(old),) and done.secrets == 3
    with db.session() as session:
        rows = session.scalars(select(Secret)).all()
    assert all(r.key_id == key_id(new) and r.ciphertext != before[r.id] for r in rows)
    for (org, name), value in values.items():
        assert SecretStore(db, EnvKeys(new.decode())).get(org, name) == value  # the new key alone reads all
    with pytest.raises(KeyUnavailable):
        SecretStore(db, EnvKeys(old.decode())).get("default", "A")  # the old key no longer does


def test_rotation_keeps_the_old_key_until_the_secrets_are_reencrypted(store: SecretStore, db: SystemDB, key_file: Path) -> None:
    store.set("default", "A", "value-aaaa", ACTOR)
    [old] = FileKeys(key_file).load()
    with db.session() as session:  # a secret whose record no key can open makes the rotation fail midway
        session.add(Secret(org_id=1, name="Z", ciphertext=Fernet(generate_key()).encrypt(b"{}"), key_id="0123456789abcdef", created_at=_now(), updated_at=_now(), updated_by=ACTOR))
        session.commit()
    with pytest.raises(KeyUnavailable) as exc:
        store.rotate_key(actor=ACTOR)
    assert "secret Z" in exc.value.what and "0123456789abcdef" in exc.value.render()
    keys = FileKeys(key_file).load()
    assert old in keys and len(keys) == 2  # the new key was added first, the old one kept
    assert SecretStore(db, FileKeys(key_file)).get("default", "A") == "value-aaaa"  # nothing was changed


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def test_rotation_with_keys_from_the_environment(db: SystemDB) -> None:
    old, new = generate_key(), generate_key()
    SecretStore(db, EnvKeys(old.decode())).set("default", "PW", "env-secret-1", ACTOR)
    with pytest.raises(KeyUnavailable) as exc:
        SecretStore(db, EnvKeys(old.decode())).rotate_key(actor=ACTOR)
    assert "holds one key" in exc.value.what and f"{KEY_ENV}=NEW,OLD" in exc.value.render()
    done = SecretStore(db, EnvKeys(f"{new.decode()},{old.decode()}")).rotate_key(actor=ACTOR)
    assert done.key_id == key_id(new) and done.retired == (key_id(old),)
    assert SecretStore(db, EnvKeys(new.decode())).get("default", "PW") == "env-secret-1"


# --- ${secret:NAME} in headwater.yml ---------------------------------------------------------------


def init_project(root: Path, extra: str = "") -> Path:
    from headwater.scaffold import init_project as scaffold

    scaffold(root, "secrets_demo")
    if extra:
        with open(root / "headwater.yml", "a") as handle:
            handle.write(textwrap.dedent(extra))
    return root


def project_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {KEY_FILE_ENV: str(tmp_path / "keys" / "secret.key"), **extra}


def project_store(root: Path, env: dict[str, str]) -> Any:
    from headwater.config.loader import project_system_url
    from headwater.system.secrets import open_store

    return open_store(project_system_url(root, env)[1], root, env)


ALERTS = """
alerts:
  - type: email
    to: [team@example.org]
    smtp: {host: 127.0.0.1, port: 2525, username: alerts, password: "${secret:SMTP_PASSWORD}", security: none, from: hw@example.org}
  - type: webhook
    url: "${secret:SLACK_WEBHOOK_URL}"
"""


def test_secrets_fill_in_alert_channels(tmp_path: Path) -> None:
    root, env = init_project(tmp_path / "p", ALERTS), project_env(tmp_path)
    smtp_pw, hook = unique("smtp"), f"https://hooks.slack.com/services/T01/B02/{uuid.uuid4().hex}"
    with project_store(root, env) as store:
        store.set("default", "SMTP_PASSWORD", smtp_pw, ACTOR)
        store.set("default", "SLACK_WEBHOOK_URL", hook, ACTOR)
    loaded = load_with_secrets(root, env)
    email, webhook = loaded.config.alerts
    assert email.smtp.password == smtp_pw and webhook.url == hook  # type: ignore[union-attr]
    assert redaction.redact(f"login with {smtp_pw} to {hook}") == "login with *** to ***"


def test_a_secret_inside_a_postgres_url(tmp_path: Path) -> None:
    """A source's connection URL with its password from the store (resolved before validation, so
    checked here at the file level: the same path every source setting takes)."""
    file = tmp_path / "sources.yml"
    file.write_text('crm:\n  type: postgres\n  url: "postgresql://etl:${secret:CRM_DB_PASSWORD}@db.internal:5432/crm?sslmode=require"\n')
    located = load_yaml(file, {})
    assert [p.path for p in located.pending] == [("crm", "url")]

    class Lookup:
        org = "default"
        org_option = ""

        def __call__(self, names: list[str]) -> dict[str, str]:
            return {"CRM_DB_PASSWORD": "p@ss/w:rd"} if names == ["CRM_DB_PASSWORD"] else {}

    resolve_secrets(located, {}, Lookup())
    assert located.data["crm"]["url"] == "postgresql://etl:p@ss/w:rd@db.internal:5432/crm?sslmode=require"
    assert redaction.redact(f"could not connect: {located.data['crm']['url']}") == "could not connect: postgresql://etl:***@db.internal:5432/crm?sslmode=require"


def test_a_missing_secret_names_the_line_and_the_command(tmp_path: Path) -> None:
    root, env = init_project(tmp_path / "p", ALERTS), project_env(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_with_secrets(root, env)
    rendered = exc.value.render()
    lines = (root / "headwater.yml").read_text().splitlines()
    line = next(i for i, content in enumerate(lines, start=1) if "${secret:SMTP_PASSWORD}" in content)
    assert f"headwater.yml:{line}: secret SMTP_PASSWORD is not set in organisation default" in rendered
    assert "Fix: Set it with `headwater secrets set SMTP_PASSWORD`" in rendered


def test_a_project_without_secrets_never_opens_the_system_database(tmp_path: Path) -> None:
    root = init_project(tmp_path / "p", "alerts:\n  - {type: webhook, url: '$${secret:NOT_A_REFERENCE}'}\n")
    loaded = load_with_secrets(root, project_env(tmp_path))
    assert loaded.config.alerts[0].url == "${secret:NOT_A_REFERENCE}"  # $$ escapes it  # type: ignore[union-attr]
    assert not (root / ".headwater").exists()


def test_the_organisation_is_a_parameter(tmp_path: Path) -> None:
    root, env = init_project(tmp_path / "p", ALERTS), project_env(tmp_path)
    with project_store(root, env) as store:
        add_org(store.db, "acme")
        store.set("acme", "SMTP_PASSWORD", "acme-smtp-pw", ACTOR)
        store.set("acme", "SLACK_WEBHOOK_URL", "https://hooks.example.org/acme-hook", ACTOR)
    assert load_with_secrets(root, env, org="acme").config.alerts[0].smtp.password == "acme-smtp-pw"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="not set in organisation default"):
        load_with_secrets(root, env)
    with pytest.raises(ConfigError) as other:
        load_with_secrets(root, env, org="beta")
    assert "No organisation 'beta'" in other.value.render()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('system:\n  url: "sqlite:///${secret:DB}"\n', "system.url cannot use ${secret:DB}"),
        ("dbt:\n  vars:\n    dsn: ${secret:CRM}\n", "dbt.vars.dsn cannot use ${secret:CRM}"),
        ("alerts:\n  - {type: webhook, url: '${secret:bad-name}'}\n", "does not name a secret"),
    ],
)
def test_secrets_are_refused_where_they_cannot_work_or_would_leak(tmp_path: Path, extra: str, message: str) -> None:
    root = init_project(tmp_path / "p")
    content = (root / "headwater.yml").read_text().replace("system:\n  url: sqlite:///.headwater/system.db\n", "")
    if extra.startswith("dbt:"):  # in place of the scaffold's dbt: block
        content = content.replace("dbt:\n  project_dir: .\n", "")
    (root / "headwater.yml").write_text(content + extra)
    with pytest.raises(ConfigError) as exc:
        load_with_secrets(root, project_env(tmp_path))
    assert message in exc.value.render()
    assert not (root / ".headwater").exists()  # refused before any lookup


def test_dashboards_cannot_use_secrets(tmp_path: Path) -> None:
    root = init_project(tmp_path / "p")
    (root / "dashboards").mkdir(exist_ok=True)
    (root / "dashboards" / "board.yml").write_text("title: '${secret:X}'\ntable: t\ncharts: [{title: a, type: kpi, measures: {n: count(*)}}]\n")
    project = load_with_secrets(root, project_env(tmp_path))  # a dashboard that does not load is listed as broken, never loaded
    assert "board" not in project.config.dashboards
    assert "dashboards cannot use" in project.broken_dashboards["board"].what


def test_an_invalid_secret_value_is_reported_without_the_value(tmp_path: Path) -> None:
    root, env = init_project(tmp_path / "p", "alerts:\n  - {type: email, to: [a@b.org], smtp: {host: h, port: '${secret:SMTP_PORT_TOKEN}', from: x@b.org}}\n"), project_env(tmp_path)
    value = unique("not-a-port")
    with project_store(root, env) as store:
        store.set("default", "SMTP_PORT_TOKEN", value, ACTOR)
    with pytest.raises(ConfigError) as exc:
        load_with_secrets(root, env)
    assert "alerts.0.smtp.port" in exc.value.render() and value not in exc.value.render()


def test_environment_values_named_like_secrets_are_redacted(tmp_path: Path) -> None:
    password, token, host = unique("envpw"), unique("envtok"), unique("host")
    extra = """
    alerts:
      - type: email
        to: [a@b.org]
        smtp: {host: "${ALERT_HOST}", username: "${ALERT_USER}", password: "${ALERT_PW}", from: x@b.org}
      - {type: webhook, url: "https://hooks.example.org/${HOOK_TOKEN}"}
    """
    root = init_project(tmp_path / "p", extra)
    load_with_secrets(root, {"ALERT_HOST": host, "ALERT_USER": "plain-user", "ALERT_PW": password, "HOOK_TOKEN": token})
    assert redaction.redact(f"{password} {token} {host} plain-user") == f"*** *** {host} plain-user"


# --- redaction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "variable", "secret"),
    [
        ("SMTP_PASSWORD", True, True), ("PGPASS", True, True), ("SLACK_WEBHOOK_URL", True, True), ("STRIPE_KEY", True, True),
        ("DATABASE_DSN", True, True), ("api_key", False, True), ("credentials", False, True), ("password", False, True),
        ("DB_HOST", True, False), ("PORT", True, False), ("KEYBOARD_LAYOUT", True, False), ("primary_key", False, False), ("url", False, False),
    ],
)  # fmt: skip
def test_which_names_hold_secrets(name: str, variable: bool, secret: bool) -> None:
    assert redaction.is_secret_name(name, variable=variable) is secret


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("postgresql://ana:s3cret@db.example.org:5432/crm", "postgresql://ana:***@db.example.org:5432/crm"),
        ("mysql://u:p@ss@word@h/db and more", "mysql://u:***@h/db and more"),
        ("host=db user=etl password='a b c' dbname=crm", "host=db user=etl password=*** dbname=crm"),
        ("https://api.example.org/v1?token=abcdef&x=1", "https://api.example.org/v1?token=***&x=1"),
        ("https://example.org/path and http://host:8080/x", "https://example.org/path and http://host:8080/x"),
    ],
)
def test_connection_strings_are_redacted_by_pattern(given_: str, expected: str) -> None:
    assert redaction.redact(given_) == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.text(min_size=redaction.MIN_LENGTH, max_size=40), before=st.text(max_size=40), after=st.text(max_size=40))
def test_a_registered_secret_never_survives_redaction(secret: str, before: str, after: str) -> None:
    redaction.register(secret)
    for form in (secret, json.dumps(secret)[1:-1]):
        assert secret not in redaction.redact(before + form + after)


def test_headwater_errors_render_redacted() -> None:
    secret = unique("err")
    redaction.register(secret)
    error = HeadwaterError(f"cannot connect with {secret}", why="postgresql://u:pw1234@h/db refused", fix="check it")
    assert secret not in error.render() and "pw1234" not in error.render() and "u:***@h/db" in error.render()


def test_python_logging_is_redacted_for_handlers_made_later() -> None:
    import io

    secret = unique("log")
    redaction.register(secret)
    redaction.install_logging()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # made after install: like uvicorn's
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger = logging.getLogger("test.secrets.child")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting with %s to %s", secret, "postgresql://etl:pw9876@h/db")
        try:
            raise RuntimeError(f"driver said: bad password {secret}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "connecting with *** to postgresql://etl:***@h/db" in written and "Traceback" in written
    assert secret not in written and "pw9876" not in written


# --- the command line ------------------------------------------------------------------------------


def hw(*args: str | Path, cwd: Path, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1", "COLUMNS": "200", **env}
    return run_cli(*args, cwd=cwd, stdin=stdin, env=environment)


def test_cli_set_list_delete_never_print_the_value(tmp_path: Path) -> None:
    root, env = init_project(tmp_path / "p"), project_env(tmp_path)
    value = unique("cli")
    made = hw("secrets", "set", "SMTP_PASSWORD", "--value-stdin", cwd=root, env=env, stdin=value + "\n")
    assert made.returncode == 0, made.stderr
    assert "Secret SMTP_PASSWORD set" in made.stdout and "Created the key file" in made.stderr
    again = hw("secrets", "set", "SMTP_PASSWORD", "--value-stdin", cwd=root, env=env, stdin=value + "\n")
    assert "replaced" in again.stdout and "Created the key file" not in again.stderr
    listed = hw("secrets", "list", "--json", cwd=root, env=env)
    [item] = json.loads(listed.stdout)
    assert item["name"] == "SMTP_PASSWORD" and item["updated_by"].startswith("cli:")
    with project_store(root, env) as store:
        assert store.get("default", "SMTP_PASSWORD") == value  # one trailing newline dropped, nothing else
    deleted = hw("secrets", "delete", "SMTP_PASSWORD", cwd=root, env=env)
    assert deleted.returncode == 0 and json.loads(hw("secrets", "list", "--json", cwd=root, env=env).stdout) == []
    for result in (made, again, listed, deleted):
        assert value not in result.stdout + result.stderr


def test_cli_set_in_an_organisations_project_stores_in_that_organisation(tmp_path: Path) -> None:
    root = tmp_path / "inst"
    env = {"HOME": str(tmp_path)}
    assert hw("org", "create", "acme", "--install", root, cwd=tmp_path, env=env).returncode == 0
    project = root / "orgs" / "acme"
    made = hw("secrets", "set", "CRM_PW", "--value-stdin", "-p", project, cwd=tmp_path, env=env, stdin="acme-crm-pw-77\n")
    assert made.returncode == 0 and "in organisation acme" in made.stdout, made.stdout + made.stderr
    listed = hw("secrets", "list", "--json", cwd=project, env=env)
    assert [s["name"] for s in json.loads(listed.stdout)] == ["CRM_PW"]
    assert json.loads(hw("secrets", "list", "--json", "--org", "default", "-p", project, cwd=tmp_path, env=env).stdout) == []
    (project / "headwater.yml").write_text((project / "headwater.yml").read_text() + "web:\n  base_url: https://x.example.org/${secret:CRM_PW}\n")
    db = SystemDB(f"sqlite:///{root / 'system.db'}")
    try:
        from headwater.system.orgs import Install, Organisations

        assert Install.load(root).load_project(Organisations(db).get("acme")).config.web.base_url == "https://x.example.org/acme-crm-pw-77"
    finally:
        db.close()


def test_cli_can_set_a_secret_the_project_file_already_needs(tmp_path: Path) -> None:
    root, env = init_project(tmp_path / "p", ALERTS), project_env(tmp_path)
    assert hw("runs", cwd=root, env=env).returncode == ExitCode.USER_ERROR  # the project does not load yet
    for name in ("SMTP_PASSWORD", "SLACK_WEBHOOK_URL"):
        assert hw("secrets", "set", name, "--value-stdin", cwd=root, env=env, stdin=unique(name)).returncode == 0
    assert hw("runs", cwd=root, env=env).returncode == 0


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["secrets", "set", "bad-name", "--value-stdin"], "x", "not a valid secret name"),
        (["secrets", "set", "PW"], None, "No terminal to ask"),
        (["secrets", "set", "PW", "--value-stdin"], "", "empty"),
        (["secrets", "set", "PW", "--org", "nope", "--value-stdin"], "value-1234", "No organisation 'nope'"),
        (["secrets", "delete", "NOPE"], None, "No secret NOPE"),
    ],
)
def test_cli_errors_are_clear(tmp_path: Path, args: list[str], stdin: str | None, message: str) -> None:
    root, env = init_project(tmp_path / "p"), project_env(tmp_path)
    result = hw(*args, cwd=root, env=env, stdin=stdin)
    assert result.returncode == ExitCode.USER_ERROR, (result.stdout, result.stderr)
    assert message in result.stderr and "Fix:" in result.stderr and "Traceback" not in result.stderr


def test_cli_rotate_key_and_a_wrong_key(tmp_path: Path) -> None:
    root, env = init_project(tmp_path / "p", ALERTS), project_env(tmp_path)
    for name in ("SMTP_PASSWORD", "SLACK_WEBHOOK_URL"):
        hw("secrets", "set", name, "--value-stdin", cwd=root, env=env, stdin=unique(name))
    old = (tmp_path / "keys" / "secret.key").read_text()
    rotated = hw("secrets", "rotate-key", cwd=root, env=env)
    assert rotated.returncode == 0 and "Re-encrypted 2 secret(s)" in rotated.stdout
    assert (tmp_path / "keys" / "secret.key").read_text() != old
    assert hw("runs", cwd=root, env=env).returncode == 0  # the project still loads with the new key
    wrong = hw("runs", cwd=root, env={KEY_ENV: old.strip()})
    assert wrong.returncode == ExitCode.USER_ERROR and KEY_ENV in wrong.stderr and "key is missing or wrong" in wrong.stderr
    assert "InvalidToken" not in wrong.stderr and old.strip() not in wrong.stderr


def test_cli_generate_key_prints_a_usable_key(tmp_path: Path) -> None:
    result = hw("secrets", "generate-key", cwd=tmp_path, env={})
    assert result.returncode == 0 and EnvKeys(result.stdout.strip()).load()


# --- PostgreSQL as the system database -------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_system_database_holds_no_secret_in_the_clear(fresh_pg_database: str, tmp_path: Path) -> None:
    import shutil

    from pg import find_bin_dir

    from headwater.system import audit

    value = unique("pg-secret")
    db = SystemDB(fresh_pg_database)
    try:
        store = SecretStore(db, FileKeys(tmp_path / "secret.key"))
        store.set("default", "CRM_DB_PASSWORD", value, ACTOR)
        store.rotate_key(actor=ACTOR)
        assert store.get("default", "CRM_DB_PASSWORD") == value
        assert [e.action for e in audit.query(db, None)] == ["key_rotated"]
    finally:
        db.close()
    from sqlalchemy.engine import make_url

    url = make_url(fresh_pg_database)
    pg_dump = shutil.which("pg_dump") or str(find_bin_dir() / "pg_dump")
    dump = subprocess.run([pg_dump, "-h", url.host or "127.0.0.1", "-p", str(url.port), "-U", url.username or "postgres", url.database or ""], capture_output=True, check=True, timeout=60).stdout
    assert b"CRM_DB_PASSWORD" in dump and b"secret_set" in dump  # the dump holds the tables
    assert value.encode() not in dump


# --- the grep test ---------------------------------------------------------------------------------


class SMTPAuth:
    """An SMTP server on loopback that requires a login and keeps what it received."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.logins: list[tuple[str, str]] = []
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"

    def authenticate(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=data.password.decode() == self.password, handled=False)
        return AuthResult(success=False, handled=False)


@pytest.mark.slow
def test_no_secret_is_left_anywhere_after_a_run_that_uses_them(tmp_path: Path) -> None:
    """Set distinctive secrets, run the demo pipeline with an e-mail channel (SMTP login), a webhook
    and a check whose failing query quotes a connection string, then grep the system database, the
    project's files and logs, the run records, the CLI's output, the alerts and the run pages."""
    from conftest_web import log_in
    from demo_project import make_project
    from fastapi.testclient import TestClient
    from loopback import free_port, webhook_server

    from headwater.web import create_app

    smtp_pw, crm_pw, hook_token = unique("smtp-pw"), unique("crm-pw"), unique("hooktoken")
    root = tmp_path / "demo"
    make_project(root, 300)
    env = {**project_env(tmp_path)}
    smtp = SMTPAuth(smtp_pw)
    controller = Controller(smtp, hostname="127.0.0.1", port=free_port(), authenticator=smtp.authenticate, auth_require_tls=False)
    controller.start()
    try:
        with webhook_server() as hooks:
            hook_url = hooks.url.rsplit("/hooks/", 1)[0] + f"/hooks/T0/B0/{hook_token}"
            secrets = {"SMTP_PASSWORD": smtp_pw, "SLACK_WEBHOOK_URL": hook_url, "CRM_DB_PASSWORD": crm_pw}
            outputs = [hw("secrets", "set", name, "--value-stdin", cwd=root, env=env, stdin=value) for name, value in secrets.items()]
            _use_secrets(root, controller.port)

            run = hw("run", cwd=root, env=env)
            assert run.returncode == ExitCode.RUN_FAILED, run.stderr[-3000:]
            outputs += [run, hw("logs", "1", cwd=root, env=env), hw("runs", "--json", cwd=root, env=env), hw("secrets", "list", cwd=root, env=env)]

            project = load_with_secrets(root, env)
            with TestClient(create_app(project)) as client:
                log_in(client, project, "admin")
                pages = [client.get(path) for path in ("/runs/1", "/api/runs/1/log", "/pipelines", "/sources", "/sources/campaign", "/admin/users")]
            assert all(page.status_code == 200 for page in pages), [(p.url, p.status_code) for p in pages]
            posted = json.dumps(hooks.posts)
    finally:
        controller.stop()

    # The secrets were really used: the SMTP server checked the password, the webhook got the alert.
    assert smtp.logins == [("alerts", smtp_pw)] and len(smtp.messages) == 1
    assert "crm_mirror_matches" in posted
    haystack = b"\n".join(
        [
            raw_bytes(root),  # system.db (+ WAL), dbt's logs and target/, the warehouse, everything
            *(f"{o.stdout}\n{o.stderr}".encode() for o in outputs),
            *(page.content for page in pages),
            *smtp.messages,
            posted.encode(),
        ]
    )
    # The failing check's error reached every record, with only the password taken out.
    assert haystack.count(b"postgresql://etl:***@127.0.0.1:1/crm") >= 5
    for name, value in {**secrets, "webhook token": hook_token}.items():
        forms = {value, json.dumps(value)[1:-1]}
        hits = [form for form in forms if form.encode() in haystack]
        assert hits == [], f"{name} found in the output"


def _use_secrets(root: Path, smtp_port: int) -> None:
    """Alert channels from secrets, and a check whose query quotes a connection string and fails."""
    file = root / "headwater.yml"
    content = file.read_text()
    check = """      - name: crm_mirror_matches
        type: reconcile
        left:
          sql: select count(*) from read_csv('postgresql://etl:${secret:CRM_DB_PASSWORD}@127.0.0.1:1/crm')
        right:
          sql: select 1
"""
    anchor = "      # The campaign database is still being written to."
    assert anchor in content
    content = content.replace(anchor, check + anchor)
    content += f"""
alerts:
  - type: email
    to: [team@example.org]
    smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, username: alerts, password: "${{secret:SMTP_PASSWORD}}", from: headwater@example.org}}
  - type: webhook
    url: "${{secret:SLACK_WEBHOOK_URL}}"
    format: json
"""
    file.write_text(content)

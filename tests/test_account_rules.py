"""The accounts service's rules and audit: who may change which account, and that every change
made on someone's behalf is in the audit log, written in the same transaction as the change.

Two kinds of actor: an organisation's admin (the web app: an account, acting in one
organisation) and the server's operator (`headwater user ...`: trusted with every organisation)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_web import FAST_HASHER
from sqlalchemy import select

from headwater.system import SystemDB, audit
from headwater.system.accounts import AccountError, AccountNotFound, Accounts, Actor, DuplicateEmail, NotPermitted
from headwater.system.models import AuditEntry, Organisation

PASSWORD = "correct horse battery staple"
OPERATOR = Actor.operator("cli:ops")


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    db = SystemDB(f"sqlite:///{tmp_path / 'system.db'}")
    with db.session() as session:
        session.add(Organisation(slug="acme", name="Acme", created_at=dt.datetime.now(dt.UTC)))
        session.commit()
    yield Accounts(db, hasher=FAST_HASHER)
    db.close()


def admin_of(accounts: Accounts, email: str = "boss@example.org", org: str = "default") -> Actor:
    account = accounts.create_user(email, PASSWORD, "admin", org=org)
    return Actor.admin(account.email, account.id, org=org, ip="10.0.0.1")


def entries(accounts: Accounts) -> list[tuple[str | None, str, str, str, dict[str, object]]]:
    with accounts.db.session() as session:
        slugs = [None, *session.scalars(select(Organisation.slug))]
    events = sorted((e for slug in slugs for e in audit.query(accounts.db, slug, limit=1000)), key=lambda e: e.id)
    return [(e.org, e.actor, e.action, e.target, e.detail) for e in events]


# --- audit in the same transaction --------------------------------------------------------------


def test_changes_by_an_actor_are_audited_in_each_organisation_they_touch(accounts: Accounts) -> None:
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default", attributes={"region": ["North"]}, actor=OPERATOR)
    accounts.add_member("ana@example.org", "analyst", org="acme", actor=OPERATOR)
    accounts.set_role("ana@example.org", "admin", org="acme", actor=OPERATOR)
    accounts.set_password("ana@example.org", PASSWORD + " two", actor=OPERATOR)
    accounts.set_disabled("ana@example.org", True, actor=OPERATOR)
    accounts.set_disabled("ana@example.org", False, actor=OPERATOR)
    accounts.invite("cy@example.org", "viewer", org="acme", actor=OPERATOR)
    assert entries(accounts) == [
        ("default", "cli:ops", "user_added", "ana@example.org", {"role": "viewer", "attributes": {"region": ["North"]}}),
        ("acme", "cli:ops", "user_added", "ana@example.org", {"role": "analyst"}),
        ("acme", "cli:ops", "role_changed", "ana@example.org", {"role": "admin"}),
        ("acme", "cli:ops", "password_changed", "ana@example.org", {}),
        ("default", "cli:ops", "password_changed", "ana@example.org", {}),
        ("acme", "cli:ops", "user_disabled", "ana@example.org", {}),
        ("default", "cli:ops", "user_disabled", "ana@example.org", {}),
        ("acme", "cli:ops", "user_enabled", "ana@example.org", {}),
        ("default", "cli:ops", "user_enabled", "ana@example.org", {}),
        ("acme", "cli:ops", "invitation_created", "cy@example.org", {"role": "viewer"}),
    ]


def test_an_admins_entries_name_them_and_their_address(accounts: Accounts) -> None:
    boss = admin_of(accounts)
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default", actor=boss)
    with accounts.db.session() as session:
        ips = set(session.scalars(select(AuditEntry.ip)))
    assert entries(accounts) == [("default", "boss@example.org", "user_added", "ana@example.org", {"role": "viewer"})]
    assert ips == {"10.0.0.1"}


def test_a_change_that_is_refused_leaves_no_entry(accounts: Accounts) -> None:
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default", actor=OPERATOR)
    with pytest.raises(DuplicateEmail):
        accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default", actor=OPERATOR)
    with pytest.raises(AccountError):
        accounts.set_role("ana@example.org", "boss", org="default", actor=OPERATOR)
    assert [e[2] for e in entries(accounts)] == ["user_added"]


def test_an_accepted_invitation_is_audited_as_the_invitee(accounts: Accounts) -> None:
    token = accounts.invite("new@example.org", "analyst", org="acme", created_by="test")
    accounts.accept_invitation(token, PASSWORD, ip="10.0.0.9")
    assert entries(accounts) == [("acme", "new@example.org", "invitation_accepted", "new@example.org", {"role": "analyst"})]


def test_changes_without_an_actor_are_not_audited(accounts: Accounts) -> None:
    """Setting up (the demo's accounts, test fixtures) is nobody's action in the log."""
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default")
    accounts.set_role("ana@example.org", "admin", org="default")
    assert entries(accounts) == []


# --- an organisation's admin ---------------------------------------------------------------------


def test_an_admin_cannot_change_their_own_role_or_disable_themselves(accounts: Accounts) -> None:
    boss = admin_of(accounts)
    with pytest.raises(AccountError, match="You cannot change your own role here"):
        accounts.set_role("boss@example.org", "viewer", org="default", actor=boss)
    with pytest.raises(AccountError, match="You cannot disable your own account here"):
        accounts.set_disabled("boss@example.org", True, actor=boss)
    with pytest.raises(AccountError, match="You cannot change your own password here"):
        accounts.set_password("boss@example.org", PASSWORD + " two", actor=boss)
    assert accounts.get("boss@example.org").role == "admin" and not accounts.get("boss@example.org").disabled
    assert entries(accounts) == []


def test_an_admin_acts_only_on_members_of_their_organisation(accounts: Accounts) -> None:
    boss = admin_of(accounts, org="acme")
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default")
    with pytest.raises(AccountNotFound, match=r"ana@example\.org is not a member of acme"):
        accounts.set_role("ana@example.org", "admin", org="acme", actor=boss)
    with pytest.raises(AccountNotFound, match="not a member of acme"):
        accounts.set_disabled("ana@example.org", True, actor=boss)
    with pytest.raises(AccountError, match="is not an admin of default"):
        accounts.set_role("ana@example.org", "viewer", org="default", actor=boss)  # an admin of acme, not of default
    assert accounts.organisations_of("ana@example.org") == ["default"] and not accounts.get("ana@example.org").disabled


def test_an_admin_cannot_disable_someone_who_also_belongs_elsewhere(accounts: Accounts) -> None:
    boss = admin_of(accounts, org="acme")
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default")
    accounts.add_member("ana@example.org", "viewer", org="acme")
    with pytest.raises(AccountError, match=r"ana@example\.org cannot be disabled here"):
        accounts.set_disabled("ana@example.org", True, actor=boss)
    with pytest.raises(AccountError, match=r"The password of ana@example\.org cannot be changed here"):
        accounts.set_password("ana@example.org", PASSWORD + " two", actor=boss)
    assert not accounts.get("ana@example.org").disabled


def test_an_admin_may_change_a_member_of_their_organisation_only(accounts: Accounts) -> None:
    boss = admin_of(accounts, org="acme")
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="acme")
    assert accounts.set_role("ana@example.org", "analyst", org="acme", actor=boss).role == "analyst"
    assert accounts.set_disabled("ana@example.org", True, actor=boss).disabled
    assert [e[2] for e in entries(accounts)] == ["role_changed", "user_disabled"]


def test_an_admin_cannot_join_an_existing_account_to_their_organisation(accounts: Accounts) -> None:
    """Only the person can agree to join another organisation: an admin invites them (they accept
    with their own password); the server's operator, trusted with every organisation, may join them."""
    boss = admin_of(accounts, org="acme")
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default")
    with pytest.raises(DuplicateEmail) as refused:
        accounts.add_member("ana@example.org", "viewer", org="acme", actor=boss)
    assert "Invite them" in refused.value.render()
    assert accounts.organisations_of("ana@example.org") == ["default"]
    accounts.add_member("ana@example.org", "viewer", org="acme", actor=OPERATOR)
    assert accounts.organisations_of("ana@example.org") == ["acme", "default"]


def test_an_admin_acts_in_their_own_organisation_only(accounts: Accounts) -> None:
    boss = admin_of(accounts, org="acme")
    with pytest.raises(AccountError, match=r"boss@example\.org is not an admin of default"):
        accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default", actor=boss)
    with pytest.raises(AccountError, match="is not an admin of default"):
        accounts.invite("ana@example.org", "viewer", org="default", actor=boss)
    assert not accounts.exists("ana@example.org")


def test_an_account_acting_in_no_organisation_changes_no_whole_account(accounts: Accounts) -> None:
    """An actor with an account but no organisation is no one's admin: refused as such (this was an
    assert, which `python -O` removes)."""
    boss = accounts.create_user("boss@example.org", PASSWORD, "admin", org="default")
    nowhere = Actor(boss.email, boss.id)
    accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default")
    with pytest.raises(NotPermitted, match="acts in no organisation"):
        accounts.set_disabled("ana@example.org", True, actor=nowhere)
    assert not accounts.get("ana@example.org").disabled


# --- the server's operator -----------------------------------------------------------------------


def test_the_operator_manages_any_account_in_any_organisation(accounts: Accounts) -> None:
    """The operator is not an account (nothing of theirs to lock out) and answers for the whole
    server, so the admin's rules do not bind them: `headwater user disable` is the admin's way out."""
    accounts.create_user("ana@example.org", PASSWORD, "admin", org="default")
    accounts.add_member("ana@example.org", "viewer", org="acme")
    assert accounts.set_role("ana@example.org", "viewer", org="default", actor=OPERATOR).role == "viewer"
    assert accounts.set_role("ana@example.org", "analyst", org="acme", actor=OPERATOR).role == "analyst"
    assert accounts.set_disabled("ana@example.org", True, actor=OPERATOR).disabled


def test_a_member_is_found_by_number_only_in_their_organisation(accounts: Accounts) -> None:
    ana = accounts.create_user("ana@example.org", PASSWORD, "viewer", org="default")
    assert accounts.member(ana.id, org="default").email == "ana@example.org"
    with pytest.raises(AccountNotFound, match=f"No account number {ana.id} in this organisation"):
        accounts.member(ana.id, org="acme")
    with pytest.raises(AccountNotFound, match="No account number 999 in this organisation"):
        accounts.member(999, org="default")

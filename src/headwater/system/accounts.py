"""Accounts: users, their roles, passwords, login sessions and the login rate limiter.

A service over the system database with no web framework in it; the web app (`web/auth.py`) and
the `headwater user` commands both use it.

- Passwords are hashed with argon2id (argon2-cffi's `PasswordHasher`, RFC 9106 low-memory profile);
  a hash made with older parameters is replaced at the next successful login.
- A session is a random 32-byte token in a cookie. The database keeps only its SHA-256, so a copy of
  the database cannot be used to log in. Sessions end after `Policy.idle_timeout` without a request
  and `Policy.absolute_timeout` after login, at logout, when the password changes and when the user
  is disabled. Each session has its own CSRF token.
- Roles are per organisation (`memberships`): a person may belong to several organisations with a
  role in each (viewer < analyst < admin), and row-level attributes in each (``{"region": ["North"]}``,
  see dashboards/scope.py). A one-project install has one organisation, `default`.
- Invitations: a one-time link to join an organisation with a role. The link's token is 32 random
  bytes; only its SHA-256 is stored, it expires, and it works once, for the address it was made for.
- Failed logins are recorded in the system database (`login_failures`), so the limit holds across
  restarts and across processes serving the same database, and costs nothing in memory.
- Who may change an account (`Actor`): an organisation's admin (the web app) changes members of
  their own organisation only, never their own account, never a person's account in a way that
  reaches into other organisations (disabling, a new password), and brings an existing account into
  their organisation only by invitation; the server's operator (`headwater user`) may do all of it.
  A change made by an actor is written to the audit log in the same transaction as the change, so
  none is made unaudited; without an actor (setting up: the demo, tests) nothing is audited.

Passwords and tokens are never logged, and never part of an error message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from headwater.errors import HeadwaterError, NotFound
from headwater.system import audit
from headwater.system.db import SystemDB
from headwater.system.models import Invitation, LoginFailure, LoginSession, Membership, Organisation, User
from headwater.system.orgs import DEFAULT_ORG, clean_attributes

logger = logging.getLogger("headwater.accounts")

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 hashes any length; a cap keeps a request from making it hash megabytes
MAX_EMAIL = 254
INVITATION_TTL = dt.timedelta(days=7)
Attributes = Mapping[str, Sequence[str]]


class Role(StrEnum):
    viewer = "viewer"  # sees dashboards, downloads and exports
    analyst = "analyst"  # also runs pipelines and reads run history and logs
    admin = "admin"  # also manages sources, secrets and users

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return self.rank >= needed.rank


ROLE_NAMES = ", ".join(Role)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Policy:
    idle_timeout: dt.timedelta = dt.timedelta(hours=12)
    absolute_timeout: dt.timedelta = dt.timedelta(days=7)
    max_failures: int = 5  # failed logins per e-mail address and client address within the window
    max_failures_per_ip: int = 50  # per client address, whatever the e-mail: password spraying
    # Past that, the address is slowed down, not locked out: one NAT may be a whole office, whose
    # right passwords must still get in. It may fail this many times a minute until the window passes.
    attempts_per_minute_over_ip_limit: int = 5
    failure_window: dt.timedelta = dt.timedelta(minutes=15)
    touch_every: dt.timedelta = dt.timedelta(minutes=1)  # how stale last_seen_at may get (saves writes)


# --- errors -------------------------------------------------------------------------------------


class AccountError(HeadwaterError):
    """A request about accounts that cannot be done as asked (exit code 2 in the CLI)."""


class InvalidEmail(AccountError):
    pass


class WeakPassword(AccountError):
    pass


class DuplicateEmail(AccountError):
    pass


class UnknownRole(AccountError):
    pass


class AccountNotFound(NotFound):
    pass


class NotPermitted(AccountError):
    """A change this actor may not make (their own account, another organisation's people)."""


class InvitationInvalid(AccountError):
    """An invitation link that is unknown, used or expired: the message never says which."""

    def __init__(self) -> None:
        super().__init__("This invitation link does not work", why="it was already used, it expired, or it was copied incompletely", fix="Ask whoever invited you for a new link.")


class LoginFailed(AccountError):
    """Wrong e-mail or password: the message never says which."""

    def __init__(self) -> None:
        super().__init__("Wrong e-mail address or password", fix="Check both and try again; an admin can reset a forgotten password.")


class AccountDisabled(AccountError):
    def __init__(self) -> None:
        super().__init__("This account is disabled", fix="Ask an admin of this Headwater to enable it again.")


class TooManyAttempts(AccountError):
    def __init__(self, retry_after: dt.timedelta, *, why: str = "several wrong passwords were tried for this account from your address in the last minutes") -> None:
        self.retry_after_seconds = max(1, int(retry_after.total_seconds() + 0.999))
        minutes = (self.retry_after_seconds + 59) // 60
        super().__init__(
            "Too many failed logins",
            why=why,
            fix=f"Wait {minutes} minute{'s' if minutes != 1 else ''} and try again; an admin can reset a forgotten password.",
        )


# --- values -------------------------------------------------------------------------------------


def _aware(at: dt.datetime) -> dt.datetime:
    """A time read back from the database in UTC (SQLite forgets the zone)."""
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at


def normalise_email(email: str) -> str:
    """The one spelling of an address that is stored and compared: trimmed, NFKC, lower case.

    Lower-casing the local part is what people expect ("Ana@Org.org" is Ana), even though RFC 5321
    leaves it to the mail server."""
    value = unicodedata.normalize("NFKC", email).strip().lower()
    local, at, domain = value.rpartition("@")
    problem = None
    if not at or not local or not domain:
        problem = "it needs a name, an @ and a domain, like ana@example.org"
    elif len(value) > MAX_EMAIL or len(local) > 64:
        problem = f"it is longer than {MAX_EMAIL} characters (or its part before @ than 64)"
    elif "@" in local or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in value):
        problem = "it contains a space, a second @ or a control character"
    elif "." not in domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        problem = "its domain (after the @) is not a domain name, like example.org"
    if problem:
        raise InvalidEmail(f"'{email.strip()[:80]}' is not an e-mail address", why=problem)
    return value


def parse_role(role: str) -> Role:
    try:
        return Role(role.strip().lower())
    except ValueError:
        raise UnknownRole(f"No role named '{role}'", fix=f"Roles: {ROLE_NAMES} (each can do everything the ones before it can).") from None


def check_password(password: str, email: str | None = None) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"The password is too short: at least {MIN_PASSWORD} characters, please", fix="A few unrelated words make a long password that is easy to type.")
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"The password is too long: at most {MAX_PASSWORD} characters")
    if not password.strip():
        raise WeakPassword("The password is only spaces")
    if email is not None and password.strip().lower() == email.lower():
        raise WeakPassword("The password is the e-mail address")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    role: Role | None  # in the organisation asked about; None: not a member
    disabled: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # row-level, in that organisation


@dataclass(frozen=True)
class MemberOf:
    """One of a user's organisations: its slug and title, the user's role and attributes there."""

    slug: str
    title: str
    role: Role
    attributes: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class SessionUser:
    """Who a valid session belongs to, as the web app needs it on every request.

    ``role`` and ``attributes`` are those in organisation ``org`` (None: not a member, or no
    organisation in question); ``memberships`` lists every organisation of the user."""

    session_id: int
    user_id: int
    email: str
    role: Role | None
    csrf_token: str
    org: str | None = DEFAULT_ORG
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    memberships: tuple[MemberOf, ...] = ()

    def can(self, role: Role | str) -> bool:
        return self.role is not None and self.role.allows(Role(role))

    def in_org(self, slug: str | None) -> SessionUser:
        """The same user as a member of ``slug`` (role None when not a member)."""
        member = next((m for m in self.memberships if m.slug == slug), None)
        return replace(self, org=slug, role=member.role if member else None, attributes=member.attributes if member else {})


@dataclass(frozen=True)
class Actor:
    """Who asks for an account change: named so in the audit log, and bound by the rules of their kind.

    An organisation's admin (``Actor.admin``) is an account acting in one organisation; the
    server's operator (``Actor.operator``, `headwater user` on the server) is trusted with all."""

    name: str  # the audit log's actor: the admin's e-mail, or `audit.cli_actor()`
    user_id: int | None = None  # the admin's own account; None: the operator
    org: str | None = None  # the organisation the admin acts in
    ip: str | None = None  # where the request came from (web only)

    @classmethod
    def operator(cls, name: str) -> Actor:
        return cls(name)

    @classmethod
    def admin(cls, email: str, user_id: int, *, org: str, ip: str | None = None) -> Actor:
        return cls(email, user_id, org, ip)

    @property
    def is_operator(self) -> bool:
        return self.user_id is None


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie; not stored anywhere on the server
    user: SessionUser


@dataclass(frozen=True)
class InvitationView:
    """An open invitation as its page shows it (never the token)."""

    org: str
    org_title: str
    email: str
    role: Role
    expires_at: dt.datetime
    has_account: bool  # the address has an account already: accepting asks for its password


# --- the service --------------------------------------------------------------------------------


class Accounts:
    def __init__(self, db: SystemDB, *, policy: Policy | None = None, clock: Callable[[], dt.datetime] = now_utc, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.policy = policy or Policy()
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    @property
    def _dummy_hash(self) -> str:
        """Unknown e-mail addresses are checked against this, so they take as long as known ones."""
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    def _now(self) -> dt.datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the accounts clock must return aware datetimes")
        return now

    # users

    def check_new(self, email: str, role: Role | str = Role.viewer) -> None:
        """Raise InvalidEmail, UnknownRole or DuplicateEmail as create_user would (before asking for a password)."""
        email, role = normalise_email(email), parse_role(role)
        with self.db.session() as session:
            self._refuse_duplicate(session, email, role)

    def _refuse_duplicate(self, session: Session, email: str, role: Role) -> None:
        if session.scalar(select(User.id).where(User.email == email)) is not None:
            raise DuplicateEmail(f"There is already an account for {email}", fix=f"Change its role with `headwater user set-role {email} {role}`, or its password with `headwater user set-password {email}`.")

    def create_user(self, email: str, password: str, role: Role | str = Role.viewer, *, org: str = DEFAULT_ORG, attributes: Attributes | None = None, actor: Actor | None = None) -> Account:
        email = normalise_email(email)
        role = parse_role(role)
        check_password(password, email)
        stored = _attributes_json(attributes)
        now = self._now()
        with self.db.session() as session:
            self._refuse_outsider(session, actor, org)
            self._refuse_duplicate(session, email, role)
            user = User(email=email, password_hash=self.hasher.hash(password), created_at=now, password_changed_at=now)
            session.add(user)
            try:
                session.flush()
            except IntegrityError:  # created by someone else between the check and here
                raise DuplicateEmail(f"There is already an account for {email}") from None
            session.add(Membership(user_id=user.id, org_id=self._org_id(session, org), role=role.value, created_at=now, attributes=stored))
            self._audit(session, actor, org, "user_added", email, _role_detail(role, stored))
            session.commit()
            logger.info("account created: %s (%s in %s)", email, role, org)
            return self._account(session, user, org)

    def exists(self, email: str) -> bool:
        with self.db.session() as session:
            return session.scalar(select(User.id).where(User.email == normalise_email(email))) is not None

    def add_member(self, email: str, role: Role | str, *, org: str, attributes: Attributes | None = None, actor: Actor | None = None) -> Account:
        """Make an existing account a member of ``org`` (a person in several organisations).
        DuplicateEmail if they are a member already: their role is changed with set_role.

        Only the operator may: joining must be the person's own choice, so an organisation's admin
        invites them instead (they accept with their own password)."""
        role = parse_role(role)
        stored = _attributes_json(attributes)
        with self.db.session() as session:
            self._refuse_outsider(session, actor, org)
            user = self._user(session, email)
            org_id = self._org_id(session, org)
            if session.get(Membership, (user.id, org_id)) is not None:
                raise DuplicateEmail(f"{user.email} is already a member of {org}", fix=f"Change their role with `headwater user set-role {user.email} {role} --org {org}`.")
            if actor is not None and not actor.is_operator:
                raise DuplicateEmail(
                    f"There is already an account for {user.email}",
                    why="it belongs to another organisation of this Headwater, and only its owner can agree to join yours",
                    fix="Invite them instead: they accept the link with the password they already have.",
                )
            session.add(Membership(user_id=user.id, org_id=org_id, role=role.value, created_at=self._now(), attributes=stored))
            self._audit(session, actor, org, "user_added", user.email, _role_detail(role, stored))
            session.commit()
            logger.info("%s joined %s as %s", user.email, org, role)
            return self._account(session, user, org)

    def get(self, email: str, *, org: str = DEFAULT_ORG) -> Account:
        with self.db.session() as session:
            user = self._user(session, email)
            return self._account(session, user, org)

    def list_users(self, *, org: str = DEFAULT_ORG) -> list[Account]:
        """The members of ``org`` (never the people of other organisations)."""
        with self.db.session() as session:
            query = select(User).join(Membership, Membership.user_id == User.id).join(Organisation, Organisation.id == Membership.org_id).where(Organisation.slug == org)
            return [self._account(session, user, org) for user in session.scalars(query.order_by(User.email))]

    def set_role(self, email: str, role: Role | str, *, org: str = DEFAULT_ORG, attributes: Attributes | None = None, actor: Actor | None = None) -> Account:
        """Set the role (and, unless None, the row-level attributes) of ``email`` in ``org``; an
        account that is not a member becomes one (by the operator's hand only: an admin changes
        members of their organisation, not their own role)."""
        with self.db.session() as session:
            user = self._user(session, email)
            self._refuse_outsider(session, actor, org)
            self._refuse_own(actor, user, "change your own role")
            role = parse_role(role)
            stored = _attributes_json(attributes) if attributes is not None else None
            org_id = self._org_id(session, org)
            membership = session.get(Membership, (user.id, org_id))
            if membership is None and actor is not None and not actor.is_operator:
                raise _not_a_member(user.email, org)
            if membership is None:
                session.add(Membership(user_id=user.id, org_id=org_id, role=role.value, created_at=self._now(), attributes=stored))
            else:
                membership.role = role.value
                if attributes is not None:
                    membership.attributes = stored
            self._audit(session, actor, org, "role_changed", user.email, {"role": role.value} | ({"attributes": _attributes(stored)} if attributes is not None else {}))
            session.commit()
            logger.info("role of %s in %s set to %s", user.email, org, role)
            return self._account(session, user, org)

    def member(self, user_id: int, *, org: str) -> Account:
        """Account number ``user_id`` as a member of ``org``. People who are not members are not
        found, whatever their number: an organisation learns nothing of another's."""
        with self.db.session() as session:
            user = session.get(User, user_id)
            if user is not None and any(m.slug == org for m in self._memberships(session, user.id)):
                return self._account(session, user, org)
        raise AccountNotFound(f"No account number {user_id} in this organisation", fix="The users page lists the accounts.")

    def organisations_of(self, email: str) -> list[str]:
        """The slugs of the organisations ``email`` belongs to."""
        with self.db.session() as session:
            user = self._user(session, email)
            return [m.slug for m in self._memberships(session, user.id)]

    def set_password(self, email: str, password: str, *, actor: Actor | None = None) -> None:
        """A new password ends every session of the account."""
        with self.db.session() as session:
            user = self._user(session, email)
            orgs = self._refuse_beyond(session, actor, user, "change your own password", f"The password of {user.email} cannot be changed here", "a new password logs them out", "set-password")
            check_password(password, user.email)
            now = self._now()
            user.password_hash = self.hasher.hash(password)
            user.password_changed_at = now
            self._revoke_all(session, user.id, now)
            for org in orgs:
                self._audit(session, actor, org, "password_changed", user.email)
            session.commit()
            logger.info("password of %s changed; its sessions were ended", user.email)

    def set_disabled(self, email: str, disabled: bool = True, *, actor: Actor | None = None) -> Account:
        """A disabled account cannot log in, and its sessions end at once."""
        with self.db.session() as session:
            user = self._user(session, email)
            orgs = self._refuse_beyond(session, actor, user, "disable your own account", f"{user.email} cannot be disabled here", "disabling an account locks them out", "disable")
            now = self._now()
            if disabled and user.disabled_at is None:
                user.disabled_at = now
                self._revoke_all(session, user.id, now)
            elif not disabled:
                user.disabled_at = None
            for org in orgs:
                self._audit(session, actor, org, "user_disabled" if disabled else "user_enabled", user.email)
            session.commit()
            logger.info("account %s %s", user.email, "disabled" if disabled else "enabled")
            return self._account(session, user, DEFAULT_ORG)

    # invitations

    def invite(
        self, email: str, role: Role | str, *, org: str, created_by: str | None = None, attributes: Attributes | None = None, ttl: dt.timedelta = INVITATION_TTL, actor: Actor | None = None
    ) -> str:
        """A one-time invitation for ``email`` to join ``org``; returns the link's token (shown once,
        stored only as its SHA-256). ``created_by`` defaults to the actor's name."""
        email, role = normalise_email(email), parse_role(role)
        stored = _attributes_json(attributes)
        now = self._now()
        token = secrets.token_urlsafe(32)
        created_by = created_by or (actor.name if actor else None)
        if created_by is None:
            raise ValueError("an invitation needs created_by or an actor: who made it")
        with self.db.session() as session:
            self._refuse_outsider(session, actor, org)
            session.add(Invitation(token_hash=hash_token(token), org_id=self._org_id(session, org), email=email, role=role.value, attributes=stored, created_by=created_by[:254], created_at=now, expires_at=now + ttl))
            self._audit(session, actor, org, "invitation_created", email, {"role": role.value})
            session.commit()
        logger.info("invitation for %s to %s as %s, by %s", email, org, role, created_by)
        return token

    def invitation(self, token: str | None) -> InvitationView:
        """The open invitation of this token, or InvitationInvalid."""
        with self.db.session() as session:
            found, org = self._open_invitation(session, token)
            has_account = session.scalar(select(User.id).where(User.email == found.email)) is not None
            return InvitationView(org.slug, org.name, found.email, Role(found.role), found.expires_at, has_account)

    def accept_invitation(self, token: str | None, password: str, *, ip: str, user_agent: str | None = None) -> NewSession:
        """Join the invitation's organisation and log in. A new address gets an account with
        ``password``; an existing account must give its own password (checked as a login is,
        rate limit included). The invitation works once."""
        view = self.invitation(token)
        if view.has_account:
            self.login(view.email, password, ip=ip, user_agent=user_agent, org=view.org)  # proves who they are
        else:
            check_password(password, view.email)
        now = self._now()
        with self.db.session() as session:
            found, org = self._open_invitation(session, token)
            claimed = session.execute(update(Invitation).where(Invitation.id == found.id, Invitation.accepted_at.is_(None)).values(accepted_at=now))
            if cast("CursorResult[Any]", claimed).rowcount != 1:  # accepted by a concurrent request (an UPDATE's result is a cursor's)
                raise InvitationInvalid()
            user = session.scalar(select(User).where(User.email == found.email))
            if user is None:
                user = User(email=found.email, password_hash=self.hasher.hash(password), created_at=now, password_changed_at=now)
                session.add(user)
                session.flush()
            membership = session.get(Membership, (user.id, org.id))
            if membership is None:
                session.add(Membership(user_id=user.id, org_id=org.id, role=found.role, created_at=now, attributes=found.attributes))
            else:
                membership.role, membership.attributes = found.role, found.attributes
            audit.add(session, org=org.slug, actor=found.email, action="invitation_accepted", target=found.email, detail={"role": found.role}, ip=ip[:45])
            session.commit()
            logger.info("invitation accepted: %s joined %s as %s", found.email, org.slug, found.role)
        return self.login(view.email, password, ip=ip, user_agent=user_agent, org=view.org)

    def _open_invitation(self, session: Session, token: str | None) -> tuple[Invitation, Organisation]:
        if not token or len(token) > 128:
            raise InvitationInvalid()
        row = session.execute(select(Invitation, Organisation).join(Organisation, Organisation.id == Invitation.org_id).where(Invitation.token_hash == hash_token(token))).one_or_none()
        if row is None or row[0].accepted_at is not None or row[0].expires_at <= self._now():
            raise InvitationInvalid()
        return row[0], row[1]

    # logging in

    def login(self, email: str, password: str, *, ip: str, user_agent: str | None = None, org: str = DEFAULT_ORG) -> NewSession:
        """Check the password and start a session, or raise LoginFailed / TooManyAttempts / AccountDisabled."""
        now = self._now()
        try:
            key = normalise_email(email)
        except InvalidEmail:
            key = email.strip().lower()[:MAX_EMAIL]
        ip = ip[:45]
        self._check_rate(key, ip, now)
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.email == key))
            if user is None or len(password) > MAX_PASSWORD:
                self._verify(self._dummy_hash, password[:MAX_PASSWORD])  # as slow as a real check
                self._record_failure(session, key, ip, now)
                raise LoginFailed()
            if not self._verify(user.password_hash, password):
                self._record_failure(session, key, ip, now)
                raise LoginFailed()
            if user.disabled_at is not None:
                raise AccountDisabled()
            if self.hasher.check_needs_rehash(user.password_hash):
                user.password_hash = self.hasher.hash(password)
            user.last_login_at = now
            session.execute(delete(LoginFailure).where(LoginFailure.email == key, LoginFailure.ip == ip))
            self._purge(session, now)
            token = secrets.token_urlsafe(32)
            record = LoginSession(
                user_id=user.id, token_hash=hash_token(token), csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
                ip=ip, user_agent=(user_agent or "")[:255] or None,
            )  # fmt: skip
            session.add(record)
            session.commit()
            logger.info("login: %s from %s", user.email, ip)
            return NewSession(token, self._session_user(session, record, user, org))

    def session_user(self, token: str | None, *, org: str | None = DEFAULT_ORG) -> SessionUser | None:
        """Who the session with this cookie token belongs to (as a member of ``org``), or None if
        there is no such live session."""
        if not token or len(token) > 128:
            return None
        now = self._now()
        with self.db.session() as session:
            row = session.execute(select(LoginSession, User).join(User, User.id == LoginSession.user_id).where(LoginSession.token_hash == hash_token(token))).one_or_none()
            if row is None:
                return None
            record, user = row
            if not self._live(record, now) or user.disabled_at is not None:
                return None
            if now - record.last_seen_at >= self.policy.touch_every:
                record.last_seen_at = now
                session.commit()
            return self._session_user(session, record, user, org)

    def logout(self, token: str | None) -> None:
        if not token:
            return
        with self.db.session() as session:
            session.execute(update(LoginSession).where(LoginSession.token_hash == hash_token(token), LoginSession.revoked_at.is_(None)).values(revoked_at=self._now()))
            session.commit()

    def live_sessions(self, email: str) -> int:
        now = self._now()
        with self.db.session() as session:
            user = self._user(session, email)
            return sum(self._live(s, now) for s in session.scalars(select(LoginSession).where(LoginSession.user_id == user.id)))

    # helpers

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _live(self, record: LoginSession, now: dt.datetime) -> bool:
        return record.revoked_at is None and now - record.last_seen_at < self.policy.idle_timeout and now - record.created_at < self.policy.absolute_timeout

    def _check_rate(self, email: str, ip: str, now: dt.datetime) -> None:
        """Two sliding windows (a limit lifts when the oldest failure in it ages out): an account
        from an address is locked after ``max_failures``; an address past ``max_failures_per_ip``
        gets ``attempts_per_minute_over_ip_limit`` a minute, so its right passwords still get in."""
        policy, minute = self.policy, dt.timedelta(minutes=1)
        with self.db.session() as session:
            count, oldest = self._failures(session, (LoginFailure.email == email) & (LoginFailure.ip == ip), now - policy.failure_window)
            if count >= policy.max_failures:
                logger.warning("login rate limit hit for %s from %s", email, ip)
                raise TooManyAttempts(oldest + policy.failure_window - now)
            if self._failures(session, LoginFailure.ip == ip, now - policy.failure_window)[0] < policy.max_failures_per_ip:
                return
            recent = [_aware(at) for at in session.scalars(select(LoginFailure.at).where(LoginFailure.ip == ip, LoginFailure.at > now - minute).order_by(LoginFailure.at))]
            allowed = policy.attempts_per_minute_over_ip_limit
            if len(recent) >= allowed:  # free again when all but allowed - 1 of them are a minute old
                logger.warning("login slowed down for %s: more than %d failed logins from it in the last minutes", ip, policy.max_failures_per_ip)
                raise TooManyAttempts(recent[len(recent) - allowed] + minute - now, why="many wrong passwords were tried from your address (a shared office network counts as one), so it gets a few attempts a minute")

    @staticmethod
    def _failures(session: Session, condition: Any, since: dt.datetime) -> tuple[int, dt.datetime]:
        """How many failed logins match ``condition`` since ``since``, and the oldest of them."""
        count, oldest = session.execute(select(func.count(), func.min(LoginFailure.at)).where(condition, LoginFailure.at > since)).one()
        return count, _aware(oldest) if oldest is not None else oldest

    def _record_failure(self, session: Session, email: str, ip: str, now: dt.datetime) -> None:
        session.add(LoginFailure(email=email, ip=ip, at=now))
        session.commit()
        logger.info("failed login for %s from %s", email, ip)

    def _purge(self, session: Session, now: dt.datetime) -> None:
        """Forget failures outside any window and sessions long over (kept a while for the record)."""
        session.execute(delete(LoginFailure).where(LoginFailure.at < now - max(self.policy.failure_window, dt.timedelta(days=1))))
        keep = now - self.policy.absolute_timeout - dt.timedelta(days=30)
        session.execute(delete(LoginSession).where(LoginSession.created_at < keep))

    def _revoke_all(self, session: Session, user_id: int, now: dt.datetime) -> None:
        session.execute(update(LoginSession).where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None)).values(revoked_at=now))

    # rules and their audit

    def _audit(self, session: Session, actor: Actor | None, org: str, action: str, target: str, detail: Mapping[str, object] | None = None) -> None:
        """The audit entry of a change made by ``actor``, in the change's own transaction."""
        if actor is not None:
            audit.add(session, org=org, actor=actor.name, action=action, target=target, detail=detail, ip=actor.ip)

    def _refuse_outsider(self, session: Session, actor: Actor | None, org: str) -> None:
        """An admin acts in the organisation they are an admin of, and no other."""
        if actor is None or actor.is_operator:
            return
        role = session.scalar(select(Membership.role).join(Organisation, Organisation.id == Membership.org_id).where(Membership.user_id == actor.user_id, Organisation.slug == org))
        if actor.org != org or role != Role.admin.value:
            raise NotPermitted(f"{actor.name} is not an admin of {org}", fix="Ask an admin of that organisation, or the server's operator (`headwater user`).")

    @staticmethod
    def _refuse_own(actor: Actor | None, user: User, action: str) -> None:
        """No admin locks themselves out, and there is always an admin left: the one acting."""
        if actor is not None and actor.user_id == user.id:
            raise NotPermitted(
                f"You cannot {action} here",
                why="an admin who demotes or disables themselves could leave no one to manage accounts",
                fix="Ask another admin, or use `headwater user` on the server.",
            )

    def _refuse_beyond(self, session: Session, actor: Actor | None, user: User, own: str, elsewhere: str, effect: str, command: str) -> list[str]:
        """The organisations a change to the whole account touches (all of the person's), after the
        rules for an admin: not their own account, a member of their organisation, and of no
        other: one organisation's admin may not lock a person out of the others."""
        orgs = [m.slug for m in self._memberships(session, user.id)]
        if actor is None or actor.is_operator:
            return orgs
        self._refuse_own(actor, user, own)
        if actor.org is None:  # an admin acts in an organisation: one who names none has no admin's rights
            raise NotPermitted(f"{actor.name} acts in no organisation", fix="Act as an admin of one of the person's organisations, or use `headwater user` on the server.")
        self._refuse_outsider(session, actor, actor.org)
        if actor.org not in orgs:
            raise _not_a_member(user.email, actor.org)
        if len(orgs) > 1:
            raise NotPermitted(
                elsewhere,
                why=f"they also belong to other organisations of this Headwater, and {effect} of all of them",
                fix=f"Change their role here instead, or ask the server's operator: headwater user {command} {user.email}.",
            )
        return orgs

    def _user(self, session: Session, email: str) -> User:
        key = normalise_email(email)
        user = session.scalar(select(User).where(User.email == key))
        if user is None:
            raise AccountNotFound(f"No account for {key}", fix=f"`headwater user list` shows the accounts; `headwater user add {key} --role viewer` creates one.")
        return user

    def _org_id(self, session: Session, slug: str) -> int:
        org_id = session.scalar(select(Organisation.id).where(Organisation.slug == slug))
        if org_id is None:
            raise NotFound(f"No organisation '{slug}'")
        return org_id

    def _memberships(self, session: Session, user_id: int) -> tuple[MemberOf, ...]:
        query = (
            select(Organisation.slug, Organisation.name, Membership.role, Membership.attributes)
            .join(Organisation, Organisation.id == Membership.org_id)
            .where(Membership.user_id == user_id)
            .order_by(Organisation.slug)
        )
        return tuple(MemberOf(slug, name, Role(role), _attributes(stored)) for slug, name, role, stored in session.execute(query))

    def _session_user(self, session: Session, record: LoginSession, user: User, org: str | None) -> SessionUser:
        base = SessionUser(record.id, user.id, user.email, None, record.csrf_token, memberships=self._memberships(session, user.id))
        return base.in_org(org)

    def _account(self, session: Session, user: User, org: str) -> Account:
        member = next((m for m in self._memberships(session, user.id) if m.slug == org), None)
        role, attributes = (member.role, member.attributes) if member else (None, {})
        return Account(user.id, user.email, role, user.disabled_at is not None, user.created_at, user.last_login_at, attributes)


def tokens_match(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens; a missing one never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())  # type: ignore[union-attr]


def _not_a_member(email: str, org: str) -> AccountNotFound:
    return AccountNotFound(f"{email} is not a member of {org}", fix="The users page lists the members.")


def _role_detail(role: Role, stored: str | None) -> dict[str, object]:
    """An entry's detail for an added member: the role, and their row-level attributes if any."""
    return {"role": role.value} | ({"attributes": _attributes(stored)} if stored else {})


def _attributes_json(attributes: Attributes | None) -> str | None:
    cleaned = clean_attributes(attributes)
    return json.dumps(cleaned, sort_keys=True, ensure_ascii=False) if cleaned else None


def _attributes(stored: str | None) -> dict[str, tuple[str, ...]]:
    """A membership's attributes as read back. Unreadable ones are an error, never "no attributes":
    a member without attributes sees every row, so reading them wrongly must fail closed."""
    if not stored:
        return {}
    try:
        raw = json.loads(stored)
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        raise HeadwaterError(
            "A membership's row-level attributes cannot be read",
            why="the system database holds something other than a JSON object for them",
            fix="Set them again with `headwater user set-role EMAIL ROLE --org ORG --attr NAME=VALUE`.",
        )
    return {str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in raw.items()}

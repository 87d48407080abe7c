"""Accounts and access: passwords, sessions, roles, CSRF, the login rate limiter, and a permission
matrix over every route of the app for every kind of visitor."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher
from cli_process import run_cli
from conftest_web import FAST_HASHER, PASSWORD, account, client_fixture, empty_project_fixture, form_log_in, install_fixture, member, project_fixture  # noqa: F401
from fastapi import Depends
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from headwater.config import LoadedProject
from headwater.errors import ExitCode
from headwater.system import LoginSession, Run, SystemDB, User, open_system_db
from headwater.system.accounts import (
    MIN_PASSWORD,
    AccountDisabled,
    AccountNotFound,
    Accounts,
    DuplicateEmail,
    InvalidEmail,
    LoginFailed,
    Policy,
    Role,
    SessionUser,
    TooManyAttempts,
    UnknownRole,
    WeakPassword,
    hash_token,
    normalise_email,
)
from headwater.system.orgs import Install, project_name
from headwater.web import create_app
from headwater.web.auth import INSTALL_ROUTE_RULES, LOGIN_CSRF_COOKIE, ROUTE_RULES, SESSION_COOKIE, AuthSettings, RouteInfo, require, route_table, safe_next

UTC = dt.UTC
START = dt.datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
ROLES = [Role.viewer, Role.analyst, Role.admin]
WHO = ["anonymous", *ROLES]


@dataclass
class Clock:
    now: dt.datetime = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SystemDB]:
    url = f"sqlite:///{tmp_path / 'system.db'}" if request.param == "sqlite" else request.getfixturevalue("fresh_pg_database")
    system = SystemDB(url)
    yield system
    system.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(db: SystemDB, clock: Clock) -> Accounts:
    return Accounts(db, clock=clock, hasher=FAST_HASHER)


@pytest.fixture
def app(project: LoadedProject, clock: Clock) -> Any:
    return create_app(project, AuthSettings(clock=clock, hasher=FAST_HASHER))


@pytest.fixture
def web(app: Any) -> Iterator[TestClient]:
    """An anonymous client of an app whose clock the test controls."""
    with TestClient(app) as test_client:
        yield test_client


def form_login(client: TestClient, email: str, password: str = PASSWORD, next_: str | None = None) -> Any:
    """Log in through the form, as a browser does: open the page (CSRF cookie), then post it."""
    client.get("/login")
    data = {"email": email, "password": password, "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE) or ""}
    if next_ is not None:
        data["next"] = next_
    return client.post("/login", data=data, follow_redirects=False)


def set_cookies(response: Any) -> dict[str, str]:
    """name -> the whole Set-Cookie header, for checking its attributes."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


# --- passwords ----------------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_and_checked(accounts: Accounts, db: SystemDB) -> None:
    accounts.create_user("ana@example.org", PASSWORD, "analyst")
    with db.session() as session:
        stored = session.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$v=19$") and PASSWORD not in stored
    assert accounts.login("ana@example.org", PASSWORD, ip="10.0.0.1").user.role is Role.analyst
    with pytest.raises(LoginFailed, match="Wrong e-mail address or password"):
        accounts.login("ana@example.org", PASSWORD + "x", ip="10.0.0.1")
    with pytest.raises(LoginFailed):
        accounts.login("bob@example.org", PASSWORD, ip="10.0.0.1")  # the same message for an unknown address


def test_hash_is_upgraded_at_login_when_the_parameters_change(db: SystemDB, clock: Clock) -> None:
    Accounts(db, clock=clock, hasher=FAST_HASHER).create_user("ana@example.org", PASSWORD)
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    accounts = Accounts(db, clock=clock, hasher=stronger)
    with db.session() as session:
        before = session.scalar(select(User.password_hash))
    with pytest.raises(LoginFailed):
        accounts.login("ana@example.org", "wrong password!", ip="10.0.0.1")
    with db.session() as session:
        assert session.scalar(select(User.password_hash)) == before  # only a right password is rehashed
    accounts.login("ana@example.org", PASSWORD, ip="10.0.0.1")
    with db.session() as session:
        after = session.scalar(select(User.password_hash))
    assert "$m=1024,t=1,p=1$" in before and "$m=2048,t=2,p=1$" in after
    assert not stronger.check_needs_rehash(after)
    accounts.login("ana@example.org", PASSWORD, ip="10.0.0.1")  # the new hash checks out


def test_an_unknown_address_costs_a_hash_check_too(db: SystemDB) -> None:
    checked: list[str] = []

    class Counting(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            checked.append(str(hash))
            return super().verify(hash, password)

    accounts = Accounts(db, hasher=Counting(time_cost=1, memory_cost=1024, parallelism=1))
    accounts.create_user("ana@example.org", PASSWORD)
    with pytest.raises(LoginFailed):
        accounts.login("nobody@example.org", PASSWORD, ip="10.0.0.1")
    assert len(checked) == 1 and checked[0].startswith("$argon2id$")  # as long as a known address takes


@pytest.mark.parametrize("password", ["", "short", "x" * (MIN_PASSWORD - 1), " " * 12, "ana@example.org"])
def test_weak_passwords_are_refused(accounts: Accounts, password: str) -> None:
    with pytest.raises(WeakPassword):
        accounts.create_user("ana@example.org", password)
    assert accounts.list_users() == []


@given(st.text(min_size=MIN_PASSWORD, max_size=40).filter(lambda p: p.strip() and p.strip().lower() != "ana@example.org"))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_long_enough_password_works(tmp_path: Path, password: str) -> None:
    db = SystemDB(f"sqlite:///{tmp_path / 'any.db'}")
    try:
        with db.engine.begin() as con:
            con.execute(text("DELETE FROM users"))
        accounts = Accounts(db, hasher=FAST_HASHER)
        accounts.create_user("ana@example.org", password)
        assert accounts.login("ana@example.org", password, ip="1.2.3.4").user.email == "ana@example.org"
    finally:
        db.close()


# --- e-mail addresses ---------------------------------------------------------------------------


@given(st.emails(), st.lists(st.booleans(), min_size=1), st.sampled_from(["", " ", "\t", "  \n"]))
def test_an_address_in_any_case_with_spaces_is_the_same_account(email: str, upper: list[bool], pad: str) -> None:
    variant = pad + "".join(c.upper() if upper[i % len(upper)] else c.lower() for i, c in enumerate(email)) + pad
    assert normalise_email(variant) == normalise_email(email) == normalise_email(normalise_email(email))
    assert normalise_email(email) == normalise_email(email).strip().lower()


@given(st.text(max_size=60))
def test_normalising_is_idempotent_or_refuses(value: str) -> None:
    try:
        once = normalise_email(value)
    except InvalidEmail:
        return
    assert normalise_email(once) == once and "@" in once and once == once.strip()


@pytest.mark.parametrize("email", ["", "ana", "ana@", "@example.org", "ana@example", "ana@@example.org", "an a@example.org", "ana@example..org", "ana@.example.org", f"{'a' * 65}@example.org", "ana@exa\x00mple.org"])
def test_invalid_addresses_are_refused(accounts: Accounts, email: str) -> None:
    with pytest.raises(InvalidEmail, match="is not an e-mail address"):
        accounts.create_user(email, PASSWORD)


def test_a_second_account_for_the_same_address_is_refused(accounts: Accounts) -> None:
    accounts.create_user(" Ana@Example.ORG ", PASSWORD, "viewer")
    with pytest.raises(DuplicateEmail, match=r"already an account for ana@example\.org"):
        accounts.create_user("ana@example.org", PASSWORD + "2", "admin")
    assert [(a.email, a.role) for a in accounts.list_users()] == [("ana@example.org", Role.viewer)]
    assert accounts.login("ANA@example.org", PASSWORD, ip="1.2.3.4").user.email == "ana@example.org"


# --- roles --------------------------------------------------------------------------------------


def test_roles_are_ordered_viewer_analyst_admin() -> None:
    assert [r.value for r in Role] == ["viewer", "analyst", "admin"]
    for i, having in enumerate(ROLES):
        for j, needed in enumerate(ROLES):
            assert having.allows(needed) is (i >= j)


def test_roles_are_set_and_checked(accounts: Accounts) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    assert accounts.get("ana@example.org").role is Role.viewer  # the default
    assert accounts.set_role("ANA@example.org", "Admin").role is Role.admin
    with pytest.raises(UnknownRole, match="No role named 'owner'") as caught:
        accounts.set_role("ana@example.org", "owner")
    assert "viewer, analyst, admin" in (caught.value.fix or "")
    with pytest.raises(AccountNotFound):
        accounts.set_role("bob@example.org", "viewer")


# --- sessions -----------------------------------------------------------------------------------


def test_only_the_tokens_hash_is_stored(accounts: Accounts, db: SystemDB) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    new = accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4", user_agent="pytest")
    assert len(new.token) >= 43  # 32 random bytes
    with db.session() as session:
        record = session.scalars(select(LoginSession)).one()
    assert record.token_hash == hash_token(new.token) and new.token not in (record.token_hash, record.csrf_token)
    assert accounts.session_user(new.token).email == "ana@example.org"  # type: ignore[union-attr]
    assert accounts.session_user(record.token_hash) is None  # the stored value does not log anyone in
    assert accounts.session_user("") is None and accounts.session_user("x" * 500) is None


def test_a_session_ends_after_12_hours_idle(accounts: Accounts, clock: Clock) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    token = accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4").token
    clock.advance(hours=11, minutes=59)
    assert accounts.session_user(token) is not None  # and it counts as activity
    clock.advance(hours=11, minutes=59)
    assert accounts.session_user(token) is not None
    clock.advance(hours=12)
    assert accounts.session_user(token) is None


def test_a_session_ends_7_days_after_login_however_busy(accounts: Accounts, clock: Clock) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    token = accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4").token
    for _ in range(7 * 24 - 1):
        clock.advance(hours=1)
        assert accounts.session_user(token) is not None
    clock.advance(hours=1)
    assert accounts.session_user(token) is None


def test_logout_ends_the_session(accounts: Accounts) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    first = accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4").token
    second = accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4").token
    accounts.logout(first)
    assert accounts.session_user(first) is None
    assert accounts.session_user(second) is not None  # another browser stays logged in
    accounts.logout(None)
    accounts.logout("not a token")


def test_a_new_password_ends_every_session(accounts: Accounts) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    tokens = [accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4").token for _ in range(2)]
    accounts.set_password("ana@example.org", "a brand new passphrase")
    assert [accounts.session_user(t) for t in tokens] == [None, None]
    with pytest.raises(LoginFailed):
        accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4")
    assert accounts.login("ana@example.org", "a brand new passphrase", ip="1.2.3.4").user.email == "ana@example.org"
    with pytest.raises(WeakPassword):
        accounts.set_password("ana@example.org", "short")


def test_a_disabled_account_cannot_log_in_and_is_logged_out(accounts: Accounts) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    token = accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4").token
    assert accounts.set_disabled("ana@example.org").disabled
    assert accounts.session_user(token) is None
    with pytest.raises(AccountDisabled):
        accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4")
    with pytest.raises(LoginFailed):  # a wrong password says nothing about the account
        accounts.login("ana@example.org", "wrong password!", ip="1.2.3.4")
    accounts.set_disabled("ana@example.org", False)
    assert accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4").user.email == "ana@example.org"
    assert accounts.session_user(token) is None  # an ended session stays ended


# --- the login rate limiter ---------------------------------------------------------------------


def test_too_many_failures_lock_the_address_out_until_the_window_passes(accounts: Accounts, clock: Clock) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    for _ in range(5):
        clock.advance(seconds=30)
        with pytest.raises(LoginFailed):
            accounts.login("ana@example.org", "wrong password!", ip="10.0.0.1")
    with pytest.raises(TooManyAttempts) as caught:
        accounts.login("ana@example.org", PASSWORD, ip="10.0.0.1")  # even the right password
    assert caught.value.retry_after_seconds == 15 * 60 - 4 * 30
    assert "Wait 13 minutes" in (caught.value.fix or "")
    assert accounts.login("ana@example.org", PASSWORD, ip="10.0.0.2").user.email == "ana@example.org"  # another address
    clock.advance(minutes=12, seconds=59)
    with pytest.raises(TooManyAttempts):
        accounts.login("ANA@example.org ", PASSWORD, ip="10.0.0.1")  # the same account however it is typed
    clock.advance(seconds=1)  # the oldest failure leaves the window: exactly when Retry-After said
    assert accounts.login("ana@example.org", PASSWORD, ip="10.0.0.1").user.email == "ana@example.org"


def test_a_success_clears_the_failures(accounts: Accounts) -> None:
    accounts.create_user("ana@example.org", PASSWORD)
    for _ in range(2):
        for _ in range(4):
            with pytest.raises(LoginFailed):
                accounts.login("ana@example.org", "wrong password!", ip="10.0.0.1")
        accounts.login("ana@example.org", PASSWORD, ip="10.0.0.1")


def test_one_address_trying_many_accounts_is_slowed_down_not_locked_out(db: SystemDB, clock: Clock) -> None:
    """Past the per-address limit (password spraying, or an office of 200 people behind one NAT) an
    address gets a few attempts a minute: an attacker is slowed to a crawl, and a colleague typing the
    right password gets in within the minute, not after 15."""
    accounts = Accounts(db, clock=clock, hasher=FAST_HASHER, policy=Policy(max_failures_per_ip=6, attempts_per_minute_over_ip_limit=2))
    accounts.create_user("ana@example.org", PASSWORD)
    for n in range(6):
        clock.advance(seconds=1)
        with pytest.raises(LoginFailed):
            accounts.login(f"user{n}@example.org", "wrong password!", ip="10.0.0.9")
    with pytest.raises(TooManyAttempts) as slowed:
        accounts.login("ana@example.org", PASSWORD, ip="10.0.0.9")  # the minute's attempts are used up
    assert slowed.value.retry_after_seconds == 59 and "your address" in (slowed.value.why or "")  # when the fifth is a minute old
    assert accounts.login("ana@example.org", PASSWORD, ip="10.0.0.10").user.email == "ana@example.org"  # another address
    clock.advance(seconds=59)  # one failure left in the last minute: under the two allowed
    assert accounts.login("ana@example.org", PASSWORD, ip="10.0.0.9").user.email == "ana@example.org"  # long before 15 minutes
    for n in range(2):  # the attacker, still over the limit, gets two guesses a minute
        clock.advance(seconds=30)
        with pytest.raises(LoginFailed):
            accounts.login(f"other{n}@example.org", "wrong password!", ip="10.0.0.9")
    with pytest.raises(TooManyAttempts):
        accounts.login("other9@example.org", "wrong password!", ip="10.0.0.9")
    clock.advance(minutes=15, seconds=1)  # the window passed: no limit at all
    for n in range(5):
        with pytest.raises(LoginFailed):
            accounts.login(f"late{n}@example.org", "wrong password!", ip="10.0.0.9")


EXAMPLES = itertools.count()


@given(st.lists(st.sampled_from(["spray", "right", "wait"]), max_size=40))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_address_limit_never_refuses_more_than_a_minute(db: SystemDB, steps: list[str]) -> None:
    """Whatever an address does, a right password from it is refused for at most a minute after the
    last failure from it (the per-account limit aside, which needs failures for that account)."""
    clock = Clock()
    accounts = Accounts(db, clock=clock, hasher=FAST_HASHER, policy=Policy(max_failures_per_ip=3, attempts_per_minute_over_ip_limit=1))
    n = next(EXAMPLES)  # the database outlives each example: an address and account of its own
    ip, email = f"10.{n // 250}.{n % 250}.1", f"u{n}@example.org"
    accounts.create_user(email, PASSWORD)
    last_failure = None
    for step in steps:
        clock.advance(seconds=7)
        if step == "wait":
            clock.advance(seconds=40)
        elif step == "spray":
            try:
                accounts.login("nobody@example.org", "wrong password!", ip=ip)
            except LoginFailed:
                last_failure = clock.now
            except TooManyAttempts:
                pass
        else:
            try:
                accounts.login(email, PASSWORD, ip=ip)
            except TooManyAttempts as exc:
                assert last_failure is not None and exc.retry_after_seconds <= 60
                assert (clock.now - last_failure).total_seconds() < 60


# --- nothing secret in the log ------------------------------------------------------------------


def test_passwords_and_tokens_are_never_logged(accounts: Accounts, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        accounts.create_user("ana@example.org", PASSWORD, "admin")
        new = accounts.login("ana@example.org", PASSWORD, ip="1.2.3.4")
        accounts.session_user(new.token)
        for _ in range(6):
            with contextlib.suppress(LoginFailed, TooManyAttempts):
                accounts.login("ana@example.org", "my secret guess", ip="1.2.3.4")
        accounts.set_password("ana@example.org", "another secret phrase")
        accounts.logout(new.token)
    assert "ana@example.org" in caplog.text  # the log says who
    for secret in (PASSWORD, "my secret guess", "another secret phrase", new.token, new.user.csrf_token, hash_token(new.token)):
        assert secret not in caplog.text


# --- the route matrix ---------------------------------------------------------------------------


@dataclass
class Sample:
    """A request to a route that succeeds for whoever may use it."""

    url: str
    ok: int = 200
    anonymous_ok: int | None = None  # public routes that answer anonymous visitors differently
    form: dict[str, str] = field(default_factory=dict)


# One request per organisation route, by its path within the organisation (prefixed with /o/<slug>
# in an install with many). A new route fails test_route_matrix until it is added here.
ORG_SAMPLES: dict[str, Sample] = {
    "GET /": Sample("/", ok=303),  # to the only dashboard
    "GET /dashboards/{name}": Sample("/dashboards/flake_rate"),
    "GET /api/dashboards/{name}/charts/{index:int}": Sample("/api/dashboards/flake_rate/charts/0"),
    "GET /dashboards/{name}/charts/{index:int}.csv": Sample("/dashboards/flake_rate/charts/0.csv"),
    "GET /tables/{table}.csv": Sample("/tables/flake_rate_weekly.csv"),
    "GET /tables/{table}.xlsx": Sample("/tables/flake_rate_weekly.xlsx"),
    "GET /dashboards/{name}/charts/{index:int}.xlsx": Sample("/dashboards/flake_rate/charts/0.xlsx"),
    "GET /dashboards/{name}/tables/{table}.csv": Sample("/dashboards/flake_rate/tables/flake_rate_weekly.csv"),
    "GET /dashboards/{name}/tables/{table}.xlsx": Sample("/dashboards/flake_rate/tables/flake_rate_weekly.xlsx"),
    "GET /runs": Sample("/runs"),
    "GET /runs/{run_id:int}": Sample("/runs/{run_id}"),
    "GET /api/runs/{run_id:int}/log": Sample("/api/runs/{run_id}/log"),
    "GET /sources": Sample("/sources"),
    "GET /sources/{name}": Sample("/sources/campaign"),
    "GET /pipelines": Sample("/pipelines"),
    "GET /api/pipelines": Sample("/api/pipelines"),
    "POST /pipelines/{name}/run": Sample("/pipelines/flake_rate/run", ok=303),  # back to /pipelines (started, or already running)
    "GET /admin/users": Sample("/admin/users"),
    "POST /admin/users": Sample("/admin/users", ok=303, form={"email": "new@example.org", "role": "viewer", "password": PASSWORD}),
    # user 1 is the organisation's viewer (the matrix tests create that account first); both leave it as it was
    "POST /admin/users/{user_id:int}/role": Sample("/admin/users/1/role", ok=303, form={"role": "viewer"}),
    "POST /admin/users/{user_id:int}/disabled": Sample("/admin/users/1/disabled", ok=303, form={"disabled": "0"}),
    "POST /admin/invitations": Sample("/admin/invitations", form={"email": "invited@example.org", "role": "viewer"}),  # the page, with the link
    "GET /admin/audit": Sample("/admin/audit"),
}
# One request per install route, by its path. {invitation}: an open invitation; {fresh_invitation}:
# a new one for each request (accepting one uses it up).
INSTALL_SAMPLES: dict[str, Sample] = {
    "GET /": Sample("/", ok=303),  # an install with many organisations: straight to one's only organisation
    "GET /healthz": Sample("/healthz"),
    "GET /static/plotly.min.js": Sample("/static/plotly.min.js"),
    "GET /static": Sample("/static/style.css"),
    "GET /login": Sample("/login", ok=303, anonymous_ok=200),  # signed in: on to the dashboards
    "POST /login": Sample("/login", ok=303, form={"email": "{viewer}", "password": PASSWORD}),
    "POST /logout": Sample("/logout", ok=303),
    "GET /invite/{token}": Sample("/invite/{invitation}"),
    "POST /invite/{token}": Sample("/invite/{fresh_invitation}", ok=303, form={"password": PASSWORD, "confirm": PASSWORD}),  # joins, logs in
}
ORGS = ("acme", "beta")  # the matrix's install: requests go to acme; beta's members are strangers there


@dataclass(frozen=True)
class Who:
    role: Role | None = None  # None: anonymous
    org: str | None = None  # an install with many organisations: whose member

    @property
    def email(self) -> str:
        return f"{self.role}@example.org" if self.org is None else f"{self.role}-{self.org}@example.org"

    def __str__(self) -> str:
        return "anonymous" if self.role is None else (str(self.role) if self.org is None else f"{self.role} of {self.org}")


def sample(info: RouteInfo) -> Sample:
    return (ORG_SAMPLES if info.org else INSTALL_SAMPLES)[info.rule_key]


def expected_status(info: RouteInfo, who: Who) -> int:
    """Public: as the sample says. Anonymous: to the login page (401 for the API). A stranger to the
    organisation: 404, as for one that does not exist. A member whose role is too low: 403."""
    assert info.rule is not None
    example = sample(info)
    if info.rule.public:
        return example.anonymous_ok if who.role is None and example.anonymous_ok else example.ok
    if who.role is None:
        return 401 if info.path.startswith("/api/") or info.local.startswith("/api/") else 303
    if info.org and who.org not in (None, ORGS[0]):
        return 404
    if info.rule.role is not None and not who.role.allows(info.rule.role):
        return 403
    return example.ok


def request_as(app: Any, info: RouteInfo, who: Who, values: dict[str, Any], prefix: str = "") -> Any:
    """The route's sample request by ``who``, in a fresh session, carrying the right CSRF token
    (the app's lifespan is the caller's: a client entered once for all requests)."""
    with contextlib.closing(TestClient(app)) as client:
        headers = {}
        if who.role is not None:
            client.get("/login")
            response = client.post("/login", data={"email": who.email, "password": PASSWORD, "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE)}, follow_redirects=False)
            assert response.status_code == 303, response.text
            if not (info.rule is not None and info.rule.public):
                headers["X-CSRF-Token"] = _viewer_csrf(client)
        example = sample(info)
        filled = {key: value() if callable(value) else value for key, value in values.items()}
        url = (prefix if info.org else "") + example.url.format(**filled)
        if info.method == "GET":
            return client.get(url, follow_redirects=False)
        form = {key: value.format(**filled) for key, value in example.form.items()}
        if info.rule is not None and info.rule.public:  # a form anyone may post: the login page's token
            form["csrf_token"] = "a-login-page-token-as-a-browser-keeps-it-0123"
            client.cookies.set(LOGIN_CSRF_COOKIE, form["csrf_token"])
        return client.request(info.method, url, data=form or None, headers=headers, follow_redirects=False)


def _viewer_csrf(client: TestClient) -> str:
    """The session's CSRF token, from the logout form every page has (even a 404 page)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/no-such-page").text)
    assert match, "no CSRF field on the page"
    return match.group(1)


def signed_in(client: TestClient) -> bool:
    return client.get("/login", follow_redirects=False).status_code == 303


def test_every_route_has_an_explicit_rule(app: Any, install: Install) -> None:
    """A new route without a rule fails here: it must say who may use it (ROUTE_RULES,
    INSTALL_ROUTE_RULES or require()), in an install with one organisation and with many."""
    tables = {"one": route_table(app), "many": route_table(create_app(install))}
    for kind, table in tables.items():
        missing = [info.key for info in table if info.rule is None]
        assert missing == [], f"{kind}: routes without a permission rule (add them to web/auth.py ROUTE_RULES): {missing}"
        public = {info.key for info in table if info.rule is not None and info.rule.public}
        assert public == {"GET /healthz", "GET /login", "POST /login", "GET /static", "GET /static/plotly.min.js", "GET /invite/{token}", "POST /invite/{token}"}, kind
    org_keys = {info.rule_key for table in tables.values() for info in table if info.org}
    install_keys = {info.rule_key for table in tables.values() for info in table if not info.org}
    assert set(ROUTE_RULES) - org_keys == set(), "rules for organisation routes that do not exist"
    assert set(INSTALL_ROUTE_RULES) - install_keys == set(), "rules for install routes that do not exist"
    assert all(info.path.startswith("/o/{org}/") for info in tables["many"] if info.org)


def _matrix(app: Any, who: list[Who], values: dict[str, Any], prefix: str) -> None:
    table = route_table(app)
    unsampled = [info.key for info in table if info.rule_key not in (ORG_SAMPLES if info.org else INSTALL_SAMPLES)]
    assert unsampled == [], f"add a sample request for these routes to ORG_SAMPLES / INSTALL_SAMPLES: {unsampled}"
    rows, wrong = [], []
    with TestClient(app):  # the app's lifespan, once: each request below is a new browser
        results = {(info.key, str(person)): request_as(app, info, person, values, prefix) for info in table for person in who}
    for info in table:
        cells = []
        for person in who:
            want = expected_status(info, person)
            response = results[(info.key, str(person))]
            got: int | str = response.status_code
            if got == 303 and want == 303 and person.role is None and not info.rule.public:  # type: ignore[union-attr]
                location = response.headers["location"]
                got = got if location.startswith("/login") else f"303 to {location}"
            if got == 403 and "/api/" in info.path:
                assert response.json()["error"]["message"] == "You do not have access to this"
            if got == 404 and info.org:
                assert "Page not found" in response.text, response.text  # word for word what an unknown address gets
            if got != want:
                wrong.append(f"{info.key} as {person}: {got}, expected {want}")
            cells.append(f"{got}")
        rows.append(f"{info.key:60} {info.rule!s:10} " + " ".join(f"{c:>12}" for c in cells))
    matrix = "\n".join([f"{'route':60} {'rule':10} " + " ".join(f"{w!s:>12}" for w in who), *rows])
    print(matrix)
    assert wrong == [], "\n".join(wrong) + "\n\n" + matrix


def test_route_matrix(app: Any, project: LoadedProject) -> None:
    """Every route of a one-project install, requested by an anonymous visitor and by each role."""
    for role in ROLES:
        account(project, role)
    db = open_system_db(project)
    try:
        accounts = Accounts(db, hasher=FAST_HASHER)
        invitation = accounts.invite("someone@example.org", "viewer", org="default", created_by="test")
        fresh = _fresh_invitations(accounts, "default")
        _matrix(app, [Who(), *(Who(role) for role in ROLES)], {"run_id": _a_run(project), "invitation": invitation, "fresh_invitation": fresh, "viewer": "viewer@example.org"}, "")
    finally:
        db.close()


def test_route_matrix_two_organisations(install: Install) -> None:
    """Every route of an install with two organisations, requested by an anonymous visitor, each role
    of organisation acme and each role of beta, always for acme: beta's people get 404 for each of
    acme's routes (as for an organisation that does not exist), acme's get what their role allows."""
    people = [Who()]
    for org in ORGS:  # acme's viewer first: it is user 1, whom the user samples change
        for role in ROLES:
            member(install, Who(role, org).email, org, role)
            people.append(Who(role, org))
    db = install.open_db()
    try:
        accounts = Accounts(db, hasher=FAST_HASHER)
        assert accounts.get(Who(Role.viewer, "acme").email, org="acme").id == 1
        invitation = accounts.invite("someone@example.org", "viewer", org="acme", created_by="test")
        fresh = _fresh_invitations(accounts, "acme")
        run_id = _a_run_in(db, "acme")
        _a_run_in(db, "beta")
        _matrix(create_app(install, AuthSettings(hasher=FAST_HASHER)), people, {"run_id": run_id, "invitation": invitation, "fresh_invitation": fresh, "viewer": "viewer-acme@example.org"}, "/o/acme")
    finally:
        db.close()


def test_a_run_of_another_organisation_is_not_found(install: Install) -> None:
    member(install, "ana@example.org", "acme", "admin")
    db = install.open_db()
    try:
        theirs = _a_run_in(db, "beta")
        ours = _a_run_in(db, "acme")
    finally:
        db.close()
    with TestClient(create_app(install, AuthSettings(hasher=FAST_HASHER))) as client:
        form_log_in(client, "ana@example.org")
        assert client.get(f"/o/acme/runs/{ours}").status_code == 200
        assert client.get(f"/o/acme/runs/{theirs}").status_code == 404  # beta's run, asked for through acme
        assert client.get(f"/o/acme/api/runs/{theirs}/log").status_code == 404
        assert f"/o/acme/runs/{theirs}" not in client.get("/o/acme/runs").text


def test_every_state_changing_route_refuses_a_request_without_its_csrf_token(app: Any, project: LoadedProject, install: Install) -> None:
    """Generated from the route tables: each POST (PUT, PATCH, DELETE) with everything right but the
    token gets 403 and changes nothing; forms without a session (login, invitations) need the
    double-submit cookie's token."""
    account(project, "admin")
    member(install, "admin-acme@example.org", "acme", "admin")
    checked = []
    for target, email, prefix in ((app, "admin@example.org", ""), (create_app(install, AuthSettings(hasher=FAST_HASHER)), "admin-acme@example.org", "/o/acme")):
        for info in route_table(target):
            if info.method in ("GET", "HEAD", "OPTIONS", "?"):
                continue
            example = sample(info)
            url = (prefix if info.org else "") + example.url.format(run_id=1, invitation="x" * 43, fresh_invitation="x" * 43)
            form = {key: value.format(viewer=email) for key, value in example.form.items()}
            with TestClient(target) as client:
                if not info.rule.public:  # type: ignore[union-attr]
                    form_log_in(client, email)
                    good = _viewer_csrf(client)
                    for bad in ({}, {"csrf_token": "wrong"}, {"csrf_token": good[:-1] + ("x" if good[-1] != "x" else "y")}):
                        refused = client.request(info.method, url, data={**form, **bad}, follow_redirects=False)
                        assert refused.status_code == 403 and "did not come from a Headwater page" in refused.text, (info.key, bad)
                else:
                    client.cookies.clear()
                    for cookie, field_value in ((None, "a" * 43), ("a" * 43, None), ("a" * 43, "b" * 43)):
                        if cookie:
                            client.cookies.set(LOGIN_CSRF_COOKIE, cookie)
                        data = {**form, **({"csrf_token": field_value} if field_value else {})}
                        refused = client.request(info.method, url, data=data, follow_redirects=False)
                        assert refused.status_code == 403, (info.key, cookie, field_value)
                        assert SESSION_COOKIE not in set_cookies(refused)
                        client.cookies.clear()
            checked.append(info.key)
    assert {"POST /logout", "POST /o/{org}/admin/users", "POST /o/{org}/pipelines/{name}/run", "POST /login", "POST /invite/{token}"} <= set(checked)
    db = open_system_db(project)
    try:
        assert [a.email for a in Accounts(db).list_users()] == ["admin@example.org"]  # "new@example.org" was never added
    finally:
        db.close()


def test_a_route_without_a_rule_is_for_admins_only_and_is_reported(app: Any, project: LoadedProject) -> None:
    app.add_api_route("/forgotten", lambda: {"secret": True})

    def admin_thing(user: Annotated[SessionUser, Depends(require(Role.admin))]) -> dict[str, str]:
        return {"by": user.email}

    app.add_api_route("/api/admin-thing", admin_thing)
    table = {info.key: info for info in route_table(app)}
    assert table["GET /forgotten"].rule is None  # test_every_route_has_an_explicit_rule would fail
    assert table["GET /api/admin-thing"].rule.role is Role.admin  # type: ignore[union-attr]  # declared on the route
    for role in ("viewer", "admin"):
        account(project, role)
    with TestClient(app) as client:
        assert client.get("/forgotten", follow_redirects=False).status_code == 303  # to the login page
        assert client.get("/api/admin-thing").status_code == 401
        assert form_login(client, "viewer@example.org").status_code == 303
        assert client.get("/forgotten").status_code == 403
        refused = client.get("/api/admin-thing")
        assert refused.status_code == 403 and "needs the admin role" in refused.json()["error"]["why"]
    with TestClient(app) as client:
        assert form_login(client, "admin@example.org").status_code == 303
        assert client.get("/forgotten").json() == {"secret": True}
        assert client.get("/api/admin-thing").json() == {"by": "admin@example.org"}


def test_the_table_and_the_routes_own_require_both_apply(app: Any, project: LoadedProject, monkeypatch: pytest.MonkeyPatch) -> None:
    def both(user: Annotated[SessionUser, Depends(require(Role.analyst))]) -> dict[str, str]:
        return {"by": user.email}

    monkeypatch.setitem(INSTALL_ROUTE_RULES, "GET /both", ROUTE_RULES["GET /dashboards/{name}"])  # viewer
    app.add_api_route("/both", both)
    assert {info.key: info.rule for info in route_table(app)}["GET /both"].role is Role.analyst  # type: ignore[union-attr]
    for role in ("viewer", "analyst"):
        account(project, role)
        with TestClient(app) as client:
            form_login(client, f"{role}@example.org")
            assert client.get("/both").status_code == (403 if role == "viewer" else 200)


def _fresh_invitations(accounts: Accounts, org: str) -> Any:
    """A new invitation to ``org`` at each call (for a sample that accepts one)."""
    numbers = itertools.count()
    return lambda: accounts.invite(f"joiner{next(numbers)}@example.org", "viewer", org=org, created_by="test")


def _a_run_in(db: SystemDB, org: str) -> int:
    """A finished run of organisation ``org``'s project, recorded as runs are: by project name."""
    with db.session() as session:
        run = Run(project=project_name(org), pipeline="flake_rate", status="success", trigger="cli", started_at=START, finished_at=START)
        session.add(run)
        session.commit()
        return run.id


def _a_run(project: LoadedProject) -> int:
    db = open_system_db(project)
    try:
        with db.session() as session:
            run = Run(project=project.config.name, pipeline="flake_rate", status="success", trigger="cli", started_at=START, finished_at=START)
            session.add(run)
            session.commit()
            return run.id
    finally:
        db.close()


# --- pages for anonymous visitors ---------------------------------------------------------------


def test_anonymous_visitors_to_the_home_page_get_the_login_page(web: TestClient) -> None:
    response = web.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    page = web.get("/")
    assert page.status_code == 200 and "<h1>Log in</h1>" in page.text
    assert 'name="csrf_token"' in page.text and 'autocomplete="current-password"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert 'href="/runs"' not in page.text and "Log out" not in page.text  # no menu before logging in


def test_anonymous_requests_are_sent_to_log_in_or_get_401(web: TestClient) -> None:
    page = web.get("/dashboards/flake_rate?region=North", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fdashboards%2Fflake_rate%3Fregion%3DNorth"
    api = web.get("/api/dashboards/flake_rate/charts/0")
    assert api.status_code == 401 and api.headers["content-type"] == "application/json"
    assert api.json()["error"]["message"] == "You need to log in"
    assert web.get("/dashboards/no-such-board", follow_redirects=False).status_code == 303  # nothing is revealed
    assert web.get("/healthz").status_code == 200


def test_what_does_not_exist_is_404_for_everyone(web: TestClient, project: LoadedProject) -> None:
    assert web.get("/no/such/page").status_code == 404
    account(project, "viewer")
    form_login(web, "viewer@example.org")
    page = web.get("/no/such/page")
    assert page.status_code == 404 and "Page not found" in page.text
    assert "viewer@example.org" in page.text  # the menu knows who is there even off the route table
    assert web.get("/dashboards/nope").status_code == 404
    assert web.get("/api/dashboards/nope/charts/0").json()["error"]["message"] == "No dashboard named 'nope'"


def test_a_role_too_low_gets_a_friendly_403_page(web: TestClient, project: LoadedProject) -> None:
    account(project, "viewer")
    form_login(web, "viewer@example.org")
    page = web.get("/runs")
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "You do not have access to this" in page.text
    assert "it needs the analyst role (or a higher one), and viewer@example.org has the viewer role" in page.text
    assert "headwater user set-role viewer@example.org analyst" in page.text
    assert 'href="/runs"' not in page.text  # the menu shows only what the role can open
    assert "viewer@example.org · viewer" in page.text
    assert web.get("/tables/flake_rate_weekly.csv").status_code == 200


# --- logging in and out -------------------------------------------------------------------------


def test_logging_in_sets_a_safe_session_cookie_and_goes_where_asked(web: TestClient, project: LoadedProject) -> None:
    account(project, "analyst")
    response = form_login(web, "Analyst@Example.org ", next_="/runs?x=1")
    assert response.status_code == 303 and response.headers["location"] == "/runs?x=1"
    cookie = set_cookies(response)[SESSION_COOKIE]
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= attributes and "secure" not in attributes
    assert f"max-age={7 * 24 * 3600}" in attributes
    assert LOGIN_CSRF_COOKIE in set_cookies(response)  # the pre-session token is spent
    page = web.get("/runs")
    assert page.status_code == 200 and "analyst@example.org · analyst" in page.text
    token = re.search(r'<input type="hidden" name="csrf_token" value="([^"]+)">', page.text)
    assert token and len(token.group(1)) >= 43  # csrf_field() in the logout form
    assert web.get("/login", follow_redirects=False).headers["location"] == "/"  # signed in already


def test_the_cookie_is_secure_over_https(app: Any, project: LoadedProject) -> None:
    account(project, "viewer")
    with TestClient(app, base_url="https://testserver") as client:
        assert "secure" in set_cookies(client.get("/login"))[LOGIN_CSRF_COOKIE].lower()
        response = form_login(client, "viewer@example.org")
        assert "secure" in set_cookies(response)[SESSION_COOKIE].lower()
        assert signed_in(client)


def test_forwarded_proto_counts_only_when_proxies_are_trusted(project: LoadedProject, clock: Clock) -> None:
    account(project, "viewer")
    for trust, secure in ((False, False), (True, True)):
        with TestClient(create_app(project, AuthSettings(trust_proxy_headers=trust, clock=clock, hasher=FAST_HASHER)), headers={"X-Forwarded-Proto": "https"}) as client:
            cookie = set_cookies(client.get("/login"))[LOGIN_CSRF_COOKIE]
            assert ("secure" in cookie.lower()) is secure


def test_forwarded_for_is_the_rate_limit_key_only_when_trusted(project: LoadedProject, clock: Clock) -> None:
    account(project, "viewer")
    for trust in (True, False):
        app = create_app(project, AuthSettings(trust_proxy_headers=trust, clock=clock, hasher=FAST_HASHER))
        with TestClient(app, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}) as client:
            for _ in range(5):
                assert form_login(client, "viewer@example.org", "wrong password!").status_code == 401
            assert form_login(client, "viewer@example.org").status_code == 429
        with TestClient(app, headers={"X-Forwarded-For": "203.0.113.8"}) as client:
            # Trusted: another client behind the proxy. Not trusted: the same (proxy's) address.
            assert form_login(client, "viewer@example.org").status_code == (303 if trust else 429)
        clock.advance(minutes=16)


@pytest.mark.parametrize(("value", "trusted"), [(None, False), ("", False), ("0", False), ("no", False), ("off", False), ("1", True), ("true", True), (" Yes ", True), ("ON", True)])
def test_headwater_trust_proxy_headers_switches_the_forwarded_headers_on(project: LoadedProject, monkeypatch: pytest.MonkeyPatch, value: str | None, trusted: bool) -> None:
    """The app `headwater serve` makes reads HEADWATER_TRUST_PROXY_HEADERS: on, X-Forwarded-Proto makes
    cookies secure and X-Forwarded-For is the client's address (the login rate limit's key); off or
    unset, a header anyone can send changes neither."""
    from starlette.requests import Request

    if value is None:
        monkeypatch.delenv("HEADWATER_TRUST_PROXY_HEADERS", raising=False)
    else:
        monkeypatch.setenv("HEADWATER_TRUST_PROXY_HEADERS", value)
    app = create_app(project)
    with TestClient(app, headers={"X-Forwarded-Proto": "https"}) as client:
        assert ("secure" in set_cookies(client.get("/login"))[LOGIN_CSRF_COOKIE].lower()) is trusted
    behind_a_proxy = Request({"type": "http", "headers": [(b"x-forwarded-for", b"198.51.100.1, 203.0.113.9")], "client": ("127.0.0.1", 40000)})
    assert app.state.auth.client_ip(behind_a_proxy) == ("203.0.113.9" if trusted else "127.0.0.1")


def test_wrong_password_shows_the_form_again(web: TestClient, project: LoadedProject) -> None:
    account(project, "viewer")
    response = form_login(web, "viewer@example.org", "not my password")
    assert response.status_code == 401
    assert "Wrong e-mail address or password" in response.text and 'value="viewer@example.org"' in response.text
    assert SESSION_COOKIE not in set_cookies(response)
    assert form_login(web, "nobody@example.org").status_code == 401


def test_logout_ends_the_session_for_good(web: TestClient, project: LoadedProject) -> None:
    account(project, "viewer")
    form_login(web, "viewer@example.org")
    token = web.cookies.get(SESSION_COOKIE)
    response = web.post("/logout", data={"csrf_token": _viewer_csrf(web)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?logged_out=1"
    assert "max-age=0" in set_cookies(response)[SESSION_COOKIE].lower() or "expires=thu, 01 jan 1970" in set_cookies(response)[SESSION_COOKIE].lower()
    assert "You have logged out." in web.get("/login?logged_out=1").text
    web.cookies.set(SESSION_COOKIE, token)  # the old cookie, replayed
    assert not signed_in(web)
    assert web.get("/tables/flake_rate_weekly.csv", follow_redirects=False).status_code == 303


def test_a_disabled_user_cannot_log_in(web: TestClient, project: LoadedProject) -> None:
    account(project, "viewer")
    form_login(web, "viewer@example.org")
    db = open_system_db(project)
    try:
        Accounts(db).set_disabled("viewer@example.org")
    finally:
        db.close()
    assert not signed_in(web)  # logged out at once
    response = form_login(web, "viewer@example.org")
    assert response.status_code == 403 and "This account is disabled" in response.text


def test_a_session_expires_after_12_idle_hours(web: TestClient, project: LoadedProject, clock: Clock) -> None:
    account(project, "viewer")
    form_login(web, "viewer@example.org")
    clock.advance(hours=11)
    assert web.get("/tables/flake_rate_weekly.csv").status_code == 200
    clock.advance(hours=12, minutes=1)
    response = web.get("/tables/flake_rate_weekly.csv", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


def test_a_user_without_a_role_here_is_refused_everything(web: TestClient, project: LoadedProject) -> None:
    account(project, "viewer", "nomember@example.org")
    db = open_system_db(project)
    try:
        with db.engine.begin() as con:
            con.execute(text("DELETE FROM memberships WHERE user_id = (SELECT id FROM users WHERE email = 'nomember@example.org')"))
    finally:
        db.close()
    form_login(web, "nomember@example.org")
    page = web.get("/tables/flake_rate_weekly.csv")
    assert page.status_code == 403 and "has no role in this organisation" in page.text
    assert web.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)}, follow_redirects=False).status_code == 303  # type: ignore[union-attr]


# --- CSRF ---------------------------------------------------------------------------------------


def test_a_change_without_the_sessions_csrf_token_is_refused(web: TestClient, project: LoadedProject) -> None:
    account(project, "viewer")
    form_login(web, "viewer@example.org")
    good = _viewer_csrf(web)
    for data, headers in (({}, {}), ({"csrf_token": "wrong"}, {}), ({}, {"X-CSRF-Token": ""}), ({}, {"X-CSRF-Token": good[:-1] + "x"})):
        refused = web.post("/logout", data=data or None, headers=headers, follow_redirects=False)
        assert refused.status_code == 403, (data, headers)
        assert "did not come from a Headwater page" in refused.text
    assert signed_in(web)  # nothing happened
    assert web.post("/logout", headers={"X-CSRF-Token": good}, follow_redirects=False).status_code == 303
    assert not signed_in(web)


def test_another_sessions_csrf_token_does_not_count(app: Any, project: LoadedProject) -> None:
    account(project, "viewer")
    with TestClient(app) as mallory, TestClient(app) as alice:
        form_login(mallory, "viewer@example.org")
        form_login(alice, "viewer@example.org")
        assert alice.post("/logout", data={"csrf_token": _viewer_csrf(mallory)}, follow_redirects=False).status_code == 403


def test_login_csrf_is_blocked(web: TestClient, project: LoadedProject) -> None:
    """Another site cannot post the login form to sign a visitor in to the attacker's account."""
    account(project, "viewer")
    attempts = [
        ({}, None),  # no token at all
        ({"csrf_token": "a" * 43}, None),  # a token but no cookie: not from our page
        ({"csrf_token": "a" * 43}, "b" * 43),  # they differ
        ({"csrf_token": ""}, ""),
    ]
    for extra, cookie in attempts:
        web.cookies.clear()
        if cookie is not None:
            web.cookies.set(LOGIN_CSRF_COOKIE, cookie)
        response = web.post("/login", data={"email": "viewer@example.org", "password": PASSWORD, **extra}, follow_redirects=False)
        assert response.status_code == 403, (extra, cookie)
        assert "The login form has expired" in response.text
        assert SESSION_COOKIE not in set_cookies(response)
    web.cookies.clear()
    assert form_login(web, "viewer@example.org").status_code == 303  # the real form works


# --- next= ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example", "http:/evil.example", "javascript:alert(1)", "/login", "/logout", " /x", "/\r\nSet-Cookie: x=1", ""]
)
def test_next_cannot_leave_the_site(web: TestClient, project: LoadedProject, target: str) -> None:
    account(project, "viewer")
    response = form_login(web, "viewer@example.org", next_=target)
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_next_keeps_a_local_path(web: TestClient, project: LoadedProject) -> None:
    account(project, "viewer")
    assert form_login(web, "viewer@example.org", next_="/dashboards/flake_rate?region=North&region=South").headers["location"] == "/dashboards/flake_rate?region=North&region=South"
    assert 'name="next" value="/tables/x.csv"' in TestClient(web.app).get("/login?next=/tables/x.csv").text


@given(st.text(max_size=40))
def test_safe_next_always_names_a_path_here(target: str) -> None:
    result = safe_next(target)
    parts = urlsplit(result)
    assert result.startswith("/") and not result.startswith("//") and "\\" not in result
    assert parts.scheme == "" and parts.netloc == ""
    assert result in (target, "/")


# --- the login rate limit on the web ------------------------------------------------------------


def test_too_many_failed_logins_get_429_then_recover(web: TestClient, project: LoadedProject, clock: Clock) -> None:
    account(project, "viewer")
    for _ in range(5):
        assert form_login(web, "viewer@example.org", "wrong password!").status_code == 401
    limited = form_login(web, "viewer@example.org")  # the right password, too late
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == str(15 * 60)
    assert "Too many failed logins" in limited.text and "Wait 15 minutes and try again" in limited.text
    assert SESSION_COOKIE not in set_cookies(limited)
    clock.advance(minutes=15, seconds=1)
    assert form_login(web, "viewer@example.org").status_code == 303


# --- the `headwater user` commands and the demo -------------------------------------------------


def hw(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, stdin=stdin, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200"}, timeout=60)


def test_user_add_from_the_command_line(empty_project: LoadedProject) -> None:
    root = empty_project.root
    added = hw("user", "add", "Ana@Example.org", "--role", "analyst", "--password-stdin", cwd=root, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "Added ana@example.org as analyst" in added.stdout
    assert PASSWORD not in added.stdout + added.stderr
    db = open_system_db(empty_project)
    try:
        assert Accounts(db).login("ana@example.org", PASSWORD, ip="127.0.0.1").user.role is Role.analyst
    finally:
        db.close()
    listed = hw("user", "list", cwd=root)
    assert "ana@example.org" in listed.stdout and "analyst" in listed.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["--password-stdin"], "too short\n", "The password is too short: at least 10 characters"),
        ([], None, "No terminal to ask for the password"),
        (["--role", "owner", "--password-stdin"], PASSWORD + "\n", "No role named 'owner'"),
    ],
    ids=["weak-password", "no-terminal", "unknown-role"],
)
def test_user_add_errors_are_clear(empty_project: LoadedProject, args: list[str], stdin: str | None, says: str) -> None:
    result = hw("user", "add", "ana@example.org", *args, cwd=empty_project.root, stdin=stdin)
    assert result.returncode == ExitCode.USER_ERROR, result.stdout + result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_user_add_twice_is_a_clear_error(empty_project: LoadedProject) -> None:
    account(empty_project, "viewer", "ana@example.org")
    result = hw("user", "add", "ANA@example.org", "--role", "admin", "--password-stdin", cwd=empty_project.root, stdin=PASSWORD + "\n")
    assert result.returncode == ExitCode.USER_ERROR
    assert "There is already an account for ana@example.org" in result.stderr
    assert "headwater user set-role ana@example.org admin" in result.stderr
    bad = hw("user", "add", "not-an-address", cwd=empty_project.root)
    assert bad.returncode == ExitCode.USER_ERROR and "is not an e-mail address" in bad.stderr


def test_user_role_password_disable_commands(empty_project: LoadedProject) -> None:
    root = empty_project.root
    account(empty_project, "viewer", "ana@example.org")
    assert "ana@example.org is now admin" in hw("user", "set-role", "ana@example.org", "admin", cwd=root).stdout
    changed = hw("user", "set-password", "ana@example.org", "--password-stdin", cwd=root, stdin="a whole new password\n")
    assert changed.returncode == 0 and "its sessions were ended" in changed.stdout
    assert "disabled" in hw("user", "disable", "ana@example.org", cwd=root).stdout
    db = open_system_db(empty_project)
    try:
        with pytest.raises(AccountDisabled):
            Accounts(db).login("ana@example.org", "a whole new password", ip="127.0.0.1")
        hw("user", "enable", "ana@example.org", cwd=root)
        assert Accounts(db).login("ana@example.org", "a whole new password", ip="127.0.0.1").user.role is Role.admin
    finally:
        db.close()
    missing = hw("user", "disable", "bob@example.org", cwd=root)
    assert missing.returncode == ExitCode.USER_ERROR and "No account for bob@example.org" in missing.stderr


def test_the_demo_prints_how_to_log_in_and_the_account_works(empty_project: LoadedProject, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's admin account: printed after the run (the pipeline itself is test_demo_cli.py's)."""
    from typer.testing import CliRunner

    import headwater.demo
    from headwater.cli import main

    monkeypatch.setattr(headwater.demo, "prepare_demo", lambda *args, **kwargs: empty_project)
    monkeypatch.setattr(main, "_run_and_report", lambda *args, **kwargs: None)
    passwords = []
    for _ in range(2):
        result = CliRunner().invoke(main.app, ["demo", str(empty_project.root), "--no-serve"])
        assert result.exit_code == 0, result.output
        found = re.search(r"Log in at (\S+) .*as (\S+) with the password (\S+) ", result.output)
        assert found, result.output
        assert found.group(2) == "admin@example.org"
        passwords.append(found.group(3))
    assert passwords[0] != passwords[1]  # a new one each time the demo starts
    with TestClient(create_app(empty_project)) as client:
        assert form_login(client, "admin@example.org", passwords[0]).status_code == 401
        assert form_login(client, "admin@example.org", passwords[1]).status_code == 303
        assert "admin@example.org · admin" in client.get("/runs").text


def test_annotated_require_gives_the_user(app: Any, project: LoadedProject) -> None:
    def whoami(user: Annotated[SessionUser, Depends(require())]) -> dict[str, str]:
        return {"email": user.email, "role": str(user.role)}

    app.add_api_route("/api/whoami", whoami)
    account(project, "analyst")
    with TestClient(app) as client:
        assert client.get("/api/whoami").status_code == 401
        form_login(client, "analyst@example.org")
        assert client.get("/api/whoami").json() == {"email": "analyst@example.org", "role": "analyst"}

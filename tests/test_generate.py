"""Tests for the demo's source database generator (headwater.demo.generate)."""

from __future__ import annotations

import re
import sqlite3
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.demo.generate import STATUSES, generate_campaign_db

try:
    from reference import flake_rate_weekly, parse_utc, week_start
except ImportError:  # tests/ imported as a package
    from tests.reference import flake_rate_weekly, parse_utc, week_start

TODAY = date(2025, 10, 15)  # a Wednesday
TZ = "America/New_York"
SCHEMA = {
    "regions": ["region_id", "name"],
    "locations": ["location_id", "name", "region_id"],
    "organizers": ["organizer_id", "name", "region_id"],
    "events": ["event_id", "event_type", "location_id", "organizer_id", "starts_at"],
    "volunteers": ["volunteer_id", "first_name", "last_name", "phone", "email"],
    "signups": ["signup_id", "volunteer_id", "event_id", "created_at", "updated_at"],
    "signup_statuses": ["signup_status_id", "signup_id", "status", "created_at"],
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\Z")


def dump(path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in SCHEMA}


def scalar(con: sqlite3.Connection, sql: str):
    return con.execute(sql).fetchone()[0]


@pytest.fixture(scope="module", params=[2_000, 50_000])
def campaign(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("campaign") / "campaign.db"
    counts = generate_campaign_db(path, request.param, today=TODAY, timezone=TZ)
    con = sqlite3.connect(path)
    yield path, con, counts, request.param
    con.close()


def test_same_arguments_give_same_rows_and_other_seed_differs(tmp_path):
    paths = [tmp_path / name for name in ("a.db", "b.db", "c.db")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        generate_campaign_db(path, 2_000, seed=seed, today=TODAY, timezone=TZ)
    a, b, c = map(dump, paths)
    assert a == b
    assert a["signup_statuses"] != c["signup_statuses"]
    assert a["organizers"] != c["organizers"]


def test_replaces_existing_file_and_reports_progress(tmp_path):
    path = tmp_path / "campaign.db"
    path.write_text("not a database")
    messages = []
    counts = generate_campaign_db(path, 500, today=TODAY, progress=messages.append)
    assert counts["signups"] == 500
    assert "signup_statuses" in messages
    assert not list(tmp_path.glob("*.tmp"))


def test_schema_is_exact(campaign):
    _, con, _, _ = campaign
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == set(SCHEMA)
    for table, columns in SCHEMA.items():
        assert [r[1] for r in con.execute(f"PRAGMA table_info({table})")] == columns
    indexed = {(t, info[2]) for t in ("signups", "signup_statuses")
               for idx in con.execute(f"PRAGMA index_list({t})")
               for info in con.execute(f"PRAGMA index_info({idx[1]})")}
    assert {("signups", "event_id"), ("signup_statuses", "signup_id")} <= indexed


def test_counts_match_tables(campaign):
    _, con, counts, n = campaign
    assert counts == {t: scalar(con, f"SELECT count(*) FROM {t}") for t in SCHEMA}
    assert counts["signups"] == n
    assert 6 <= counts["regions"] <= 10
    assert 2.2 <= counts["signup_statuses"] / n <= 3.0


def test_values_are_well_formed(campaign):
    _, con, _, _ = campaign
    statuses = {r[0] for r in con.execute("SELECT DISTINCT status FROM signup_statuses")}
    assert statuses == set(STATUSES)
    types = {r[0] for r in con.execute("SELECT DISTINCT event_type FROM events")}
    assert types == {"Phone Bank", "Canvass", "Text Bank"}
    for sql in ("SELECT starts_at FROM events", "SELECT created_at FROM signups",
                "SELECT updated_at FROM signups", "SELECT created_at FROM signup_statuses"):
        assert all(isinstance(v, str) and TIMESTAMP.match(v) for (v,) in con.execute(sql)), sql
    orphans = scalar(con, """SELECT count(*) FROM signups s
        LEFT JOIN events e USING (event_id) LEFT JOIN volunteers v USING (volunteer_id)
        WHERE e.event_id IS NULL OR v.volunteer_id IS NULL""")
    assert orphans == 0


def test_organizers_unique_and_in_the_event_region(campaign):
    _, con, _, _ = campaign
    assert scalar(con, "SELECT count(DISTINCT name) = count(*) FROM organizers")
    mismatched = scalar(con, """SELECT count(*) FROM events e
        JOIN locations l USING (location_id) JOIN organizers o USING (organizer_id)
        WHERE l.region_id <> o.region_id""")
    assert mismatched == 0
    assert scalar(con, "SELECT count(*) FROM events WHERE organizer_id NOT IN "
                       "(SELECT organizer_id FROM organizers)") == 0


def test_status_histories(campaign):
    _, con, _, n = campaign
    signups = {sid: (created, updated) for sid, created, updated in
               con.execute("SELECT signup_id, created_at, updated_at FROM signups")}
    histories: dict[int, list[tuple[str, str]]] = {}
    previous, ties, long_histories = "", 0, 0
    for _, signup_id, status, created_at in con.execute(
            "SELECT * FROM signup_statuses ORDER BY signup_status_id"):
        assert created_at >= previous  # ids follow time, globally
        previous = created_at
        history = histories.setdefault(signup_id, [])
        ties += bool(history) and history[-1][1] == created_at
        history.append((status, created_at))
    assert histories.keys() == signups.keys()
    for signup_id, history in histories.items():
        created, updated = signups[signup_id]
        assert history[0] == ("Scheduled", created)
        assert history[-1][1] == updated
        long_histories += len(history) >= 5
    assert ties > 0 and long_histories > 0
    assert ties < 0.03 * n


def test_nothing_happens_after_the_snapshot(campaign):
    _, con, _, _ = campaign
    tomorrow = datetime.combine(TODAY + timedelta(days=1), time(), ZoneInfo(TZ))
    last = parse_utc(scalar(con, "SELECT max(created_at) FROM signup_statuses"))
    assert last < tomorrow
    first_event = parse_utc(scalar(con, "SELECT min(starts_at) FROM events"))
    assert first_event.astimezone(ZoneInfo(TZ)).date() >= week_start(TODAY) - timedelta(weeks=52)


def test_about_half_of_past_signups_flake(campaign):
    path, _, _, _ = campaign
    weeks = flake_rate_weekly(path, timezone=TZ, today=TODAY)
    past = [row for (week, _, _), row in weeks.items() if week < week_start(TODAY)]
    signups = sum(r["total_signups"] for r in past)
    assert 0.35 <= sum(r["total_flakes"] for r in past) / signups <= 0.65
    assert 0.005 <= sum(r["scheduled"] for r in past) / signups <= 0.05  # never updated
    assert any(r["is_current_week"] for r in weeks.values())
    future = [row for (week, _, _), row in weeks.items() if week > week_start(TODAY)]
    assert future and all(r["completed"] == r["no_show"] == 0 for r in future)


def test_event_times_are_local_and_friday_nights_are_saturday_in_utc(campaign):
    _, con, _, _ = campaign
    zone = ZoneInfo(TZ)
    crossing = 0
    for (starts_at,) in con.execute("SELECT starts_at FROM events"):
        utc = parse_utc(starts_at)
        assert time(7) <= utc.astimezone(zone).time() <= time(22)
        crossing += utc.astimezone(zone).weekday() == 4 and utc.weekday() == 5
    assert crossing > 0


def test_local_start_times_follow_the_timezone(tmp_path):
    path = tmp_path / "tokyo.db"
    generate_campaign_db(path, 2_000, today=TODAY, timezone="Asia/Tokyo")
    zone = ZoneInfo("Asia/Tokyo")
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT starts_at FROM events").fetchall()
    local = [parse_utc(s).astimezone(zone) for (s,) in rows]
    assert all(time(7) <= t.time() <= time(22) for t in local)
    # early Saturday in Tokyo is still Friday in UTC
    assert any(t.weekday() == 5 and t.astimezone(ZoneInfo("UTC")).weekday() == 4 for t in local)


@given(st.dates(min_value=date(1, 1, 6)))  # the first Saturday
def test_week_start_is_the_saturday_on_or_before(day):
    start = week_start(day)
    assert start.weekday() == 5
    assert timedelta(0) <= day - start <= timedelta(days=6)

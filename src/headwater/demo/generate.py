"""Generate the demo's source database: a political campaign's volunteer-shift records in SQLite.

The bulk tables (events, volunteers, signups, signup_statuses) are produced by DuckDB SQL in which
every "random" choice is ``hash(key, salt, seed) % n``: deterministic, and safe under DuckDB's
parallelism (``random()`` is not). The results are written into SQLite through DuckDB's sqlite
extension. The small dimension tables come from Python's seeded ``random.Random``.

All timestamps are stored as UTC text 'YYYY-MM-DD HH:MM:SS'. Events are planned in local time of
``timezone`` and then converted, so Friday-evening events land on Saturday in UTC.

Next to the database it writes ``organizers.xlsx``, the field team's own contact list for the same
organizers, with the mess such sheets have: a title row above the header, trailing spaces,
region names in any case, phone numbers written every which way (one stored as a number that Excel
shows as 2.03E+09), dates as text and as dates, and a row whose phone says "call the office". The
demo project cleans it with rules in headwater.yml.
"""

from __future__ import annotations

import datetime
import os
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from headwater.sqltext import literal, one_value

__all__ = ["ROSTER_FILE", "STATUSES", "generate_campaign_db", "write_organizers_sheet"]

ROSTER_FILE = "organizers.xlsx"

STATUSES = ("Scheduled", "Confirmed", "Left Msg", "Completed", "No Show", "Cancelled", "Declined")

REGION_NAMES = [
    "North Metro", "River Valley", "Lakeshore", "Eastside", "Southern Tier", "Capitol District",
    "Highlands", "Westgate", "Prairie Plains", "Harbor Coast", "Pine Ridge", "Twin Forks",
]
PLACE_NAMES = [
    "Maple", "Oak Street", "Cedar Park", "Riverside", "Elmwood", "Brookfield", "Fairview",
    "Hillcrest", "Lincoln", "Franklin", "Union Square", "Greenville", "Ashland", "Bayview",
    "Clearwater", "Dover", "Easton", "Glenwood", "Hampton", "Kingsley", "Lakeview", "Millbrook",
    "Northgate", "Oakridge", "Parkside", "Quarry Hill", "Rosedale", "Springfield", "Stonebridge",
    "Summit", "Westfield", "Willow Creek", "Woodlawn", "Harbor Point", "Cherry Hill",
    "Meadowbrook", "Mill Pond", "Old Town", "Sunset Ridge", "Highland Park", "Fox Run",
    "Eagle Rock", "Silver Lake", "Red Oak", "Bridgeport", "Cold Spring", "Deer Path",
    "Beacon Hill", "Canal Street", "Market Square", "Grand Avenue", "Orchard", "Pleasant Valley",
    "Ridgeway", "Sandy Hook", "Three Rivers", "Vista", "Windsor", "Hickory", "Juniper", "Laurel",
    "Magnolia", "Sycamore", "Chestnut", "Birchwood", "Aspen", "Hawthorne", "Cypress", "Poplar",
    "Sequoia", "Spruce", "Walnut",
]
LOCATION_KINDS = [
    "Field Office", "Community Center", "Public Library", "Union Hall", "Church Hall", "Rec Center",
    "Coffee House", "VFW Post",
]
FIRST_NAMES = [
    "Maria", "James", "Aisha", "Robert", "Mei", "David", "Sofia", "Michael", "Fatima", "William",
    "Priya", "Joseph", "Elena", "Daniel", "Grace", "Carlos", "Hannah", "Thomas", "Yuki", "Kevin",
    "Olivia", "Andre", "Emma", "Luis", "Chloe", "Samuel", "Nadia", "Brian", "Isabel", "Marcus",
    "Leah", "Omar", "Rachel", "Tyrone", "Ana", "Patrick", "Zoe", "Ahmed", "Julia", "Ethan",
    "Keisha", "Noah", "Lucia", "Ryan", "Amara", "Jacob", "Rosa", "Derek", "Linh", "Gabriel",
]
LAST_NAMES = [
    "Garcia", "Smith", "Johnson", "Nguyen", "Williams", "Brown", "Martinez", "Lee", "Davis",
    "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Thompson",
    "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Hill", "Green", "Adams", "Baker", "Nelson", "Carter", "Mitchell", "Perez",
    "Roberts", "Patel", "Kim", "Chen", "Okafor", "Murphy", "Rivera", "Cohen", "Singh", "Khan",
    "Sullivan", "Reyes",
]

SCHEMA = """
CREATE TABLE regions (region_id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE locations (location_id INTEGER PRIMARY KEY, name TEXT NOT NULL,
    region_id INTEGER NOT NULL REFERENCES regions);
CREATE TABLE organizers (organizer_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    region_id INTEGER NOT NULL REFERENCES regions);
CREATE TABLE events (event_id INTEGER PRIMARY KEY, event_type TEXT NOT NULL,
    location_id INTEGER NOT NULL REFERENCES locations,
    organizer_id INTEGER NOT NULL REFERENCES organizers, starts_at TIMESTAMP NOT NULL);
CREATE TABLE volunteers (volunteer_id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT,
    phone TEXT, email TEXT);
CREATE TABLE signups (signup_id INTEGER PRIMARY KEY,
    volunteer_id INTEGER NOT NULL REFERENCES volunteers,
    event_id INTEGER NOT NULL REFERENCES events,
    created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
CREATE TABLE signup_statuses (signup_status_id INTEGER PRIMARY KEY,
    signup_id INTEGER NOT NULL REFERENCES signups, status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL);
"""
INDEXES = """
CREATE INDEX signups_event_id ON signups(event_id);
CREATE INDEX signup_statuses_signup_id ON signup_statuses(signup_id);
"""

WEEKS = 56  # 52 past weeks, the current week and 3 future ones
# Day of week within the Saturday..Friday week -> cumulative percentage of events on that day.
DAY_SHARES = "CASE WHEN d < 25 THEN 0 WHEN d < 40 THEN 1 WHEN d < 49 THEN 2 WHEN d < 58 THEN 3 " \
             "WHEN d < 67 THEN 4 WHEN d < 76 THEN 5 ELSE 6 END"


def generate_campaign_db(path: str | Path, signups: int = 200_000, *, seed: int = 7,
                         today: datetime.date | None = None, timezone: str = "America/New_York",
                         progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write a fresh SQLite file at `path` (replacing any existing file) and return row counts per table."""
    if signups < 0:
        raise ValueError("signups must be >= 0")
    zone = ZoneInfo(timezone)  # fails early on an unknown zone
    today = today or datetime.datetime.now(zone).date()
    say = progress or (lambda message: None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    spill = path.with_name(path.name + ".duckdb-tmp")  # DuckDB's spill space for big sorts
    _remove(tmp)
    try:
        counts = _write_dimensions(tmp, random.Random(seed))
        con = _duckdb_connection(spill)
        try:
            con.execute(f"ATTACH {literal(str(tmp))} AS c (TYPE sqlite)")
            _define_macros(con, seed, today, timezone)
            counts.update(_write_facts(con, signups, say))
            con.execute("DETACH c")
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
        say("indexes")
        with sqlite3.connect(tmp) as db:
            db.execute("PRAGMA cache_size = -262144")  # 256 MB for the index sorts
            db.executescript(INDEXES)
        db.close()
    except BaseException:
        _remove(tmp)
        raise
    _remove(path)
    os.replace(tmp, path)
    write_organizers_sheet(path, path.with_name(ROSTER_FILE), seed)
    return counts


def write_organizers_sheet(database: Path, target: Path, seed: int = 7) -> int:
    """The organizers' contact sheet, from the campaign database; returns its number of organizers."""
    import xlsxwriter

    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT o.name, r.name FROM organizers o JOIN regions r USING (region_id) ORDER BY o.organizer_id").fetchall()
    db.close()
    rng = random.Random(seed + 1)
    tmp = target.with_name(target.name + ".tmp")
    book = xlsxwriter.Workbook(str(tmp))
    sheet = book.add_worksheet("Organizers")
    bold = book.add_format({"bold": True})
    sheet.write(0, 0, "Field organizers - contact list (keep up to date!)", bold)
    sheet.write_row(2, 0, ["Organizer", "Region", "Phone", "E-mail", "Active?", "Start date"], bold)
    scientific = book.add_format({"num_format": "0.00E+00"})
    day = book.add_format({"num_format": "dd/mm/yyyy"})
    for i, (name, region) in enumerate(rows):
        r = 3 + i
        digits = f"{200 + rng.randrange(800)}555{rng.randrange(10000):04d}"
        sheet.write_string(r, 0, name + (" " if i % 3 == 0 else ""))
        sheet.write_string(r, 1, [region, region.lower(), region.upper() + " ", region.replace(" ", "  ")][i % 4])
        if i == 1:
            sheet.write_number(r, 2, int(digits), scientific)  # a phone number Excel turned into a number
        elif i == 4:
            sheet.write_string(r, 2, "call the office")
        else:
            sheet.write_string(r, 2, [f"({digits[:3]}) {digits[3:6]}-{digits[6:]}", f"{digits[:3]}-{digits[3:6]}-{digits[6:]}", digits][i % 3])
        sheet.write_string(r, 3, name.lower().replace(" ", ".") + "@campaign.example")
        sheet.write_string(r, 4, ["yes", "Y", "no", "Yes"][i % 4])
        start = datetime.date(2025, 1, 6) + datetime.timedelta(days=7 * i)
        if i % 2:
            sheet.write_datetime(r, 5, datetime.datetime.combine(start, datetime.time()), day)
        else:
            sheet.write_string(r, 5, start.strftime("%d/%m/%Y"))
    book.close()
    os.replace(tmp, target)
    return len(rows)


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)


def _duckdb_connection(spill: Path) -> duckdb.DuckDBPyConnection:
    import duckdb_ext

    ext_dir = os.path.join(next(iter(duckdb_ext.__path__)), "extensions")
    con = duckdb.connect(config={
        "extension_directory": ext_dir,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "memory_limit": "1GB",
        "temp_directory": str(spill),
    })
    con.execute("LOAD sqlite")
    return con


def _write_dimensions(path: Path, rng: random.Random) -> dict[str, int]:
    """Create the schema and fill regions, locations and organizers (each organizer name unique)."""
    regions = rng.sample(REGION_NAMES, rng.randint(6, 10))
    places = iter(rng.sample(PLACE_NAMES, len(PLACE_NAMES)))
    people = iter(rng.sample([f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES],
                             len(FIRST_NAMES) * len(LAST_NAMES)))
    locations, organizers = [], []
    for region_id, _ in enumerate(regions, 1):
        for _ in range(rng.randint(4, 7)):
            locations.append((f"{next(places)} {rng.choice(LOCATION_KINDS)}", region_id))
        for _ in range(rng.randint(3, 6)):
            organizers.append((next(people), region_id))
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO regions VALUES (?, ?)", enumerate(regions, 1))
        db.executemany("INSERT INTO locations VALUES (?, ?, ?)",
                       [(i, *row) for i, row in enumerate(locations, 1)])
        db.executemany("INSERT INTO organizers VALUES (?, ?, ?)",
                       [(i, *row) for i, row in enumerate(organizers, 1)])
    db.close()
    return {"regions": len(regions), "locations": len(locations), "organizers": len(organizers)}


def _define_macros(con: duckdb.DuckDBPyConnection, seed: int, today: datetime.date,
                   timezone: str) -> None:
    """Pseudo-random helpers and the calendar anchors (as epoch seconds where they are instants)."""
    first_saturday = today - datetime.timedelta(days=(today.weekday() - 5) % 7 + 52 * 7)
    # The data is a snapshot taken at 06:00 local time on `today`, before any event of the day.
    now = datetime.datetime.combine(today, datetime.time(6), ZoneInfo(timezone))
    con.execute(f"""
        CREATE TEMP MACRO ri(key, salt, n) AS (hash(key, salt, {int(seed)}) % n)::BIGINT;
        CREATE TEMP MACRO u(key, salt) AS ri(key, salt, 1000000) / 1e6;
        CREATE TEMP MACRO first_saturday() AS DATE '{first_saturday.isoformat()}';
        CREATE TEMP MACRO tz() AS {literal(timezone)};
        CREATE TEMP MACRO now_s() AS {int(now.timestamp())}::BIGINT;
        -- Whole seconds, so the text is 'YYYY-MM-DD HH:MM:SS' with no fraction.
        CREATE TEMP MACRO fmt(s) AS make_timestamp(s * 1000000)::VARCHAR;
    """)


def _write_facts(con: duckdb.DuckDBPyConnection, n_signups: int,
                 say: Callable[[str], None]) -> dict[str, int]:
    n_events = max(20, n_signups // 25)
    n_volunteers = max(20, n_signups // 4)
    say("events")
    con.execute(_events_sql(n_events, n_signups))
    events = _insert(con, "events", "SELECT event_id, event_type, location_id, organizer_id, "
                                    "fmt(st) FROM ev ORDER BY event_id")
    say("volunteers")
    volunteers = _insert(con, "volunteers", _volunteers_sql(n_volunteers))
    say("signups")
    con.execute(_signups_sql(n_volunteers))
    count = _insert(con, "signups", "SELECT signup_id, volunteer_id, event_id, fmt(c), "
                                    "fmt(status_ts(k - 1)) FROM su ORDER BY signup_id")
    say("signup_statuses")
    # No ids given: SQLite numbers the rows 1..n in the (chronological) order they arrive.
    statuses = _insert(con, "signup_statuses (signup_id, status, created_at)", _statuses_sql())
    return {"events": events, "volunteers": volunteers, "signups": count,
            "signup_statuses": statuses}


def _insert(con: duckdb.DuckDBPyConnection, table: str, select: str) -> int:
    return int(one_value(con.execute(f"INSERT INTO c.{table} {select}")))


def _events_sql(n_events: int, n_signups: int) -> str:
    """Events: a day of a Saturday..Friday week, a local start time fitting the day, a size weight.

    Signups are dealt out to events in proportion to the weight: event e gets the raw signup
    numbers [first_raw, first_raw + n), so the total is exactly `n_signups`.
    """
    return f"""
    CREATE TEMP TABLE org AS SELECT organizer_id, region_id,
        row_number() OVER (PARTITION BY region_id ORDER BY organizer_id) - 1 AS idx,
        count(*) OVER (PARTITION BY region_id) AS n_in_region
      FROM c.organizers;
    CREATE TEMP TABLE ev AS
    WITH base AS (
      SELECT i AS event_id, ri(i, 1, {WEEKS}) AS week, ri(i, 2, 100) AS d, ri(i, 3, 100) AS t,
             ri(i, 4, 100) AS wt, ri(i, 5, 1000) AS org_pick,
             1 + ri(i, 6, (SELECT count(*) FROM c.locations)) AS location_id
      FROM range(1, {n_events} + 1) r(i)
    ), day AS (
      SELECT *, {DAY_SHARES} AS dow FROM base  -- 0 = Saturday .. 6 = Friday
    ), timed AS (
      SELECT *,
        CASE WHEN dow = 0 AND t < 20 THEN 420 + 30 * ri(event_id, 7, 4)   -- early Sat 7:00-8:30
             WHEN dow IN (0, 1) THEN 540 + 30 * ri(event_id, 7, 11)       -- weekend 9:00-14:00
             WHEN dow = 6 AND t < 25 THEN 1200 + 30 * ri(event_id, 7, 5)  -- late Fri 20:00-22:00
             WHEN t < 70 THEN 1020 + 30 * ri(event_id, 7, 6)              -- evening 17:00-19:30
             ELSE 600 + 30 * ri(event_id, 7, 9) END AS minute,           -- daytime 10:00-14:00
        CASE WHEN dow IN (0, 1) AND t % 10 < 7 THEN 'Canvass'
             WHEN t % 10 < 6 THEN 'Phone Bank' ELSE 'Text Bank' END AS event_type,
        CASE WHEN wt < 70 THEN 1 + ri(event_id, 8, 3)
             WHEN wt < 95 THEN 5 + ri(event_id, 8, 11)
             ELSE 30 + ri(event_id, 8, 51) END AS w
      FROM day
    ), placed AS (
      SELECT t.*, o.organizer_id,
        epoch(timezone('UTC', timezone(tz(), first_saturday() + (7 * week + dow)::INT
                                              + to_minutes(minute))))::BIGINT AS st,
        sum(w) OVER (ORDER BY event_id) AS cum_w, sum(w) OVER () AS total_w
      FROM timed t JOIN c.locations l USING (location_id)
      JOIN org o ON o.region_id = l.region_id AND o.idx = t.org_pick % o.n_in_region
    )
    SELECT event_id, event_type, location_id, organizer_id, st,
      ({n_signups} * (cum_w - w) // total_w)::BIGINT AS first_raw,
      ({n_signups} * cum_w // total_w - {n_signups} * (cum_w - w) // total_w)::BIGINT AS n
    FROM placed ORDER BY event_id
    """


def _volunteers_sql(n_volunteers: int) -> str:
    firsts = ", ".join(f"'{n}'" for n in FIRST_NAMES)
    lasts = ", ".join(f"'{n}'" for n in LAST_NAMES)
    return f"""
    SELECT volunteer_id, first_name, last_name,
      CASE WHEN ri(volunteer_id, 43, 100) >= 8 THEN printf('%03d-555-%04d',
           200 + ri(volunteer_id, 44, 800), ri(volunteer_id, 45, 10000)) END AS phone,
      CASE WHEN ri(volunteer_id, 46, 100) >= 12
           THEN lower(first_name || '.' || last_name || (volunteer_id % 1000)) || '@example.com'
      END AS email
    FROM (SELECT i AS volunteer_id, [{firsts}][1 + ri(i, 41, {len(FIRST_NAMES)})] AS first_name,
                 [{lasts}][1 + ri(i, 42, {len(LAST_NAMES)})] AS last_name
          FROM range(1, {n_volunteers} + 1) r(i))
    ORDER BY volunteer_id
    """


def _signups_sql(n_volunteers: int) -> str:
    """One row per signup with the plan of its status history.

    A history is 'Scheduled' at created_at, then `m` reminder outcomes ('Left Msg'/'Confirmed'),
    then optionally a final status. Cancelled/Declined happen before the event, Completed/No Show
    after it. ~2% of past signups ('stale') never get a final status. For ~1% ('tie') the last
    status shares its timestamp with the one before. signup_id follows created_at.
    """
    regulars = max(1, n_volunteers // 10)
    return f"""
    CREATE TEMP TABLE su AS
    WITH raw AS (
      SELECT event_id, st, unnest(range(first_raw, first_raw + n)) AS raw_id FROM ev
    ), a AS (
      SELECT raw_id, event_id, st, st < now_s() AS past, ri(raw_id, 21, 1000) AS o,
        CASE WHEN ri(raw_id, 22, 10) < 3 THEN 1 + ri(raw_id, 23, {regulars})
             ELSE 1 + ri(raw_id, 23, {n_volunteers}) END AS volunteer_id,
        st - 3600 - (pow(u(raw_id, 24), 2) * 30 * 86400)::BIGINT AS c0,
        CASE WHEN ri(raw_id, 25, 1000) < 600 THEN 0 WHEN ri(raw_id, 25, 1000) < 870 THEN 1
             WHEN ri(raw_id, 25, 1000) < 950 THEN 2 ELSE 3 + ri(raw_id, 26, 4) END AS m
      FROM raw
    ), b AS (
      SELECT *, past AND o < 20 AS stale,
        CASE WHEN c0 < now_s() - 600 THEN c0
             ELSE now_s() - 600 - ri(raw_id, 27, 14 * 86400) END AS c,
        CASE WHEN past THEN CASE WHEN o < 20 THEN NULL WHEN o < 320 THEN 'No Show'
                                 WHEN o < 500 THEN 'Cancelled' WHEN o < 530 THEN 'Declined'
                                 ELSE 'Completed' END
             ELSE CASE WHEN o < 80 THEN 'Cancelled' WHEN o < 110 THEN 'Declined' END
        END AS final
      FROM a
    ), plan AS (
      SELECT *, 1 + m + (final IS NOT NULL)::INT AS k,
        coalesce(final IN ('Completed', 'No Show'), false) AS post,
        m + coalesce(final IN ('Cancelled', 'Declined'), false)::INT AS n_pre,
        least(st, now_s()) - 60 AS pe
      FROM b
    )
    SELECT row_number() OVER (ORDER BY c, raw_id) AS signup_id, *,
      k > 1 AND ri(raw_id, 28, 1000) < 10 AS tie
    FROM plan;
    -- These macros read c, pe, k, ... from the su row of the query that calls them.
    -- Pre-event step j of n_pre lies in its own slice of (c, pe), so steps stay in order.
    CREATE TEMP MACRO step_ts(j) AS c + CASE WHEN j = 0 THEN 0
      ELSE floor((pe - c) * (j - 0.5 + 0.9 * (u(raw_id * 8 + j, 29) - 0.5)) / n_pre)::BIGINT END;
    CREATE TEMP MACRO status_ts(j) AS CASE
      WHEN tie AND j = k - 1 THEN step_ts(j - 1)
      WHEN post AND j = k - 1 THEN least(st + 1800 + ri(raw_id, 30, 2 * 86400), now_s() - 1)
      ELSE step_ts(j) END;
    """


def _statuses_sql() -> str:
    """Status rows in chronological order (ties: by signup, then by step)."""
    return """
    SELECT signup_id, status, fmt(ts)
    FROM (
      SELECT signup_id, j, status_ts(j) AS ts,
        CASE WHEN j = 0 THEN 'Scheduled'
             WHEN j = k - 1 AND final IS NOT NULL THEN final
             WHEN j = m AND (stale OR ri(raw_id, 31, 10) < 7) THEN 'Confirmed'
             WHEN ri(raw_id * 8 + j, 32, 10) < 6 THEN 'Left Msg'
             ELSE 'Confirmed' END AS status
      FROM (SELECT *, unnest(range(k)) AS j FROM su)
    )
    ORDER BY ts, signup_id, j
    """

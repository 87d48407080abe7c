"""SQLite sources against real SQLite files: every value arrives as SQLite holds it, and values that
are not of their column's declared type (SQLite's dynamic typing) are quarantined with the reason or
synced as text, as the source says: never loaded as another value, never a crash."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cli_process import cli_env, run_cli
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlite_source import Harness
from warehouses import matrix_target, on_both_warehouses

from headwater.errors import ExitCode, HeadwaterError
from headwater.sources.sqlite import SQLiteSource


@pytest.fixture
def h(tmp_path: Path, request: pytest.FixtureRequest) -> Harness:
    """Into DuckDB; a test marked `on_both_warehouses` runs on each warehouse of the matrix."""
    return Harness(tmp_path, matrix_target(request))


MIXED = "CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, n NUMERIC(10,2), d DATE, ts DATETIME, s TEXT, b BLOB)"
GOOD = (1, 5, 1.5, 12.34, "2024-01-02", "2024-01-02 03:04:05", "ab  ", b"\x00\xff")
BAD = [
    (2, "five", 1.0, 1, "2024-01-02", "2024-01-02", "x", None),  # text in an INTEGER column
    (3, 7, "x", 1, None, None, None, None),  # text in a REAL column
    (4, 7, 1.0, 0.125, None, None, None, None),  # more decimals than NUMERIC(10,2) keeps
    (5, 7, 1.0, 123456789, None, None, None, None),  # too many digits before the point
    (6, 7, 1.0, "twelve", None, None, None, None),
    (7, 7, 1.0, 1, 19000, None, None, None),  # a number in a DATE column (the scanner read it as seconds: 1970-01-01)
    (8, 7, 1.0, 1, "2024-02-30", None, None, None),  # not a date
    (9, 7, 1.0, 1, "2024-01-02 05:00:00", None, None, None),  # a date with a time: DATE would drop it
    (10, 7, 1.0, 1, None, "2024-01-02 03:04:05+02:00", None, None),  # an offset the TIMESTAMP would drop
    (11, 7, 1.0, 1, None, "later", None, None),
    (12, 7, 1.0, 1, None, 1700000000, None, None),
    (13, 7, 1.0, 1, None, None, b"\xff\xfe", None),  # bytes in a TEXT column
    (14, 2**60, 1.0, 1, None, None, None, None),  # fits: a 64-bit integer
    (15, 7, 1.0, 1, "2024-13-45", "2024-01-02 25:61:00", None, None),  # shaped like dates, but SQLite's date functions give NULL
]


@on_both_warehouses
def test_values_not_of_their_declared_type_quarantine_their_rows_with_the_reason(h: Harness) -> None:
    h.sql(MIXED, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows=[GOOD, *BAD])
    stats = h.sync()["t"]
    assert h.raw("t") == [
        (1, 5, 1.5, Decimal("12.34"), dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5), "ab  ", b"\x00\xff"),
        (14, 2**60, 1.0, Decimal("1.00"), None, None, None, None),
    ]
    quarantine = {(k, c): (v, m) for k, c, v, rule, m in h.raw("t__quarantine", "key, column_name, original_value, rule, message") if rule == "type"}
    assert set(quarantine) == {
        ("id=2", "i"), ("id=3", "r"), ("id=4", "n"), ("id=5", "n"), ("id=6", "n"), ("id=7", "d"), ("id=8", "d"), ("id=9", "d"),
        ("id=10", "ts"), ("id=11", "ts"), ("id=12", "ts"), ("id=13", "s"), ("id=15", "d"), ("id=15", "ts"),
    }
    assert quarantine[("id=2", "i")] == ("five", "expected integers (declared INTEGER), found text")
    assert quarantine[("id=4", "n")][0] == "0.125" and "at most 2 decimals" in quarantine[("id=4", "n")][1]
    assert quarantine[("id=7", "d")] == ("19000", "expected dates written YYYY-MM-DD (declared DATE), found integer")
    assert quarantine[("id=13", "s")][0] == "x'FFFE'"
    assert stats.quarantined == 13 and stats.quarantine_by_rule["type (n)"] == 3 and stats.rows == 2
    assert any("column i: 1 value(s) are not integers (e.g. text 'five')" in n for n in stats.notes)

    # fixed in the source: the row arrives, and the quarantine describes the file as it is now
    h.sql("UPDATE t SET i = 6 WHERE id = 2", "SELECT 1")
    stats = h.sync()["t"]
    assert 2 in [r[0] for r in h.raw("t")] and ("id=2", "i") not in {(k, c) for k, c in h.raw("t__quarantine", "key, column_name")}
    h.sql("DELETE FROM t WHERE id > 2", "SELECT 1")
    stats = h.sync()["t"]
    assert stats.quarantined == 0 and [r[0] for r in h.raw("t")] == [1, 2]
    assert h.query("SELECT count(*) FROM duckdb_tables() WHERE table_name = 't__quarantine'") == [(0,)]


@on_both_warehouses
def test_a_row_that_turns_bad_leaves_raw_for_the_quarantine(h: Harness) -> None:
    h.sql(MIXED, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows=[GOOD, (2, 6, 1.0, 1, None, None, None, None)])
    h.sync()
    h.sql("UPDATE t SET i = 'six' WHERE id = 2", "SELECT 1")
    stats = h.sync()["t"]
    assert [r[0] for r in h.raw("t")] == [1] and stats.deleted == 1
    assert h.raw("t__quarantine", "key, original_value") == [("id=2", "six")]


@on_both_warehouses
def test_a_row_fixed_in_the_source_leaves_the_quarantine_and_the_quarantine_goes(h: Harness) -> None:
    h.sql(MIXED, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows=[GOOD, (2, "six", 1.0, 1, None, None, None, None), (3, "seven", 1.0, 1, None, None, None, None)])
    h.sync()
    assert h.raw("t__quarantine", "key, original_value") == [("id=2", "six"), ("id=3", "seven")]
    h.sql("UPDATE t SET i = 6 WHERE id = 2", "SELECT 1")
    h.sync()
    assert [r[0] for r in h.raw("t")] == [1, 2] and h.raw("t__quarantine", "key, original_value") == [("id=3", "seven")]
    h.sql("UPDATE t SET i = 7 WHERE id = 3", "SELECT 1")
    h.sync()
    assert [r[0] for r in h.raw("t")] == [1, 2, 3]
    assert h.query("SELECT count(*) FROM duckdb_tables() WHERE table_name = 't__quarantine'") == [(0,)]


@on_both_warehouses
def test_on_type_mismatch_text_syncs_the_column_as_text_keeping_every_row(h: Harness) -> None:
    h.sql(MIXED, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows=[GOOD, *BAD])
    stats = h.sync(on_type_mismatch="text")["t"]
    types = h.types("t")
    assert {c for c, t in types.items() if t == "VARCHAR"} == {"i", "r", "n", "d", "ts", "s"}  # every column with a value that does not fit
    assert types["id"] == "BIGINT" and types["b"] == "BLOB"
    rows = {r[0]: r for r in h.raw("t")}
    assert len(rows) == 1 + len(BAD) and stats.quarantined == 0
    assert rows[1] == (1, "5", "1.5", "12.34", "2024-01-02", "2024-01-02 03:04:05", "ab  ", b"\x00\xff")
    assert rows[2][1] == "five" and rows[4][3] == "0.125" and rows[7][4] == "19000" and rows[10][5] == "2024-01-02 03:04:05+02:00"
    assert rows[13][6] == "x'FFFE'" and rows[14][1] == str(2**60)
    assert any("column i is declared INTEGER but 1 value(s) are not integers (e.g. text 'five')" in n for n in stats.notes)
    assert h.query("SELECT count(*) FROM duckdb_tables() WHERE table_name = 't__quarantine'") == [(0,)]


@on_both_warehouses
def test_declared_decimals_land_as_decimal_exactly(h: Harness) -> None:
    h.sql(
        "CREATE TABLE money (id INTEGER PRIMARY KEY, amount NUMERIC(10,2), big DECIMAL(20,0), rate DECIMAL(5), wide NUMERIC(40,2), plain NUMERIC)",
        "INSERT INTO money VALUES (?, ?, ?, ?, ?, ?)",
        rows=[
            (1, 12.34, 1234567890123456789, 99999, 1.5, 1.5),
            (2, 0.1, -1234567890123456789, -5, 3, 7),
            (3, -99999999.99, 0, 0, None, None),
            (4, 5, None, None, None, None),
            (5, "7.25", None, None, None, None),  # numeric-looking text becomes a number in a NUMERIC column
        ],
    )
    h.sync()
    declared = {"id": "BIGINT", "amount": "DECIMAL(10,2)", "big": "DECIMAL(20,0)", "rate": "DECIMAL(5,0)", "wide": "DOUBLE", "plain": "DOUBLE", "_headwater_synced_at": "TIMESTAMP WITH TIME ZONE"}
    assert h.types("money") == {c: h.target.held_as(t) for c, t in declared.items()}  # BigQuery: NUMERIC, read back as DECIMAL(38,9)
    assert h.raw("money") == [
        (1, Decimal("12.34"), Decimal("1234567890123456789"), Decimal("99999"), 1.5, 1.5),
        (2, Decimal("0.10"), Decimal("-1234567890123456789"), Decimal("-5"), 3.0, 7.0),
        (3, Decimal("-99999999.99"), Decimal("0"), Decimal("0"), None, None),
        (4, Decimal("5.00"), None, None, None, None),
        (5, Decimal("7.25"), None, None, None, None),
    ]


@on_both_warehouses
def test_text_timestamps_arrive_as_the_instants_they_name(h: Harness) -> None:
    h.sql(
        "CREATE TABLE times (id INTEGER PRIMARY KEY, at TIMESTAMP, day DATE)",
        "INSERT INTO times VALUES (?, ?, ?)",
        rows=[
            (1, "2024-01-02 03:04:05", "2024-01-02"),
            (2, "2024-01-02T03:04:05.123456Z", "2024-01-02 00:00:00"),
            (3, "2024-01-02 03:04", "2024-02-29"),
            (4, "2024-01-02", "0001-01-01"),
            (5, "2024-01-02T23:59:59.999999", "9999-12-31"),
        ],
    )
    h.sync()
    assert h.raw("times") == [
        (1, dt.datetime(2024, 1, 2, 3, 4, 5), dt.date(2024, 1, 2)),
        (2, dt.datetime(2024, 1, 2, 3, 4, 5, 123456), dt.date(2024, 1, 2)),
        (3, dt.datetime(2024, 1, 2, 3, 4), dt.date(2024, 2, 29)),
        (4, dt.datetime(2024, 1, 2), dt.date(1, 1, 1)),
        (5, dt.datetime(2024, 1, 2, 23, 59, 59, 999999), dt.date(9999, 12, 31)),
    ]


integers = st.integers(min_value=-(2**63), max_value=2**63 - 1)
doubles = st.floats(allow_nan=False)  # SQLite stores NaN as NULL
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(integers, doubles, texts, st.binary(max_size=10), st.one_of(integers, doubles, texts)), min_size=1, max_size=15))
def test_values_that_fit_arrive_as_sqlite_holds_them(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[Any, ...]]) -> None:
    h = Harness(tmp_path_factory.mktemp("prop"))
    h.sql("CREATE TABLE v (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, loose)", "INSERT INTO v VALUES (?, ?, ?, ?, ?, ?)", rows=[(n, *row) for n, row in enumerate(rows)])
    h.sync()
    source = h.sql("SELECT id, i, r, s, b, loose FROM v ORDER BY id")
    raw = h.raw("v")
    assert [r[:4] for r in raw] == [r[:4] for r in source]  # integers, every double (infinities too), text
    for got, want in zip(raw, source, strict=True):
        assert bytes(got[4]) == want[4]
        loose = want[5]  # a column without a type holds anything (not blobs here): as its exact text
        if isinstance(loose, float):  # every double's bits, but the sign of a zero (SQLite's text of -0.0 is 0.0)
            assert float(got[5]).hex() == (0.0 if loose == 0 else loose).hex(), (got[5], loose)
        else:
            assert got[5] == str(loose)


def test_headwater_sync_with_a_mismatch_exits_0_and_reports_the_quarantine(h: Harness) -> None:
    h.sql(MIXED, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows=[GOOD, BAD[0]])
    (h.tmp / "headwater.yml").write_text("name: shop\nsources:\n  app:\n    type: sqlite\n    path: app.db\n")
    done = run_cli("sync", "app", "--json", "-p", h.tmp)
    assert done.returncode == 0, done.stderr
    assert '"quarantined": 1' in done.stdout and "five" in done.stdout


def test_headwater_sync_of_a_table_the_source_does_not_sync_says_which_it_does(h: Harness) -> None:
    """`headwater sync SOURCE TABLE` with a TABLE the source does not sync: a user error naming the
    table and the tables it does sync, printed once, and nothing synced."""
    h.sql("CREATE TABLE people (id INTEGER PRIMARY KEY)", "CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    (h.tmp / "headwater.yml").write_text("name: shop\nsources:\n  app:\n    type: sqlite\n    path: app.db\n")
    result = run_cli("sync", "app", "people", "no_such_table", "-p", h.tmp, env=cli_env(NO_COLOR="1", COLUMNS="250"))
    assert result.returncode == ExitCode.USER_ERROR, result.stdout + result.stderr
    err = " ".join(result.stderr.split())  # the console wraps long lines
    assert "no_such_table is not one of the tables this source syncs" in err, err
    assert "it syncs: orders, people" in err and "Fix: Check the table name" in err, err
    assert err.count("is not one of the tables") == 1 and "Traceback" not in err, err
    assert "people" not in result.stdout  # the known table was not synced either


def test_a_blob_that_appears_in_a_text_column_after_the_check_stops_the_read(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read's own guard (a value changed between the check and the read): a TEXT column's blob
    is read as the mark, which used to pass as text ('\\x01blob' cast to VARCHAR fine); text that
    itself starts with the mark's character still arrives as it is."""
    h.sql("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, n NUMERIC(10,2))", "INSERT INTO t VALUES (?, ?, ?)", rows=[(1, "\x01blob", 1), (2, "\x01", 2), (3, "ok", 3)])
    h.sync()
    assert h.raw("t") == [(1, "\x01blob", Decimal("1.00")), (2, "\x01", Decimal("2.00")), (3, "ok", Decimal("3.00"))]
    h.sql("INSERT INTO t VALUES (?, ?, ?)", rows=[(4, b"\x00", 4)])
    monkeypatch.setattr(SQLiteSource, "_find_misfits", lambda self, con, table, checked: {})  # the check sees nothing: as if the blob came later
    with pytest.raises(HeadwaterError, match=r"column t\.s \(key id=4\) holds a value its type does not allow \(it changed while the table was read\)"):
        h.sync()
    assert [r[0] for r in h.raw("t")] == [1, 2, 3]


# --- both reads against a reference: Python's sqlite3 and docs/sync.md's type table, written out again -----------

def _two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n:02d}")


_days = st.builds(lambda y, m, d: f"{y:04d}-{m}-{d}", st.integers(1, 9999), _two(0, 13), _two(0, 31))
_clock = st.builds(lambda h, m, s: f"{h}:{m}" + (f":{s}" if s else ""), _two(0, 25), _two(0, 61), st.one_of(st.just(""), _two(0, 61)))
_fraction = st.one_of(st.just(""), st.text("0123456789", min_size=0, max_size=8).map(lambda f: "." + f))
_stamps = st.builds(lambda d, sep, c, f, z: d + sep + c + (f if c.count(":") == 2 else "") + z, _days, st.sampled_from([" ", "T"]), _clock, _fraction, st.sampled_from(["", "", "Z", "+02:00"]))
_any_value = st.one_of(st.none(), integers, doubles, texts, st.sampled_from(["\x01blob", "\x01", "5", " 7", "1.5"]), st.binary(max_size=6), _days, _days.map(lambda d: d + " 00:00:00"), _stamps)
_DAY = r"(\d{4})-(\d{2})-(\d{2})"
_COLUMNS = {"i": "INTEGER", "r": "REAL", "d": "DATE", "ts": "TIMESTAMP", "s": "TEXT", "b": "BLOB"}
_FITTING = (  # values of each column's type, so that whole tables fit (and the scanner reads them)
    integers,
    st.one_of(doubles, st.integers(-(2**53), 2**53)),
    st.dates().map(dt.date.isoformat),
    st.builds(lambda t, sep, z: t.isoformat(sep) + z, st.datetimes(), st.sampled_from([" ", "T"]), st.sampled_from(["", "Z"])),
    texts,
    st.one_of(st.binary(max_size=6), texts, integers),
)
_tables = st.one_of(
    st.lists(st.tuples(*_FITTING), min_size=1, max_size=12),
    st.lists(st.one_of(st.tuples(*_FITTING), st.tuples(*[_any_value] * len(_COLUMNS))), min_size=1, max_size=12),
)


def _day(text: str) -> dt.date | None:
    match = re.fullmatch(_DAY, text)
    try:
        return dt.date(*map(int, match.groups())) if match else None
    except ValueError:
        return None


def _expected(declared: str, storage: str, value: Any) -> tuple[bool, Any]:
    """(fits, raw's value) for a value SQLite holds with this storage class, by docs/sync.md's table."""
    if value is None:
        return True, None
    if declared == "INTEGER":
        return storage == "integer", value
    if declared == "REAL":
        fits = storage == "real" or (storage == "integer" and abs(value) <= 2**53)
        return fits, float(value) if fits else None
    if declared == "TEXT":
        return storage != "blob", value
    if declared == "BLOB":
        return True, value if storage == "blob" else str(value).encode()
    if storage != "text":
        return False, None
    if declared == "DATE":
        day = _day(value.removesuffix(" 00:00:00"))
        return day is not None, day
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?Z?", value)
    day = _day(match.group(1)) if match else None
    if match is None or day is None:
        return False, None
    hour, minute, second = (int(g or 0) for g in match.group(2, 3, 4))
    if hour > 23 or minute > 59 or second > 59:
        return False, None
    return True, dt.datetime.combine(day, dt.time(hour, minute, second, int((match.group(5) or "").ljust(6, "0"))))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=_tables)
def test_both_reads_agree_with_a_reference_on_random_values_of_mixed_types(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, rows: list[tuple[Any, ...]]) -> None:
    """Random values, most of them not of their column's declared type: with DuckDB's scanner
    allowed (taken when every value fits and none is a real in a TEXT or BLOB column) and with the
    text read only, raw holds exactly the rows whose values all fit, as the reference reads them, and
    the quarantine names every value that does not."""
    ddl = "CREATE TABLE t (id INTEGER PRIMARY KEY, " + ", ".join(f"{c} {t}" for c, t in _COLUMNS.items()) + ")"
    chosen: list[bool] = []
    read_path = SQLiteSource._read_path
    monkeypatch.setattr(SQLiteSource, "_read_path", lambda self, table, found: chosen.append(read_path(self, table, found)) or chosen[-1])
    for scan in (True, False):
        monkeypatch.setattr(SQLiteSource, "scan", scan)
        h = Harness(tmp_path_factory.mktemp("both"))
        h.sql(ddl, f"INSERT INTO t VALUES (?{', ?' * len(_COLUMNS)})", rows=[(n, *row) for n, row in enumerate(rows)])
        stored = h.sql(f"SELECT id, {', '.join(f'typeof({c}), {c}' for c in _COLUMNS)} FROM t ORDER BY id")
        want_rows, want_quarantine, unsafe = [], set(), False
        for row in stored:
            fits = [_expected(declared, row[1 + 2 * n], row[2 + 2 * n]) for n, declared in enumerate(_COLUMNS.values())]
            want_quarantine |= {(f"id={row[0]}", c) for c, (ok, _) in zip(_COLUMNS, fits, strict=True) if not ok}
            unsafe |= any(row[1 + 2 * n] == "real" for n, c in enumerate(_COLUMNS) if c in ("s", "b"))
            if all(ok for ok, _ in fits):
                want_rows.append((row[0], *(value for _, value in fits)))
        chosen.clear()
        h.sync()
        assert chosen == [scan and not want_quarantine and not unsafe]
        event(f"scan allowed: {scan}, scanner read: {chosen[0]}")
        got = [(*r[:6], bytes(r[6]) if r[6] is not None else None) for r in h.raw("t")]
        for g, w in zip(got, want_rows, strict=True):
            assert g[:6] == w[:6], (g, w)
            if isinstance(w[6], bytes) or w[6] is None:
                assert g[6] == w[6], (g, w)
            else:  # a real in a BLOB column: the bytes of its exact text
                assert float(g[6].decode()) == w[6], (g, w)
        quarantined = set(h.raw("t__quarantine", "key, column_name")) if want_quarantine else set()
        assert quarantined == want_quarantine


def test_a_value_committed_between_the_check_and_the_scan_is_read_again_as_text(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's scanner reads on connections of its own, after the check: a number written into a
    TIMESTAMP column in between it would read as seconds since 1970. The table's commit waits for
    SQLite's data_version; changed, the table is read again with the guarded text read."""
    h.sql("CREATE TABLE t (id INTEGER PRIMARY KEY, at TIMESTAMP)", "INSERT INTO t VALUES (?, ?)", rows=[(1, "2024-01-02 03:04:05"), (2, "2024-01-03 00:00:00")])
    chosen: list[bool] = []
    find, read_path = SQLiteSource._find_misfits, SQLiteSource._read_path

    def find_then_write(self: SQLiteSource, con: Any, table: Any, checked: Any) -> Any:
        found = find(self, con, table, checked)
        if not chosen:  # the first check only: then a writer commits
            h.sql("UPDATE t SET at = 1700000000 WHERE id = 1", "SELECT 1")
        return found

    monkeypatch.setattr(SQLiteSource, "_find_misfits", find_then_write)
    monkeypatch.setattr(SQLiteSource, "_read_path", lambda self, table, found: chosen.append(read_path(self, table, found)) or chosen[-1])
    stats = h.sync()["t"]
    assert chosen == [True, False]  # the scanner first, then the text read
    assert h.raw("t") == [(2, dt.datetime(2024, 1, 3))] and stats.quarantined == 1
    assert h.raw("t__quarantine", "key, original_value") == [("id=1", "1700000000")]

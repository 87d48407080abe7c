"""Checks that gate publishing: reconciliations, freshness and dbt's tests, on real DuckDB and SQLite files."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_warehouse import rows as pg_rows
from warehouses import Target, kinds_without_bigquery, matrix_target, on_both_warehouses, prefixed_sql, upload

from headwater.checks import SAMPLE_ROWS, CheckOutcome, dbt_test_outcomes, json_safe, run_checks
from headwater.config.model import FreshnessCheck, LoadedProject, Project, ReconcileCheck
from headwater.system.models import CheckResult
from headwater.transform.dbt import BuildResult, NodeResult
from headwater.warehouse import WarehouseEngine, connect, open_warehouse

UTC = dt.UTC

# --- fixtures: a project with one SQLite source and a build database --------------------------


def make_project(root: Path, warehouse: Target | None = None) -> LoadedProject:
    settings: dict[str, Any] = {"name": "checked", "sources": {"app": {"type": "sqlite", "path": "data/app.db"}}}
    if warehouse is not None and warehouse.postgres:
        settings["warehouse"] = {"type": "postgres", "url": warehouse.url}
    if warehouse is not None and warehouse.bigquery:
        settings["warehouse"] = warehouse.settings().model_dump(exclude_defaults=True) | {"type": "bigquery"}
    config = Project.model_validate(settings)
    return LoadedProject(root=root, file=root / "headwater.yml", config=config)


def make_source(root: Path) -> Path:
    """data/app.db: 5 sign-ups over 3 days, times stored as text as SQLite does."""
    (root / "data").mkdir(exist_ok=True)
    path = root / "data" / "app.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE signups (id INTEGER PRIMARY KEY, day TEXT, region TEXT, created_at TEXT)")
        con.executemany(
            "INSERT INTO signups VALUES (?, ?, ?, ?)",
            [
                (1, "2026-01-01", "north", "2026-01-01 09:00:00"),
                (2, "2026-01-01", "south", "2026-01-01 10:00:00"),
                (3, "2026-01-02", "north", "2026-01-02 11:00:00"),
                (4, "2026-01-03", "north", "2026-01-03 12:00:00"),
                (5, "2026-01-03", "south", "2026-01-03 13:00:00"),
            ],
        )
    con.close()
    return path


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> LoadedProject:
    """On DuckDB; a test marked `on_both_warehouses` runs on each warehouse of the matrix."""
    make_source(tmp_path)
    return make_project(tmp_path, matrix_target(request))


@pytest.fixture
def build(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[duckdb.DuckDBPyConnection]:
    """A build connection holding marts.signups: a DuckDB file, or (matrix, PostgreSQL) the
    warehouse's own build connection, the tables created in PostgreSQL through it, or (BigQuery) the
    local mirror, marts.signups loaded from it into BigQuery (`to_bigquery`), where checks query it."""
    target = matrix_target(request)
    con = target.engine(tmp_path).connect_build() if target is not None and target.through_engine else connect(tmp_path / "build.duckdb")
    con.execute("CREATE SCHEMA raw_app")
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.signups (id INTEGER, day DATE, region VARCHAR)")
    con.execute(
        "INSERT INTO marts.signups VALUES (1, '2026-01-01', 'north'), (2, '2026-01-01', 'south'), "
        "(3, '2026-01-02', 'north'), (4, '2026-01-03', 'north'), (5, '2026-01-03', 'south')"
    )
    if target is not None and target.bigquery:
        to_bigquery(target.engine(tmp_path), con)
    try:
        yield con
    finally:
        con.close()


def reconcile(left: str, right: str, *, left_source: str | None = None, right_source: str | None = "app", **extra: Any) -> ReconcileCheck:
    return ReconcileCheck.model_validate(
        {
            "type": "reconcile",
            "name": extra.pop("name", "signups_reach_the_mart"),
            "left": {"sql": left, "source": left_source},
            "right": {"sql": right, "source": right_source},
            **extra,
        }
    )


def to_bigquery(engine: Any, build: duckdb.DuckDBPyConnection) -> None:
    """BigQuery: marts.signups, as the mirror holds it now, loaded into BigQuery's marts dataset."""
    upload(engine, build, "marts", "signups", "marts")


def engine_of(project: LoadedProject) -> WarehouseEngine | None:
    """The engine a run hands `run_checks` on a PostgreSQL or BigQuery warehouse (None: DuckDB, the default)."""
    return open_warehouse(project.root, project.config.warehouse) if project.config.warehouse.type != "duckdb" else None


def on_the_warehouse(project: LoadedProject, check: ReconcileCheck | FreshnessCheck) -> ReconcileCheck | FreshnessCheck:
    """``check`` as its author writes it for the project's warehouse: on BigQuery, its warehouse
    side's SQL names the datasets with the prefix (marts.signups is <prefix>marts.signups there)."""
    warehouse: Any = project.config.warehouse
    if warehouse.type != "bigquery" or not isinstance(check, ReconcileCheck):
        return check
    sides = {name: side.model_copy(update={"sql": prefixed_sql(side.sql, warehouse.dataset_prefix)}) for name, side in (("left", check.left), ("right", check.right)) if side.source is None}
    return check.model_copy(update=sides)


def one(project: LoadedProject, build: duckdb.DuckDBPyConnection, check: ReconcileCheck | FreshnessCheck, now: dt.datetime | None = None) -> CheckOutcome:
    [outcome] = run_checks(project, [on_the_warehouse(project, check)], build, now=now, warehouse=engine_of(project))
    assert outcome.kind == check.type
    assert outcome.name == check.name
    if outcome.sample is not None:
        json.dumps(outcome.sample, allow_nan=False)  # what the system database stores
    return outcome


# --- reconcile: one number --------------------------------------------------------------------


@on_both_warehouses
def test_single_value_pass(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    outcome = one(project, build, reconcile("SELECT count(*) FROM marts.signups", "SELECT count(*) FROM signups"))
    assert (outcome.status, outcome.severity, outcome.observed, outcome.expected) == ("pass", "error", "5", "5")
    assert outcome.message is None and outcome.sample is None
    assert not outcome.blocks_publish


def test_single_value_fail_names_both_numbers(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    outcome = one(project, build, reconcile("SELECT 200000", "SELECT 199998"))
    assert outcome.status == "fail" and outcome.blocks_publish
    assert (outcome.observed, outcome.expected) == ("200,000", "199,998")
    assert outcome.message == "signups_reach_the_mart: left 200,000 ≠ right 199,998 (difference 2, tolerance 0)"


@on_both_warehouses
def test_source_on_the_left_and_warehouse_on_the_right(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    check = reconcile("SELECT count(*) FROM signups WHERE region = 'north'", "SELECT count(*) FROM marts.signups", left_source="app", right_source=None)
    outcome = one(project, build, check)
    assert outcome.status == "fail"
    assert outcome.message == "signups_reach_the_mart: left 3 ≠ right 5 (difference 2, tolerance 0)"


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [(0, "fail"), (1.5, "fail"), (2, "pass"), (2.5, "pass")],
)
def test_absolute_tolerance(project: LoadedProject, build: duckdb.DuckDBPyConnection, tolerance: float, status: str) -> None:
    outcome = one(project, build, reconcile("SELECT 200000", "SELECT 199998", tolerance=tolerance))
    assert outcome.status == status
    if tolerance:
        assert outcome.expected == f"199,998 ± {tolerance:g}"


@pytest.mark.parametrize(
    ("tolerance", "percent", "status"),
    [
        (0, 0.5, "pass"),  # allowed 0.5% of 200,000 = 1,000: exactly the difference
        (0, 0.4, "fail"),  # allowed 800
        (1000, 0.4, "pass"),  # the larger of the two allowances wins
        (999, 0.4, "fail"),
    ],
)
def test_percent_tolerance(project: LoadedProject, build: duckdb.DuckDBPyConnection, tolerance: float, percent: float, status: str) -> None:
    outcome = one(project, build, reconcile("SELECT 200000", "SELECT 199000", tolerance=tolerance, tolerance_percent=percent))
    assert outcome.status == status
    if (tolerance, percent) == (0, 0.4):
        assert outcome.message == "signups_reach_the_mart: left 200,000 ≠ right 199,000 (difference 1,000, allowed 800: tolerance 0.4% of left)"
        assert outcome.expected == "199,000 ± 800"


def test_decimals_floats_and_nulls_compare_exactly(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    # DuckDB DECIMAL against a SQLite REAL: 0.1 + 0.2 is 0.30000000000000004 in binary, so compare exactly
    assert one(project, build, reconcile("SELECT 12.50::DECIMAL(10, 2)", "SELECT 12.5")).status == "pass"
    assert one(project, build, reconcile("SELECT 0.3::DECIMAL(10, 2)", "SELECT 0.1 + 0.2")).status == "fail"
    assert one(project, build, reconcile("SELECT 0.3::DECIMAL(10, 2)", "SELECT 0.1 + 0.2", tolerance=1e-9)).status == "pass"
    # sum() over no rows is NULL: it counts as 0
    assert one(project, build, reconcile("SELECT sum(id) FROM marts.signups WHERE false", "SELECT 0")).status == "pass"
    # SQLite may hand numbers back as text
    assert one(project, build, reconcile("SELECT 5", "SELECT '5'")).status == "pass"
    # HUGEINT beyond 2**64 stays exact
    assert one(project, build, reconcile("SELECT 170141183460469231731687303715884105727::HUGEINT", "SELECT 0", right_source=None)).observed == (
        "170,141,183,460,469,231,731,687,303,715,884,105,727"
    )


# --- reconcile: key by key --------------------------------------------------------------------

PER_DAY_MART = "SELECT day, count(*) FROM marts.signups GROUP BY day"  # DuckDB DATE keys
PER_DAY_SOURCE = "SELECT day, count(*) AS n FROM signups GROUP BY day"  # SQLite text keys


@on_both_warehouses
def test_keyed_pass_matches_dates_with_text(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    outcome = one(project, build, reconcile(PER_DAY_MART, PER_DAY_SOURCE))
    assert (outcome.status, outcome.observed, outcome.expected) == ("pass", "0 of 3 keys differ", "0 keys differ")
    assert outcome.sample is None


@on_both_warehouses
def test_keyed_fail_samples_largest_differences_first(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    build.execute("INSERT INTO marts.signups VALUES (6, '2026-01-03', 'north'), (7, '2026-01-03', 'north'), (8, '2026-01-01', 'north')")
    if project.config.warehouse.type == "bigquery":
        to_bigquery(open_warehouse(project.root, project.config.warehouse), build)
    outcome = one(project, build, reconcile(PER_DAY_MART, PER_DAY_SOURCE))
    assert outcome.status == "fail" and outcome.blocks_publish
    assert outcome.observed == "2 of 3 keys differ"
    assert outcome.sample == {
        "columns": ["day", "left", "right", "difference"],
        "rows": [["2026-01-03", 4, 2, 2], ["2026-01-01", 3, 2, 1]],
    }
    assert outcome.message == (
        "signups_reach_the_mart: 2 of 3 keys differ (tolerance 0); largest: day=2026-01-03: left 4 ≠ right 2 (difference 2)"
    )


def test_keyed_with_two_key_columns_and_tolerance(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    build.execute("INSERT INTO marts.signups VALUES (6, '2026-01-03', 'north')")
    left = "SELECT day, region, count(*) FROM marts.signups GROUP BY ALL"
    right = "SELECT day, region, count(*) FROM signups GROUP BY day, region"
    failed = one(project, build, reconcile(left, right))
    assert failed.sample == {"columns": ["day", "region", "left", "right", "difference"], "rows": [["2026-01-03", "north", 2, 1, 1]]}
    passed = one(project, build, reconcile(left, right, tolerance=1))
    assert (passed.status, passed.observed, passed.expected) == ("pass", "0 of 5 keys differ", "0 keys differ (tolerance 1)")


@on_both_warehouses
def test_key_on_one_side_only_counts_as_zero_there(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    left = "SELECT * FROM (VALUES ('a', 10), ('b', 5), ('only_left', 3), ('zero_left', 0)) t(k, n)"
    right = "SELECT * FROM (VALUES ('a', 10), ('b', 5), ('only_right', 7)) t(k, n)"
    if project.config.warehouse.type == "bigquery":
        # GoogleSQL has no VALUES list. (UNNEST of an array of structs would do in BigQuery, but the
        # emulator differs from BigQuery there: SELECT * gives one STRUCT column.) The same rows:
        left = "SELECT 'a' AS k, 10 AS n UNION ALL SELECT 'b', 5 UNION ALL SELECT 'only_left', 3 UNION ALL SELECT 'zero_left', 0"
        right = "SELECT 'a' AS k, 10 AS n UNION ALL SELECT 'b', 5 UNION ALL SELECT 'only_right', 7"
    outcome = one(project, build, reconcile(left, right, right_source=None))
    assert outcome.status == "fail"
    assert outcome.observed == "2 of 5 keys differ"  # zero_left: 0 against a missing 0 is no difference
    assert outcome.sample == {
        "columns": ["k", "left", "right", "difference"],
        "rows": [["only_right", None, 7, -7], ["only_left", 3, None, 3]],
    }
    assert "largest: k=only_right: left no row ≠ right 7 (difference 7)" in outcome.message
    assert outcome.message.endswith("1 key(s) only on the left, 1 key(s) only on the right")
    # within tolerance, a one-sided key passes
    assert one(project, build, reconcile(left, right, right_source=None, tolerance=7)).status == "pass"


def test_keyed_sample_is_capped(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    left = "SELECT i AS k, i AS n FROM range(1, 51) t(i)"
    outcome = one(project, build, reconcile(left, "SELECT 1 AS k, 0 AS n WHERE false", right_source=None))
    assert outcome.observed == "50 of 50 keys differ"
    assert len(outcome.sample["rows"]) == SAMPLE_ROWS
    assert [r[0] for r in outcome.sample["rows"][:3]] == [50, 49, 48]


@given(
    left=st.dictionaries(st.sampled_from("abcdef"), st.integers(-20, 20), max_size=6),
    right=st.dictionaries(st.sampled_from("abcdef"), st.integers(-20, 20), max_size=6),
    tolerance=st.integers(0, 6),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_keyed_passes_iff_every_difference_is_within_tolerance(
    project: LoadedProject, build: duckdb.DuckDBPyConnection, left: dict[str, int], right: dict[str, int], tolerance: int
) -> None:
    def values_sql(data: dict[str, int]) -> str:  # valid in DuckDB and in SQLite
        if not data:
            return "SELECT 'x' AS k, 0 AS n WHERE 1 = 0"
        return " UNION ALL ".join(f"SELECT '{k}' AS k, {v} AS n" for k, v in data.items())

    # left on the warehouse, right on the SQLite source: two engines, one answer
    outcome = one(project, build, reconcile(values_sql(left), values_sql(right), tolerance=tolerance))
    keys = set(left) | set(right)
    expected_pass = all(abs(left.get(k, 0) - right.get(k, 0)) <= tolerance for k in keys)
    assert outcome.status == ("pass" if expected_pass else "fail")
    differing = sum(1 for k in keys if abs(left.get(k, 0) - right.get(k, 0)) > tolerance)
    assert outcome.observed == f"{differing} of {len(keys)} keys differ"


# --- reconcile: errors ------------------------------------------------------------------------


def test_sql_error_on_the_left_names_the_side_and_the_warehouse(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    outcome = one(project, build, reconcile("SELECT count(*) FROM marts.signupz", "SELECT count(*) FROM signups"))
    assert outcome.status == "error" and outcome.blocks_publish
    assert outcome.observed is None and outcome.sample is None
    assert outcome.message.startswith("signups_reach_the_mart: the left query failed on the warehouse: Catalog Error: Table with name signupz does not exist")
    assert "LINE 1" not in outcome.message
    assert outcome.message.endswith("Fix left.sql of check 'signups_reach_the_mart' in headwater.yml.")


@on_both_warehouses
@pytest.mark.parametrize("missing", ["marts.signupz", "martz.signups"])
def test_a_table_or_schema_the_warehouse_lacks_is_an_error_naming_it(project: LoadedProject, build: duckdb.DuckDBPyConnection, missing: str) -> None:
    """Each warehouse's own message, naming what is missing; never a claim that the project itself
    is missing (BigQuery's 404 for a dataset or table is not one for the project)."""
    outcome = one(project, build, reconcile(f"SELECT count(*) FROM {missing}", "SELECT count(*) FROM signups"))
    assert outcome.status == "error" and outcome.blocks_publish
    assert outcome.message.startswith("signups_reach_the_mart: the left query failed on the warehouse: ")
    assert any(name in outcome.message for name in missing.split(".")), outcome.message  # DuckDB names the table even when the schema is missing
    assert "does not exist or this account cannot see it" not in outcome.message, outcome.message
    assert outcome.message.endswith("Fix left.sql of check 'signups_reach_the_mart' in headwater.yml.")


def test_sql_error_on_the_right_names_the_side_and_the_source(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    outcome = one(project, build, reconcile("SELECT count(*) FROM marts.signups", "SELECT count(*) FROM signupz"))
    assert outcome.status == "error"
    assert outcome.message == (
        "signups_reach_the_mart: the right query failed on source 'app' (sqlite): no such table: signupz. "
        "Fix right.sql of check 'signups_reach_the_mart' in headwater.yml."
    )


def test_source_connection_is_read_only(project: LoadedProject, build: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    source = tmp_path / "data" / "app.db"
    before = source.read_bytes()
    for sql in ("DELETE FROM signups", "INSERT INTO signups (id) VALUES (99) RETURNING id", "CREATE TABLE x AS SELECT 1 AS n"):
        outcome = one(project, build, reconcile("SELECT 0", sql))
        assert outcome.status == "error", sql
        assert "right query failed on source 'app' (sqlite)" in outcome.message
        assert "readonly" in outcome.message or "read-only" in outcome.message, outcome.message
    assert source.read_bytes() == before
    with sqlite3.connect(source) as con:
        assert con.execute("SELECT count(*) FROM signups").fetchone() == (5,)
    con.close()


@on_both_warehouses
@kinds_without_bigquery(
    "BigQuery has no transaction a check's statements could be rolled back in: there a statement other than one SELECT is "
    "refused before it runs (a dry run says what it is), tested in test_bq_warehouse_pipeline.py::test_a_check_that_would_change_bigquery_is_refused_unrun"
)
def test_warehouse_queries_never_change_the_warehouse(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    """In DuckDB, statements one after another. PostgreSQL's extension takes one query (a SELECT,
    run inside COPY), so there the writes ride in a function it calls, created beforehand."""
    if project.config.warehouse.type == "postgres":
        function = (
            "CREATE FUNCTION marts.vandal() RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "
            "DELETE FROM marts.signups; CREATE TABLE marts.stray AS SELECT 1 AS n; RETURN (SELECT count(*) FROM marts.signups); END $$"
        )
        build.execute("CALL postgres_execute(?, ?)", [project.config.warehouse.database, function])
        sql = "SELECT marts.vandal()"
    else:
        sql = "DELETE FROM marts.signups; CREATE TABLE marts.stray AS SELECT 1 AS n; SELECT count(*) FROM marts.signups"
    outcome = one(project, build, reconcile(sql, "SELECT 0", right_source=None))
    assert (outcome.status, outcome.observed) == ("pass", "0"), outcome.message  # the query saw its own delete...
    assert build.execute("SELECT count(*) FROM marts.signups").fetchone() == (5,)  # ...which was rolled back
    assert build.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'stray'").fetchone() == (0,)
    if project.config.warehouse.type == "postgres":  # asked of PostgreSQL itself, not DuckDB's copy of its catalog
        assert pg_rows(project.config.warehouse.url, "SELECT to_regclass('marts.stray'), (SELECT count(*) FROM marts.signups)") == [(None, 5)]


def test_missing_source_file_is_an_error(tmp_path: Path, build: duckdb.DuckDBPyConnection) -> None:
    project = make_project(tmp_path)  # no data/app.db
    outcome = one(project, build, reconcile("SELECT 1", "SELECT 1"))
    assert outcome.status == "error"
    assert "the right query failed on source 'app' (sqlite): the SQLite file" in outcome.message
    assert "does not exist (fix sources.app.path in headwater.yml)" in outcome.message
    assert not (tmp_path / "data" / "app.db").exists()  # read-only opening never creates it


@pytest.mark.parametrize(
    ("left", "right", "fragment"),
    [
        ("SELECT 1", "SELECT day, count(*) FROM signups GROUP BY day", "the left query returns one number but the right query returns rows of (key columns..., number)"),
        ("SELECT id FROM marts.signups", "SELECT 1", "the left query (on the warehouse) returned 5 rows of one column"),
        ("SELECT 1 WHERE false", "SELECT 1", "the left query (on the warehouse) returned 0 rows of one column"),
        ("SELECT 1", "SELECT region, 1 FROM signups", "the right query (on source 'app' (sqlite)) returned the key region=north more than once; GROUP BY"),
        ("SELECT 1", "SELECT 'many'", "the right query (on source 'app' (sqlite)) returned 'many' where a number belongs"),
        ("SELECT day, region, count(*) FROM marts.signups GROUP BY ALL", "SELECT day, count(*) FROM signups GROUP BY day", "the left query has 2 key column(s) (day, region) but the right query has 1 (day)"),
        ("SELECT 'nan'::DOUBLE", "SELECT 1", "returned nan, which cannot be compared"),
    ],
)
def test_results_of_the_wrong_shape_are_errors(project: LoadedProject, build: duckdb.DuckDBPyConnection, left: str, right: str, fragment: str) -> None:
    outcome = one(project, build, reconcile(left, right))
    assert outcome.status == "error"
    assert fragment in outcome.message


def test_warn_severity_records_without_blocking(project: LoadedProject, build: duckdb.DuckDBPyConnection) -> None:
    failed = one(project, build, reconcile("SELECT 2", "SELECT 1", severity="warn"))
    assert (failed.status, failed.severity, failed.blocks_publish) == ("warn", "warn", False)
    assert failed.message is not None
    broken = one(project, build, reconcile("SELECT nope", "SELECT 1", severity="warn"))
    assert (broken.status, broken.severity, broken.blocks_publish) == ("error", "warn", False)


# --- freshness --------------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 22, 8, 3, tzinfo=UTC)


def freshness(table: str = "events", column: str = "updated_at", max_age: str = "26h", **extra: Any) -> FreshnessCheck:
    return FreshnessCheck.model_validate(
        {"type": "freshness", "name": "events_are_fresh", "source": "app", "table": table, "column": column, "max_age": max_age, **extra}
    )


@pytest.fixture
def events(build: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    build.execute("CREATE TABLE raw_app.events (id INTEGER, updated_at TIMESTAMP, changed TIMESTAMPTZ, seen VARCHAR, on_day DATE, n INTEGER)")
    build.execute(
        """INSERT INTO raw_app.events VALUES
        (1, '2026-11-20 23:00:00', '2026-11-21 06:00:00+00', '2026-11-20 12:00:00', '2026-11-20', 1),
        (2, '2026-11-21 06:00:00', '2026-11-21 09:00:00+05:30', '2026-11-21T11:00:00+05:00', '2026-11-21', 2),
        (3, NULL, NULL, 'not a time', NULL, 3)"""
    )
    return build


@on_both_warehouses
def test_freshness_pass_and_fail_with_a_given_now(project: LoadedProject, events: duckdb.DuckDBPyConnection) -> None:
    # newest updated_at 2026-11-21 06:00 (naive: UTC); at NOW it is 26h 3m old
    failed = one(project, events, freshness(), now=NOW)
    assert (failed.status, failed.severity, failed.blocks_publish) == ("fail", "error", True)
    assert failed.observed == "newest 2026-11-21 06:00 UTC (26h 3m ago)"
    assert failed.expected == "younger than 26h"
    assert failed.message == (
        "events_are_fresh: the newest updated_at in raw_app.events is 2026-11-21 06:00 UTC, 26h 3m old, older than 26h. "
        "Check that source 'app' is still being written to and that its sync ran."
    )
    passed = one(project, events, freshness(max_age="27h"), now=NOW)
    assert (passed.status, passed.observed, passed.expected, passed.message) == ("pass", "newest 2026-11-21 06:00 UTC (26h 3m ago)", "younger than 27h", None)
    # exactly max_age old still passes; a naive now is UTC
    assert one(project, events, freshness(), now=dt.datetime(2026, 11, 22, 8, 0)).status == "pass"


@on_both_warehouses
def test_freshness_timezone_aware_values_and_sessions(project: LoadedProject, events: duckdb.DuckDBPyConnection) -> None:
    events.execute("SET TimeZone = 'America/New_York'")  # the caller's session setting must not matter (nor change)
    # changed: 06:00 UTC and 09:00+05:30 = 03:30 UTC: the newest instant is 06:00 UTC
    outcome = one(project, events, freshness(column="changed", max_age="2d"), now=NOW)
    assert (outcome.status, outcome.observed) == ("pass", "newest 2026-11-21 06:00 UTC (26h 3m ago)")
    # text: naive means UTC (12:00), an offset is honoured (11:00+05:00 = 06:00 UTC); unparseable text is ignored
    assert one(project, events, freshness(column="seen", max_age="2d"), now=NOW).observed == "newest 2026-11-21 06:00 UTC (26h 3m ago)"
    # a DATE is its midnight UTC
    assert one(project, events, freshness(column="on_day", max_age="2d"), now=NOW).observed == "newest 2026-11-21 00:00 UTC (32h 3m ago)"
    assert events.execute("SELECT current_setting('TimeZone')").fetchone() == ("America/New_York",)


def test_freshness_future_values_pass(project: LoadedProject, events: duckdb.DuckDBPyConnection) -> None:
    outcome = one(project, events, freshness(), now=dt.datetime(2026, 11, 21, 5, 0, tzinfo=UTC))
    assert (outcome.status, outcome.observed) == ("pass", "newest 2026-11-21 06:00 UTC (1h in the future)")


@on_both_warehouses
def test_freshness_empty_table_and_empty_column_fail(project: LoadedProject, events: duckdb.DuckDBPyConnection) -> None:
    events.execute("CREATE TABLE raw_app.empty AS SELECT * FROM raw_app.events WHERE false")
    empty = one(project, events, freshness(table="empty"), now=NOW)
    assert (empty.status, empty.observed, empty.expected) == ("fail", "no rows", "younger than 26h")
    assert empty.message == "events_are_fresh: raw_app.empty is empty: the last sync of source 'app' copied no rows from table 'empty'. Check the source."
    events.execute("UPDATE raw_app.events SET updated_at = NULL")
    blank = one(project, events, freshness(), now=NOW)
    assert (blank.status, blank.observed) == ("fail", "no updated_at values")
    assert blank.message == "events_are_fresh: column 'updated_at' of raw_app.events has no values in 3 rows."


@on_both_warehouses
def test_freshness_missing_table_or_column_is_an_error_naming_the_fix(project: LoadedProject, events: duckdb.DuckDBPyConnection) -> None:
    table = one(project, events, freshness(table="event"), now=NOW)
    assert (table.status, table.blocks_publish) == ("error", True)
    assert table.message.startswith("events_are_fresh: table raw_app.event is not in the warehouse — did you mean 'events'? Fix the check's table:")
    assert "list 'event' in sources.app.tables" in table.message
    column = one(project, events, freshness(column="updatd_at"), now=NOW)
    assert column.status == "error"
    assert column.message == "events_are_fresh: column 'updatd_at' is not in raw_app.events — did you mean 'updated_at'? Fix the check's column: in headwater.yml."
    unsynced = one(project, events, FreshnessCheck.model_validate({"type": "freshness", "name": "x", "source": "crm", "table": "t", "max_age": "1h"}), now=NOW)
    assert "table raw_crm.t is not in the warehouse (source 'crm' has not been synced into the warehouse). Fix" in unsynced.message
    wrong_type = one(project, events, freshness(column="n"), now=NOW)
    assert wrong_type.status == "error"
    assert "column 'n' of raw_app.events is INTEGER, not a timestamp" in wrong_type.message


def test_freshness_warn_severity(project: LoadedProject, events: duckdb.DuckDBPyConnection) -> None:
    outcome = one(project, events, freshness(severity="warn"), now=NOW)
    assert (outcome.status, outcome.severity, outcome.blocks_publish) == ("warn", "warn", False)


@on_both_warehouses
def test_run_checks_runs_every_check_in_order(project: LoadedProject, events: duckdb.DuckDBPyConnection) -> None:
    checks = [
        reconcile("SELECT nope", "SELECT 1", name="broken"),
        freshness(max_age="2d"),
        reconcile(PER_DAY_MART, PER_DAY_SOURCE, name="per_day"),
    ]
    outcomes = run_checks(project, [on_the_warehouse(project, c) for c in checks], events, now=NOW, warehouse=engine_of(project))
    assert [(o.name, o.status) for o in outcomes] == [("broken", "error"), ("events_are_fresh", "pass"), ("per_day", "pass")]


# --- dbt tests --------------------------------------------------------------------------------

AUDIT = '"build"."main_dbt_test__audit"'


def node(name: str, status: str, *, resource_type: str = "test", failures: int | None = None, relation: str | None = None, message: str | None = None) -> NodeResult:
    return NodeResult(name=name, resource_type=resource_type, status=status, seconds=0.1, path="models/marts/_marts.yml", relation=relation, message=message, failures=failures)


def test_dbt_test_outcomes(build: duckdb.DuckDBPyConnection) -> None:
    build.execute("CREATE SCHEMA main_dbt_test__audit")
    build.execute(
        """CREATE TABLE main_dbt_test__audit.accepted_values_signups_status AS
        SELECT 'status_' || i AS value_field, i AS n_records, DATE '2026-01-01' + i::INTEGER AS day,
               (i / 4)::DECIMAL(10, 2) AS share, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS at
        FROM range(25) t(i)"""
    )
    result = BuildResult(
        success=False,
        nodes=[
            node("flake_rate_weekly", "success", resource_type="model", relation='"build"."marts"."flake_rate_weekly"'),
            node("not_null_signups_id", "pass", failures=0),
            node("accepted_values_signups_status", "fail", failures=25, relation=f'{AUDIT}."accepted_values_signups_status"', message="Got 25 results, configured to fail if != 0"),
            node("unique_signups_email", "warn", failures=1, relation=f'{AUDIT}."unique_signups_email"', message="Got 1 result, configured to warn if != 0"),
            node("relationships_signups_event", "error", message="Runtime Error: column event_idd does not exist"),
            node("not_null_flake_rate_week", "skipped"),
            node("test_week_math", "pass", resource_type="unit_test"),
        ],
    )
    outcomes = {o.name: o for o in dbt_test_outcomes(result, build)}
    assert list(outcomes) == [
        "not_null_signups_id",
        "accepted_values_signups_status",
        "unique_signups_email",
        "relationships_signups_event",
        "not_null_flake_rate_week",
        "test_week_math",
    ]
    assert {o.kind for o in outcomes.values()} == {"dbt_test"}

    passed = outcomes["not_null_signups_id"]
    assert (passed.status, passed.severity, passed.observed, passed.expected, passed.message, passed.sample) == ("pass", "error", "0", "0", None, None)

    failed = outcomes["accepted_values_signups_status"]
    assert (failed.status, failed.severity, failed.observed, failed.blocks_publish) == ("fail", "error", "25", True)
    assert failed.message == (
        "accepted_values_signups_status: 25 failures (Got 25 results, configured to fail if != 0). See models/marts/_marts.yml and fix the data or the model."
    )
    assert failed.sample["columns"] == ["value_field", "n_records", "day", "share", "at"]
    assert len(failed.sample["rows"]) == SAMPLE_ROWS
    assert failed.sample["rows"][1][:4] == ["status_1", 1, "2026-01-02", 0.25]
    assert failed.sample["rows"][1][4].startswith("2026-01-01T00:00:00")
    json.dumps(failed.sample, allow_nan=False)

    warned = outcomes["unique_signups_email"]  # the stored-failures table does not exist: no sample, same outcome
    assert (warned.status, warned.severity, warned.blocks_publish, warned.sample) == ("warn", "warn", False, None)
    assert warned.message.startswith("unique_signups_email: 1 failure (Got 1 result")

    errored = outcomes["relationships_signups_event"]
    assert (errored.status, errored.blocks_publish) == ("error", True)
    assert errored.message == (
        "relationships_signups_event: the test could not run: Runtime Error: column event_idd does not exist. Fix models/marts/_marts.yml."
    )

    skipped = outcomes["not_null_flake_rate_week"]  # never ran: the data is unchecked, which is not a pass
    assert (skipped.status, skipped.severity, skipped.blocks_publish) == ("error", "error", True)
    assert "skipped" in skipped.message

    assert outcomes["test_week_math"].status == "pass"


def test_dbt_test_outcomes_of_a_build_without_tests(build: duckdb.DuckDBPyConnection) -> None:
    assert dbt_test_outcomes(BuildResult(success=False, error="Compilation Error"), build) == []


# --- the outcome record -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "severity", "blocks"),
    [("pass", "error", False), ("fail", "error", True), ("error", "error", True), ("warn", "warn", False), ("error", "warn", False), ("fail", "warn", False)],
)
def test_blocks_publish(status: str, severity: str, blocks: bool) -> None:
    assert CheckOutcome("c", "reconcile", status, severity, None, None, None, None).blocks_publish is blocks


def test_as_record_fits_the_system_database() -> None:
    outcome = CheckOutcome("c", "reconcile", "fail", "error", "1 of 2 keys differ", "0 keys differ", "c: ...", {"columns": ["k"], "rows": [["ä"]]})
    record = outcome.as_record()
    assert set(record) == {c.name for c in CheckResult.__table__.columns} - {"id", "run_id"}
    assert json.loads(record["sample"]) == outcome.sample
    CheckResult(run_id=1, **record)


def test_json_safe() -> None:
    values = [
        Decimal("2"), Decimal("0.25"), Decimal("0.1000000000000000000001"), Decimal("NaN"), float("inf"), 1.5,
        dt.date(2026, 1, 2), dt.datetime(2026, 1, 2, 3, 4, tzinfo=UTC), dt.timedelta(hours=1), b"\x01\xff", [Decimal("1.5"), {"a": dt.time(1, 2)}], None, True,
    ]  # fmt: skip
    assert json_safe(values) == [
        2, 0.25, "0.1000000000000000000001", "NaN", "inf", 1.5,
        "2026-01-02", "2026-01-02T03:04:00+00:00", "1:00:00", "01ff", [1.5, {"a": "01:02:00"}], None, True,
    ]  # fmt: skip
    json.dumps(json_safe(values), allow_nan=False)


# --- a failed unit test's diff as a sample ----------------------------------------------------------

VALUES = st.text(alphabet='abcXYZ019,"; ', min_size=1, max_size=8).map(str.strip).filter(bool)


def _daff_diff(expected: list[list[Any]], actual: list[list[Any]]) -> str:
    """A unit test's diff as dbt renders it (dbt.task.test: unordered daff, terminal render, no colours)."""
    import re

    import daff

    flags = daff.CompareFlags()
    flags.ordered = False
    alignment = daff.Coopy.compareTables(daff.PythonTableView(expected), daff.PythonTableView(actual), flags).align()
    table = daff.PythonTableView([])
    daff.TableDiff(alignment, flags).hilite(table)
    rendered = re.sub(r"\x1B\[[0-?]*[ -/]*[@-~]", "", daff.TerminalDiffRender().render(table))
    return f"\n\nactual differs from expected:\n\n{rendered}\n"


@settings(max_examples=60, deadline=None)
@given(
    rows=st.dictionaries(st.integers(0, 99), st.tuples(VALUES, VALUES), min_size=1, max_size=8),
    dropped=st.sets(st.integers(0, 99)),
    added=st.dictionaries(st.integers(100, 199), VALUES, max_size=3),
)
def test_unit_test_sample_reads_what_daff_renders(rows: dict[int, tuple[str, str]], dropped: set[int], added: dict[int, str]) -> None:
    """Every row only the model returned, or only the test expected, is in the sample under its own
    marker with its values as written (commas and quotes included); a changed value reads old→new."""
    from headwater.checks.dbt_tests import unit_test_sample
    from headwater.transform.dbt import _unit_test_diff

    expected = [["id", "v"], *[[i, old] for i, (old, _) in rows.items()]]
    actual = [["id", "v"], *[[i, new] for i, (_, new) in rows.items() if i not in dropped], *[[i, v] for i, v in added.items()]]
    if expected[1:] == actual[1:]:
        return  # dbt reports no diff
    sample = unit_test_sample(_unit_test_diff(_daff_diff(expected, actual)) or "")
    assert sample["columns"] == ["diff", "id", "v"]
    # daff aligns rows by content, so it may show a row as changed in any column (its id "0→100"):
    # read each marker's row back into the rows the test expected and the model returned.
    expected_side: set[tuple[int, str]] = set()
    actual_side: set[tuple[int, str]] = set()
    for marker, i, v in sample["rows"]:
        if marker == "actual only":
            actual_side.add((int(i), v))
        elif marker == "expected only":
            expected_side.add((int(i), v))
        elif marker == "changed":
            (i_old, i_new), (v_old, v_new) = (cell.split("→") if "→" in cell else (cell, cell) for cell in (i, v))
            expected_side.add((int(i_old), v_old))
            actual_side.add((int(i_new), v_new))
    for i, value in added.items():
        assert (i, value) in actual_side
    for i, (old, new) in rows.items():
        if i in dropped:
            assert (i, old) in expected_side
        elif old != new:
            assert (i, old) in expected_side and (i, new) in actual_side


def test_a_failed_unit_test_without_a_message_is_recorded_not_crashed() -> None:
    """dbt's result for a failed unit test may carry no message (None or ""): the result is a failure
    with no diff and no message, rather than an AttributeError from reading a diff out of None."""
    from types import SimpleNamespace

    from headwater.transform.dbt import _node_result

    for message in (None, ""):
        node = SimpleNamespace(name="orders_unit", resource_type="unit_test", original_file_path="models/orders.yml", config=SimpleNamespace())
        result = _node_result(SimpleNamespace(node=node, status="fail", message=message, execution_time=0.1))
        assert (result.status, result.diff, result.message, result.severity) == ("fail", None, None, "error")

"""The demo's dbt project on BigQuery (issue 19): the same raw tables, built by dbt-bigquery on the emulator,
give the flake-rate report the DuckDB demo publishes.

The demo project is portable through dbt's `adapter.dispatch` (macros/time.sql, macros/portable.sql):
`default__` macros keep DuckDB's and PostgreSQL's SQL as it was, `bigquery__` ones write GoogleSQL. Here the demo runs on
DuckDB through Headwater as usual; its raw tables are then loaded into the emulator as a warehouse would
(each table created with an explicit schema, then a Parquet load job: the emulator's load cannot create
a table) into datasets named with the `headwater_dataset_prefix` var, and dbt-bigquery builds the project
there with Headwater's own `dbt build --store-failures`. Every model's rows and column types are compared
with DuckDB's (DuckDB's wall-clock TIMESTAMP is BigQuery's DATETIME), the mart's floats to 1e-12.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import bq
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from demo_project import assert_matches_reference, make_project, published_rows

from headwater.orchestrate import run_pipeline
from headwater.warehouse import open_warehouse

pytestmark = pytest.mark.bigquery

if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
    pytest.importorskip("google.cloud.bigquery", reason="the [bigquery] extra (in [test]) is not installed")
from google.cloud import bigquery  # noqa: E402  (CI fails here rather than skip)

SIGNUPS = 4_000
MART = "flake_rate_weekly"
MODEL_SCHEMAS = ("staging", "intermediate", "marts", "snapshots")

# Arrow types of the raw tables (DuckDB's export) -> BigQuery column types, as BigQuery maps Parquet:
# https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-parquet#parquet_conversions
# A naive timestamp (DuckDB TIMESTAMP, wall-clock UTC) is DATETIME; one with a time zone is TIMESTAMP (an instant).
# https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#datetime_type
RAW_TYPES = {pa.int64(): "INT64", pa.int32(): "INT64", pa.string(): "STRING", pa.large_string(): "STRING", pa.bool_(): "BOOL", pa.date32(): "DATE", pa.float64(): "FLOAT64", pa.timestamp("us"): "DATETIME"}

# What each DuckDB column type of the demo's models means on BigQuery (tables.get's legacy type names).
# https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#TableFieldSchema.FIELDS.type
MODEL_TYPES = {"INTEGER": "INTEGER", "BIGINT": "INTEGER", "VARCHAR": "STRING", "DATE": "DATE", "TIMESTAMP": "DATETIME", "DOUBLE": "FLOAT", "BOOLEAN": "BOOLEAN"}


@pytest.fixture
def client(bigquery_emulator: bq.Emulator) -> Iterator[Any]:
    c = bq.client(bigquery_emulator)
    yield c
    c.close()


@pytest.fixture
def prefix(client: Any) -> Iterator[str]:
    """A dataset prefix of this test's own (the emulator is shared by the session); its datasets deleted afterwards."""
    name = f"t1_{uuid.uuid4().hex[:8]}_"
    yield name
    for dataset in list(client.list_datasets(retry=None)):
        if dataset.dataset_id.startswith(name):
            client.delete_dataset(dataset.dataset_id, delete_contents=True, not_found_ok=True, retry=None)


def run(client: Any, sql: str) -> list[dict[str, Any]]:
    """A query to the end, no retries (a retried 500 would hide the emulator's answer for minutes)."""
    return [dict(row) for row in client.query(sql, retry=None, job_retry=None).result(retry=None, timeout=30)]


def load_raw(client: Any, con: duckdb.DuckDBPyConnection, schema: str, table: str, dataset: str) -> int:
    """One raw table from DuckDB into BigQuery: created with an explicit schema, then a Parquet load (WRITE_APPEND)."""
    arrow = con.execute(f'SELECT * FROM "{schema}"."{table}"').fetch_arrow_table()
    fields = []
    for field in arrow.schema:
        kind = "TIMESTAMP" if pa.types.is_timestamp(field.type) and field.type.tz is not None else RAW_TYPES[field.type]
        fields.append(bigquery.SchemaField(field.name, kind))
    table_id = f"{client.project}.{dataset}.{table}"
    client.create_table(bigquery.Table(table_id, schema=fields), retry=None)
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer)
    buffer.seek(0)
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
    client.load_table_from_file(buffer, table_id, job_config=config).result(retry=None, timeout=60)
    return arrow.num_rows


def dbt(project_dir: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """dbt-bigquery on the demo project, its profile and output in ``work`` (Headwater's own dbt folder untouched)."""
    executable = Path(sys.executable).with_name("dbt")
    env = os.environ | {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    argv = [str(executable), *args, "--project-dir", str(project_dir), "--profiles-dir", str(work), "--target-path", str(work / "target"), "--log-path", str(work / "logs"), "--no-use-colors"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240, check=False)


def comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows in one total order (None first), floats rounded to 12 places for the comparison."""
    rounded = [tuple(round(v, 12) if isinstance(v, float) else v for v in row) for row in rows]
    return sorted(rounded, key=lambda row: tuple((v is not None, v) for v in row))


def test_the_demo_project_on_bigquery_builds_the_report_the_duckdb_demo_publishes(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any, prefix: str) -> None:
    project = make_project(tmp_path / "demo", SIGNUPS, seed=11)
    assert run_pipeline(project).run.status == "success"
    expected = published_rows(project)
    assert len(expected) > 50 and any(0 < r["flake_rate"] < 1 for r in expected.values()) and any(r["is_current_week"] for r in expected.values())

    # The raw tables the DuckDB sync wrote, into <prefix>raw_<source> on BigQuery.
    build_path = open_warehouse(project.root, project.config.warehouse).build_path  # type: ignore[attr-defined]
    with duckdb.connect(str(build_path), read_only=True) as con:
        raw = con.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('raw_campaign', 'raw_roster') ORDER BY ALL").fetchall()
        assert {t for s, t in raw if s == "raw_campaign"} >= {"events", "signups", "signup_statuses", "regions", "locations", "organizers"}
        for schema in {s for s, _ in raw}:
            client.create_dataset(f"{prefix}{schema}", retry=None)
        loaded = {(s, t): load_raw(client, con, s, t, f"{prefix}{s}") for s, t in raw}
        for (schema, table), n in loaded.items():
            assert run(client, f"SELECT COUNT(*) AS n FROM `{prefix}{schema}.{table}`") == [{"n": n}]

        # DuckDB's models: their column types and rows, to compare with BigQuery's.
        duck_models: dict[tuple[str, str], tuple[list[tuple[str, str]], list[tuple[Any, ...]]]] = {}
        relations = con.execute(f"SELECT DISTINCT table_schema, table_name FROM information_schema.tables WHERE table_schema IN {MODEL_SCHEMAS} ORDER BY ALL").fetchall()
        for schema, table in relations:
            columns = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? AND NOT starts_with(column_name, 'dbt_') ORDER BY ordinal_position", [schema, table]).fetchall()
            names = ", ".join(f'"{c}"' for c, _ in columns)
            duck_models[(schema, table)] = (columns, con.execute(f'SELECT {names} FROM "{schema}"."{table}"').fetchall())
    assert set(duck_models) >= {("marts", MART), ("intermediate", "int_signups_weekly"), ("staging", "stg_campaign__events"), ("snapshots", "signup_status_history")}

    # dbt-bigquery on the emulator: https://docs.getdbt.com/docs/core/connect-data-platform/bigquery-setup (oauth-secrets; api_endpoint)
    work = tmp_path / "bq-dbt"
    work.mkdir()
    (work / "profiles.yml").write_text(bq.profiles_yml(bigquery_emulator, "flake_demo", f"{prefix}build"))
    dbt_vars = {**project.config.dbt.vars, "headwater_dataset_prefix": prefix}
    assert dbt_vars["as_of_date"], "the report's current week must not depend on today's date"
    built = dbt(project.root, work, "build", "--store-failures", "--vars", json.dumps(dbt_vars))
    assert built.returncode == 0, built.stdout[-6000:] + built.stderr[-3000:]

    # The same nodes as Headwater's dbt build on DuckDB (models, snapshot, data tests), every one passing.
    def results(target: Path) -> dict[str, str]:
        return {r["unique_id"]: r["status"] for r in json.loads((target / "run_results.json").read_text())["results"]}

    on_duckdb, on_bigquery = results(project.root / ".headwater" / "dbt" / "target"), results(work / "target")
    assert on_bigquery.keys() == on_duckdb.keys()
    assert sum(k.startswith("test.") for k in on_bigquery) >= 20
    assert {k: s for k, s in on_bigquery.items() if s not in ("success", "pass")} == {}

    # Every model went to <prefix><folder> (tests' failures too: Headwater's --store-failures).
    datasets = {d.dataset_id for d in client.list_datasets(retry=None) if d.dataset_id.startswith(prefix)}
    assert datasets == {f"{prefix}{s}" for s in ("raw_campaign", "raw_roster", *MODEL_SCHEMAS, "dbt_test__audit")}

    # The mart: same rows, same values (floats to 1e-12), same columns and types (COUNTIF's counts INT64).
    mart = client.get_table(f"{prefix}marts.{MART}", retry=None)
    duck_columns = duck_models[("marts", MART)][0]
    assert [(f.name, f.field_type) for f in mart.schema] == [(c, MODEL_TYPES[t]) for c, t in duck_columns]
    got = {(r["week_start"], r["region"], r["organizer"]): {k: v for k, v in r.items() if k not in ("week_start", "region", "organizer")} for r in run(client, f"SELECT * FROM `{prefix}marts.{MART}`")}
    assert_matches_reference(got, expected)
    assert all(isinstance(r["total_signups"], int) and isinstance(r["flake_rate"], float | None) for r in got.values())

    # Every model, snapshot included: the same columns with the same meaning, the same rows. Naive UTC
    # wall-clock times (DuckDB TIMESTAMP) are DATETIME on BigQuery, so event times and weeks agree exactly.
    for (schema, table), (columns, rows) in duck_models.items():
        relation = client.get_table(f"{prefix}{schema}.{table}", retry=None)
        bq_columns = [(f.name, f.field_type) for f in relation.schema if not f.name.startswith("dbt_")]
        assert bq_columns == [(c, MODEL_TYPES[t]) for c, t in columns], (schema, table)
        names = ", ".join(f"`{c}`" for c, _ in columns)
        bq_rows = [tuple(r.values()) for r in run(client, f"SELECT {names} FROM `{prefix}{schema}.{table}`")]
        assert comparable(bq_rows) == comparable(rows), (schema, table)
    events = duck_models[("staging", "stg_campaign__events")][1]
    assert all(isinstance(r[4], dt.datetime) and r[4].tzinfo is None for r in events)  # the comparison above compared wall-clock times
    assert len({r[4] - r[5] for r in events}) == 2, "events on both sides of a daylight-saving change: the time zone's offsets"

    # The next day's run: a sign-up's latest status changes in the raw data, and the same build again
    # (tables replaced, the check snapshot merged) records the change as dbt does on DuckDB.
    signup_id, status, _ = next(r for r in duck_models[("intermediate", "int_signup_latest_status")][1] if r[1] != "No Show")
    raw_statuses = f"{prefix}raw_campaign.signup_statuses"
    run(client, f"INSERT INTO `{raw_statuses}` (signup_status_id, signup_id, status, created_at) SELECT MAX(signup_status_id) + 1, {signup_id}, 'No Show', DATETIME_ADD(MAX(created_at), INTERVAL 1 HOUR) FROM `{raw_statuses}`")
    again = dbt(project.root, work, "build", "--store-failures", "--vars", json.dumps(dbt_vars))
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    history = run(client, f"SELECT signup_id, latest_status, dbt_valid_to IS NULL AS current FROM `{prefix}snapshots.signup_status_history` ORDER BY signup_id, current")
    changed = [r for r in history if r["signup_id"] == signup_id]
    assert changed == [{"signup_id": signup_id, "latest_status": status, "current": False}, {"signup_id": signup_id, "latest_status": "No Show", "current": True}]
    assert len(history) == len(duck_models[("snapshots", "signup_status_history")][1]) + 1

    # Without as_of_date the report's today is today in the campaign's time zone (CURRENT_DATE(zone)).
    zone = ZoneInfo(dbt_vars["campaign_timezone"])
    before = dt.datetime.now(zone).date()
    shown = dbt(project.root, work, "show", "--quiet", "--output", "json", "--inline", "select {{ campaign_today() }} as today, {{ week_start(campaign_today()) }} as week", "--vars", json.dumps(dbt_vars | {"as_of_date": ""}))
    after = dt.datetime.now(zone).date()
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    [today] = json.loads(shown.stdout)["show"]
    assert dt.date.fromisoformat(today["today"]) in (before, after)
    day = dt.date.fromisoformat(today["today"])
    assert today["week"] == (day - dt.timedelta(days=(day.weekday() - 5) % 7)).isoformat()  # the Saturday on or before

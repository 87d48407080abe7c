"""A whole run on the BigQuery warehouse (the emulator): sync, dbt-bigquery, checks, publish. What
readers see — the published dataset's views, the version they read, the dashboards' local copy —
changes only when a run passed, and then all of it; a run that fails a dbt test or a check leaves it
exactly as it was; versions beyond keep_snapshots are dropped. Measured: ~60 s on two cores (dbt's
three builds are most of it)."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import textwrap
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import bq
import pytest
from sqlalchemy import select
from sync_harness import headwater_command, random_seed, telling_the_seed

from headwater.config import LoadedProject, load_project
from headwater.errors import HeadwaterError
from headwater.orchestrate import run_pipeline
from headwater.services.runs import latest_check
from headwater.system import RunStep, open_system_db
from headwater.warehouse import open_warehouse

pytestmark = pytest.mark.bigquery

DBT_PROJECT = "name: p\nprofile: p\nversion: '1.0'\nconfig-version: 2\nmodel-paths: [models]\nmacro-paths: [macros]\ntest-paths: [tests]\nmodels:\n  p:\n    marts: {+materialized: table, +schema: marts}\n"
# Datasets carry the organisation's prefix: dbt gets it as the var headwater_dataset_prefix.
SCHEMA_MACRO = "{% macro generate_schema_name(custom_schema_name, node) -%}{{ var('headwater_dataset_prefix', '') ~ ((custom_schema_name or target.schema) | trim) }}{%- endmacro %}\n"
SOURCES = "sources:\n  - name: app\n    schema: \"{{ var('headwater_dataset_prefix', '') }}raw_app\"\n    tables: [{name: t}]\n"
TOTALS = "select flag, count(*) as n, sum(amount) as amount from {{ source('app', 't') }} group by flag\n"
ROWS = "select id, name from {{ source('app', 't') }}\n"
FAIL_WHEN = "select 1 as failed from {{ ref('totals') }} where {{ var('fail', false) }}\n"
DASHBOARD = (
    "title: Totals\ntable: totals\nfilters: [{column: flag}]\ncharts:\n"
    "  - {title: Amount by flag, type: bar, x: flag, measures: {amount: sum(amount), n: sum(n)}}\n"
    "  - {title: Rows, type: kpi, measures: {n: sum(n)}}\n"
    "  - {title: Names, type: table, table: names, group_by: [name], measures: {ids: count(id)}}\n"
)


def make_project(root: Path, emulator: bq.Emulator, *, fail: bool = False, keep: int = 2, check_sql: str | None = None) -> LoadedProject:
    root.mkdir(parents=True, exist_ok=True)
    prefix = f"p{uuid.uuid4().hex[:8]}_"
    for path, text in {
        "dbt_project.yml": DBT_PROJECT,
        "macros/schema.sql": SCHEMA_MACRO,
        "models/sources.yml": SOURCES,
        "models/marts/totals.sql": TOTALS,
        "models/marts/names.sql": ROWS,
        "tests/fail_when.sql": FAIL_WHEN,
        "dashboards/totals.yml": DASHBOARD,  # checked against the tables each run builds, as BigQuery types them (relation_columns)
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    check = check_sql or f"select count(*) from {prefix}raw_app.t"
    (root / "headwater.yml").write_text(
        textwrap.dedent(
            f"""\
            name: p
            warehouse:
              type: bigquery
              project: {emulator.project}
              api_endpoint: {emulator.endpoint}
              dataset_prefix: {prefix}
              keep_snapshots: {keep}
            dbt:
              vars: {{fail: {str(fail).lower()}}}
            sources:
              app: {{type: sqlite, path: app.db}}
            pipelines:
              p:
                sources: [app]
                publish: [marts]
                checks:
                  - name: all_rows_arrived
                    type: reconcile
                    left: {{source: app, sql: "select count(*) from t"}}
                    right: {{sql: "{check}"}}
                  - name: fresh
                    type: freshness
                    source: app
                    table: t
                    column: _headwater_synced_at
                    max_age: 1h
            """
        )
    )
    return load_project(root)


def source(root: Path, rows: list[tuple[Any, ...]]) -> sqlite3.Connection:
    db = sqlite3.connect(root / "app.db", isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT, amount NUMERIC(10,2), flag BOOLEAN)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    return db


def seen(client: Any, project: LoadedProject) -> tuple[Any, ...]:
    """Everything a reader could see: each published view's definition and rows, and the dashboards' copy."""
    settings: Any = project.config.warehouse
    published = settings.dataset("published")
    views = {}
    for table in sorted(t.table_id for t in client.list_tables(published, retry=None)):
        rows = client.query(f"SELECT * FROM `{published}.{table}` ORDER BY 1, 2", retry=None, job_retry=None).result(retry=None)
        views[table] = [tuple(r.values()) for r in rows]
    warehouse = open_warehouse(project.root, settings)
    snapshot = warehouse.current_snapshot()
    local = {}
    if snapshot is not None:
        con = warehouse.open_snapshot(snapshot)
        try:
            for table in sorted(warehouse.published_tables()):
                local[table] = sorted(con.execute(f'SELECT * FROM "{table}"').fetchall(), key=str)
        finally:
            con.close()
    return views, snapshot.name if snapshot else None, local, sorted(warehouse.published_tables())


def test_a_run_publishes_versions_and_a_failed_run_changes_nothing_readers_see(tmp_path: Path, bigquery_emulator: bq.Emulator) -> None:
    client = bq.client(bigquery_emulator)
    root = tmp_path / "p"
    project = make_project(root, bigquery_emulator)
    db = source(root, [(1, "a", "1.50", 1), (2, "b", "2.25", 0), (3, None, None, 1)])
    first = run_pipeline(project, "p")
    assert first.run.status == "success" and first.published == {"names": 3, "totals": 2}
    with open_system_db(project).session() as session:  # the models' rows, from BigQuery's table metadata
        detail = session.scalars(select(RunStep.detail).where(RunStep.run_id == first.run.id, RunStep.name == "dbt:build")).one()
    assert {n["name"]: n["rows"] for n in json.loads(detail)["nodes"] if n["resource_type"] == "model"} == {"names": 3, "totals": 2}
    views, snapshot, local, tables = seen(client, project)
    assert tables == ["names", "totals"]
    assert views["totals"] == [(False, 1, Decimal("2.25")), (True, 2, Decimal("1.5"))]
    assert views["names"] == [(1, "a"), (2, "b"), (3, None)]
    assert local == {t: sorted(v, key=str) for t, v in views.items()}  # the dashboards' copy holds what BigQuery publishes

    # A failing dbt test: the run fails and readers see exactly what they saw.
    db.execute("INSERT INTO t VALUES (4, 'd', 4, 0)")
    failing = make_project(root, bigquery_emulator, fail=True)
    failing = _same_prefix(failing, project)
    before = seen(client, project)
    with pytest.raises(HeadwaterError):
        run_pipeline(failing, "p")
    assert seen(client, project) == before
    # The failing test's stored rows (dbt-bigquery's --store-failures table) are the check's sample, read with tabledata.list.
    found = latest_check(open_system_db(failing), "p", "p", "dbt_test", "fail_when")
    assert found is not None and found[0].status == "fail"
    assert json.loads(found[0].sample or "{}") == {"columns": ["failed"], "rows": [[1], [1]]}, found[0].sample

    # A failing check (its SQL is GoogleSQL, run in BigQuery): the same.
    wrong = _same_prefix(make_project(root, bigquery_emulator, check_sql="select count(*) + 1 from {prefix}raw_app.t"), project)
    with pytest.raises(HeadwaterError, match="check"):
        run_pipeline(wrong, "p")
    assert seen(client, project) == before

    # Passing again: the new rows, a new version, and no more versions than keep_snapshots.
    project = _same_prefix(make_project(root, bigquery_emulator), project)
    third = run_pipeline(project, "p")
    assert third.run.status == "success"
    views, snapshot, local, _ = seen(client, project)
    assert [r[0] for r in views["names"]] == [1, 2, 3, 4] and snapshot != before[1]
    prefix = project.config.warehouse.dataset("")  # type: ignore[union-attr]
    versions = sorted(d.dataset_id for d in client.list_datasets(retry=None) if d.dataset_id.startswith(prefix + "published__"))
    assert len(versions) <= 2, versions
    view = client.get_table(f"{prefix}published.names", retry=None)
    assert view.table_type == "VIEW"
    client.close()


def _same_prefix(project: LoadedProject, like: LoadedProject) -> LoadedProject:
    """``project``'s headwater.yml with ``like``'s dataset prefix (the same datasets)."""
    path = project.root / "headwater.yml"
    new: Any = project.config.warehouse
    old: Any = like.config.warehouse
    path.write_text(path.read_text().replace(new.dataset_prefix, old.dataset_prefix))
    return load_project(project.root)


def test_runs_killed_at_any_moment_leave_readers_on_one_whole_version(tmp_path: Path, bigquery_emulator: bq.Emulator) -> None:
    """A run killed anywhere — mid-sync, mid-dbt, between the version's copies, while the views are
    repointed — leaves the record of the current version, and the next run finishes what was left:
    afterwards every view reads the recorded version, and the dashboards' copy holds the same rows."""
    seed = random_seed(1903)
    rng = random.Random(seed)
    client = bq.client(bigquery_emulator)
    root = tmp_path / "p"
    project = make_project(root, bigquery_emulator, keep=3)
    db = source(root, [(i, f"n{i}", f"{i}.5", i % 2) for i in range(1, 30)])
    with telling_the_seed(seed):
        killed = 0
        for round_ in range(4):
            db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (100 + round_, f"r{round_}", "1", 1))
            child = subprocess.Popen(headwater_command(root, "run", "p"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                child.communicate(timeout=rng.uniform(2.0, 14.0))
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.communicate()
                killed += 1
        final = run_pipeline(project, "p")
        assert final.run.status == "success"
        views, _, local, tables = seen(client, project)
        settings: Any = project.config.warehouse
        current = open_warehouse(root, settings).current_version()  # type: ignore[attr-defined]
        for table in tables:
            view = client.get_table(f"{settings.dataset('published')}.{table}", retry=None)
            assert f"{settings.dataset(current)}" in (view.view_query or _view_sql(client, settings, table)), (table, current)
        assert views["names"][-1][0] == 103 and local == {t: sorted(v, key=str) for t, v in views.items()}
        assert killed >= 1
    client.close()


def _view_sql(client: Any, settings: Any, table: str) -> str:
    """A view's SQL from INFORMATION_SCHEMA (the emulator returns no view_query for a view made by DDL)."""
    rows = client.query(
        f"SELECT view_definition FROM `{settings.dataset('published')}.INFORMATION_SCHEMA.VIEWS` WHERE table_name = '{table}'", retry=None, job_retry=None
    ).result(retry=None)
    return "".join(r[0] or "" for r in rows)


def test_a_check_that_would_change_bigquery_is_refused_unrun(tmp_path: Path, bigquery_emulator: bq.Emulator) -> None:
    """DuckDB and PostgreSQL roll a check's statements back; BigQuery has no such transaction, so a
    dry run (which runs nothing) says what the statement is and anything but one SELECT is refused.
    A script of several statements is SCRIPT on BigQuery, refused alike (emulator differs from
    BigQuery: its dry run of a script runs the script, so scripts are not tried here)."""
    client = bq.client(bigquery_emulator)
    root = tmp_path / "p"
    project = make_project(root, bigquery_emulator)
    source(root, [(1, "a", "1", 1), (2, "b", "2", 0)])
    assert run_pipeline(project, "p").run.status == "success"
    settings: Any = project.config.warehouse
    raw = settings.dataset("raw_app")
    for statement, kind in [
        (f"delete from {raw}.t where true", "DELETE"),
        (f"insert into {raw}.t (id) values (99)", "INSERT"),
        (f"create table {raw}.stray as select 1 as n", "CREATE_TABLE_AS_SELECT"),
        (f"drop table {raw}.t", "DROP_TABLE"),
    ]:
        wrong = _same_prefix(make_project(root, bigquery_emulator, check_sql=statement), project)
        with pytest.raises(HeadwaterError, match="check"):
            run_pipeline(wrong, "p")
        found = latest_check(open_system_db(wrong), "p", "p", "reconcile", "all_rows_arrived")
        assert found is not None and found[0].status == "error", found
        assert f"must be one SELECT; BigQuery reads this one as {kind}" in (found[0].message or ""), found[0].message
        rows = client.query(f"SELECT count(*) AS n FROM `{raw}.t`", retry=None, job_retry=None).result(retry=None)
        assert [r["n"] for r in rows] == [2]
        assert sorted(t.table_id for t in client.list_tables(raw, retry=None)) == ["t"]
    client.close()

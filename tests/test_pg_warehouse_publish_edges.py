"""Edges of publishing into a PostgreSQL warehouse: only the schemas Headwater itself retired are ever
dropped (they are recorded in `_headwater.retired_schemas`, not found by their name's pattern), and a
full disk after PostgreSQL's commit says what is true — published in the warehouse, the dashboards'
copy behind until the next run — instead of "published data was left as it was". Real faults only:
the full disk is a tmpfs filled to the brim while the run waits, inside its publish transaction, on a
lock the test holds. Measured: ~20 s together on two cores."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pg_warehouse import connect, plain_url, rows

from headwater.config import load_project
from headwater.warehouse import open_warehouse

pytestmark = pytest.mark.postgres

MART = "flake_rate_weekly"
READER = "bi_full_disk_test"
SIGNUP = "INSERT INTO signups SELECT max(signup_id) + 1, 1, min(event_id), '2026-03-01 00:00:00', '2026-03-01 00:00:00' FROM signups"


def schemas(url: str) -> list[str]:
    return [r[0] for r in rows(url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'published%' ORDER BY 1")]


# --- (a) retired schemas: recorded, and only those dropped --------------------------------------------


def test_only_schemas_headwater_retired_are_dropped_never_a_user_s_named_alike(tmp_path: Path, fresh_pg_database: str) -> None:
    url = fresh_pg_database
    root = tmp_path / "p"
    root.mkdir()
    (root / "headwater.yml").write_text(f"name: edges\nwarehouse:\n  type: postgres\n  url: {plain_url(url)}\n")
    warehouse = open_warehouse(root, load_project(root).config.warehouse)
    with connect(url) as admin:
        admin.execute("CREATE SCHEMA work; CREATE TABLE work.t AS SELECT 1 AS n")
        for mine in ("published__old_abc", "published__old_1f2"):  # a user's own, named as the old pattern took them
            admin.execute(f"CREATE SCHEMA {mine}; CREATE TABLE {mine}.keep AS SELECT 'mine' AS v")
    build = warehouse.connect_build()
    try:
        relation = f'"{warehouse.database}"."work"."t"'
        reader = psycopg.connect(plain_url(url), autocommit=True)
        try:
            for number in range(1, 4):
                with connect(url) as admin:
                    admin.execute("UPDATE work.t SET n = %s", [number])
                if number == 2:  # a reader holds the table this publish retires: left, and listed, until a publish after it is gone
                    reader.execute("BEGIN")
                    assert reader.execute("SELECT n FROM published.t").fetchall() == [(1,)]
                warehouse.publish(build, f"run-{number:06d}", {"t": relation}, [])
                assert rows(url, "SELECT n FROM published.t") == [(number,)]
                assert {"published__old_abc", "published__old_1f2"} <= set(schemas(url)), number
            held = rows(url, "SELECT schema_name FROM _headwater.retired_schemas")
            assert len(held) == 1 and held[0][0] in schemas(url), (held, schemas(url))  # still read: kept, and still on the list
        finally:
            reader.close()
        warehouse.publish(build, "run-000004", {"t": relation}, [])
    finally:
        build.close()
    assert schemas(url) == ["published", "published__old_1f2", "published__old_abc"]
    for mine in ("published__old_abc", "published__old_1f2"):
        assert rows(url, f"SELECT v FROM {mine}.keep") == [("mine",)]
    assert rows(url, "SELECT count(*) FROM _headwater.retired_schemas") == [(0,)]

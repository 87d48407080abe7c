"""Edges of publishing into a PostgreSQL warehouse: only the schemas Headwater itself retired are ever
dropped (they are recorded in `_headwater.retired_schemas`, not found by their name's pattern), and a
full disk after PostgreSQL's commit says what is true — published in the warehouse, the dashboards'
copy behind until the next run — instead of "published data was left as it was". Real faults only:
the full disk is a tmpfs filled to the brim while the run waits, inside its publish transaction, on a
lock the test holds. Measured: ~25 s together on two cores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from cli_process import OutputLines, cli_env
from demo_project import execute_source, make_project, recent_runs_of
from pg_warehouse import connect, on_postgres, plain_url, rows

from headwater.config import LoadedProject, load_project
from headwater.publish import PublishedData
from headwater.warehouse import WarehouseEngine, open_warehouse

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


# --- (b) a full disk after PostgreSQL's commit ---------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB file system of its own (a tmpfs), unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path) -> Path:
    """Every byte of the disk taken: the next write gets ENOSPC."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for size in (1 << 20, 4096, 512, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError:
                pass
    assert os.statvfs(disk).f_bavail == 0
    return filler


def _local(warehouse: WarehouseEngine) -> list[tuple]:
    reader = PublishedData(warehouse)
    try:
        with reader.cursor() as cur:
            return sorted(cur.execute(f'SELECT * FROM "{MART}"').fetchall())
    finally:
        reader.close()


def test_a_full_disk_after_postgres_committed_says_it_published_and_the_dashboards_catch_up(small_disk: Path, tmp_path: Path, fresh_pg_database: str) -> None:
    url = fresh_pg_database
    project = on_postgres(make_project(small_disk / "demo", 300), url)
    path = project.root / "headwater.yml"
    data = yaml.safe_load(path.read_text())
    data["system"] = {"url": f"sqlite:///{tmp_path / 'system.db'}"}  # recorded elsewhere: the run's end can be told
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    project: LoadedProject = load_project(project.root)
    warehouse = open_warehouse(project.root, project.config.warehouse)
    try:
        _publish_meets_a_full_disk(small_disk, project, warehouse, url)
    finally:
        with connect(url) as admin:  # roles are the server's: they would outlive the test's database
            admin.execute(f'DROP OWNED BY "{READER}"')
            admin.execute(f'DROP ROLE "{READER}"')


def _publish_meets_a_full_disk(small_disk: Path, project: LoadedProject, warehouse: WarehouseEngine, url: str) -> None:
    warehouse.grant_reader(READER)  # a reader role: the swap reads the roles' table in its transaction
    subprocess.run([sys.executable, "-m", "headwater.cli.main", "run", "-p", str(project.root)], env=cli_env(HEADWATER_NO_DAEMON="1"), check=True, capture_output=True, timeout=300)
    before = _local(warehouse)
    assert before == sorted(rows(url, f"SELECT * FROM published.{MART}"))

    execute_source(project, SIGNUP)
    pause = connect(url)
    pause.execute("BEGIN")
    pause.execute("LOCK TABLE _headwater.reader_roles IN ACCESS EXCLUSIVE MODE")
    child = subprocess.Popen(
        [sys.executable, "-m", "headwater.cli.main", "run", "-p", str(project.root)], env=cli_env(HEADWATER_NO_DAEMON="1", NO_COLOR="1", COLUMNS="400"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = OutputLines(child)
    filler = None
    try:
        deadline = time.monotonic() + 180
        while not rows(url, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE %s", ["%reader_roles%"]):
            assert child.poll() is None, f"the run ended before its publish transaction:\n{lines.text()}"
            assert time.monotonic() < deadline, f"the run never reached its publish transaction:\n{lines.text()}"
            time.sleep(0.02)
        filler = _fill(small_disk)  # the local copy is written; the pointer's switch is still to come
        pause.execute("ROLLBACK")  # the publish transaction goes on, and commits
        code = child.wait(timeout=120)
        lines.thread.join(timeout=10)
    finally:
        pause.close()
        child.kill()
        child.wait()
    said = lines.text()
    assert code == 1, said
    assert "left as it was" not in said, said
    assert f"Published {MART} in " in said and "No space left on device" in said, said
    assert "the dashboards' copy" in said and "next successful run" in said, said
    run = recent_runs_of(project)[0]
    assert run.status == "failed" and run.error.startswith(f"Published {MART} in "), run.error
    new = sorted(rows(url, f"SELECT * FROM published.{MART}"))
    assert new != before and sorted(rows(url, f"SELECT * FROM marts.{MART}")) == new  # committed in PostgreSQL
    assert _local(warehouse) == before  # the dashboards' copy: the previous one, whole

    assert filler is not None
    filler.unlink()
    again = subprocess.run([sys.executable, "-m", "headwater.cli.main", "run", "-p", str(project.root)], env=cli_env(HEADWATER_NO_DAEMON="1"), capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert _local(warehouse) == new  # caught up

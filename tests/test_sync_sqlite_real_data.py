"""The SQLite source on real files with the problems real data has: a broken view among good tables,
a declared key that is not unique, tables gone from the file, odd names."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_source import Harness

from headwater.config.sources import SQLiteSettings
from headwater.errors import ExitCode, HeadwaterError
from headwater.sources.sqlite import SQLiteSource
from headwater.sync import sync_source
from headwater.warehouse import connect


@pytest.fixture
def f(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_a_broken_view_fails_alone_with_a_clear_error(f: Harness) -> None:
    f.sql("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO a VALUES (1, 'x')", "CREATE TABLE z (id INTEGER PRIMARY KEY)", "INSERT INTO z VALUES (5)")
    f.sql("CREATE TABLE gone_soon (id INTEGER PRIMARY KEY)", "CREATE VIEW b_view AS SELECT id FROM gone_soon", "DROP TABLE gone_soon")
    with pytest.raises(HeadwaterError) as failed:
        f.sync()
    assert failed.value.exit_code in (ExitCode.USER_ERROR, ExitCode.RUN_FAILED)
    assert "b_view" in failed.value.render() and "app" in failed.value.render()
    assert {s.table: s.mode for s in failed.value.table_stats} == {"a": "full", "b_view": "failed", "z": "full"}
    assert f.query("SELECT id FROM raw_app.z") == [(5,)]


def test_a_declared_key_with_duplicates_fails_the_table(f: Harness) -> None:
    f.sql("CREATE TABLE visits (person TEXT, page TEXT)", "INSERT INTO visits VALUES ('ann', 'a'), ('ann', 'b')")
    with pytest.raises(HeadwaterError) as failed:
        f.sync(overrides={"visits": {"primary_key": ["person"]}})
    assert "person = 'ann'" in failed.value.what and failed.value.exit_code == ExitCode.USER_ERROR
    assert f.sync(overrides={"visits": {"primary_key": ["person"], "mode": "full"}})["visits"].rows == 2  # a reload merges nothing


def test_tables_gone_from_the_file_are_reported_then_pruned_with_their_state(f: Harness) -> None:
    f.sql("CREATE TABLE keep (id INTEGER PRIMARY KEY)", "CREATE TABLE old (id INTEGER PRIMARY KEY)", "INSERT INTO old VALUES (1), (2), (3)")
    f.sync()
    f.sql("ALTER TABLE old RENAME TO new")
    stats = f.sync()
    assert stats["old"].mode == "stale" and stats["old"].rows == 3 and "--prune" in stats["old"].notes[0]
    assert stats["new"].rows == 3
    assert f.sync(prune=True)["old"].mode == "pruned"
    assert {r[0] for r in f.query("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw_app'")} == {"keep", "new"}
    assert f.query("SELECT table_name FROM _headwater.sync_state WHERE table_name = 'old'") == []
    assert "old" not in f.sync()


def test_odd_table_names(f: Harness) -> None:
    names = ["my.table", "it's", 'quo"te', "with space", "ünïcødé", "select"]
    for n, name in enumerate(names):
        ident = '"' + name.replace('"', '""') + '"'
        f.sql(f'CREATE TABLE {ident} (id INTEGER PRIMARY KEY, "order" TEXT)', *(f"INSERT INTO {ident} VALUES ({i}, 'v')" for i in range(n + 1)))
    first = f.sync(overrides={"it's": {"deletes": "tombstone"}})
    assert {t: s.rows for t, s in first.items()} == {name: n + 1 for n, name in enumerate(names)}
    f.sql("""DELETE FROM "it's" WHERE id = 0""")
    assert f.sync(overrides={"it's": {"deletes": "tombstone"}})["it's"].deleted == 1


def test_a_value_too_big_for_the_memory_limit_names_column_and_key(f: Harness) -> None:
    f.sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT)", "INSERT INTO docs VALUES (1, 'a', 'short'), (4, 'b', printf('%.*c', 100000000, 'x'))")
    config = SQLiteSettings.model_validate({"type": "sqlite", "path": str(f.file)})
    con = connect(f.warehouse)
    try:
        with pytest.raises(HeadwaterError) as failed:
            sync_source(con, SQLiteSource("app", config, f.tmp), memory_limit="40MB")
    finally:
        con.close()
    text = failed.value.render()
    assert "table docs does not fit" in text and "column body" in text and "id = 4" in text and "100.0 MB" in text, text


def test_the_projects_memory_limit_is_the_syncs_and_prune_needs_the_whole_source(f: Harness) -> None:
    """`headwater sync` syncs under warehouse.memory_limit, lower or higher than the default."""
    import subprocess

    from cli_process import cli_env, run_cli

    f.sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO docs VALUES (9, printf('%.*c', 100000000, 'x'))")

    def run(limit: str, *args: str) -> subprocess.CompletedProcess[str]:
        (f.tmp / "headwater.yml").write_text(f"name: mem\nwarehouse:\n  memory_limit: {limit}\nsources:\n  app:\n    type: sqlite\n    path: app.db\n")
        return run_cli("sync", *args, "--project", f.tmp, timeout=300, env=cli_env(NO_COLOR="1"))

    low = run("40MB")
    assert low.returncode == 2 and "column body of the row with id = 9" in low.stderr and "Traceback" not in low.stderr, low.stderr
    high = run("3GB")
    assert high.returncode == 0, high.stderr
    pruned = run("3GB", "app", "docs", "--prune")
    assert pruned.returncode == 2 and "--prune cannot be combined with table names" in pruned.stderr

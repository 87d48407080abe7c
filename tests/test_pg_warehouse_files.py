"""File sources (CSV, Excel, Google Sheets) into a PostgreSQL warehouse: their tables go through the
warehouse's `RawTarget` as database sources' do (`sync.sql.stored_select`), so a cell PostgreSQL
would refuse or store as another value stops its table with an error naming source, table, column,
row and file, and leaves raw (table, quarantine, state) and published as they were; every other
value arrives as the DuckDB warehouse holds it. Names PostgreSQL would cut at 63 bytes: a table's or
a column's is refused, naming it; a quarantine companion's gets a digest. Measured: ~14 s together
on two cores (most of it one demo run and its failing run from the command line)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_process import run_cli
from demo_project import make_project as make_demo
from files_project import make_project, write
from pg_warehouse import on_postgres, plain_url, rows, schema_checksums
from sheets_server import sheets_server

from headwater.config import LoadedProject, load_project
from headwater.errors import ConfigError, HeadwaterError
from headwater.orchestrate import run_pipeline
from headwater.services.describe import quarantine_report
from headwater.sources import open_source
from headwater.sync import TableStats
from headwater.sync.engine import quarantine_table
from headwater.warehouse import capabilities, open_warehouse

pytestmark = pytest.mark.postgres

NUL = "\0"
SHEET = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"


def files_on(root: Path, sources_yaml: str, url: str | None) -> LoadedProject:
    """`files_project.make_project`, its warehouse the PostgreSQL database at ``url`` (None: DuckDB's)."""
    project = make_project(root, sources_yaml)
    if url is None:
        return project
    with open(root / "headwater.yml", "a") as handle:
        handle.write(f"warehouse:\n  type: postgres\n  url: {plain_url(url)}\n")
    return load_project(root)


def sync(project: LoadedProject, source: str) -> list[TableStats]:
    """One source synced the way a run syncs it: through the project's warehouse engine."""
    warehouse = open_warehouse(project.root, project.config.warehouse)
    con = warehouse.connect_build()
    try:
        return warehouse.load_raw(con, open_source(source, project.config.sources[source], project.root), lambda _: None)
    finally:
        con.close()


def raw_rows(project: LoadedProject, sql: str) -> list[tuple[Any, ...]]:
    warehouse = open_warehouse(project.root, project.config.warehouse)
    con = warehouse.connect_build()
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- every type a file source makes, the same on both warehouses --------------------------------------

TYPED = """
typed:
  type: csv
  path: data/typed.csv
  columns:
    n: {type: integer}
    price: {type: decimal, scale: 2}
    ratio: {type: decimal}
    ok: {type: boolean}
    day: {type: date}
    stamp: {type: datetime}
    stamp_zone: {type: datetime, timezone: Europe/Paris}
"""
TYPED_CSV = (
    "n,price,ratio,ok,day,stamp,stamp_zone,note\n"
    "9223372036854775807,123456789012345678901234567890123456.78,1e300,yes,0001-01-01,2024-03-31 02:30:00.123456,2024-03-31 02:30,NULL\n"
    "-9223372036854775808,-0.01,-0.0,no,9999-12-31,9999-12-31 23:59:59.999999,2024-10-27 02:30,\"quote \"\" back\\\\slash, {brace} é\"\n"
    "0,0,2.5e-300,N,2024-02-29,1970-01-01,1970-01-01 00:00,' \t'\n"
)


def test_every_type_a_file_source_makes_arrives_in_postgres_as_the_duckdb_warehouse_holds_it(tmp_path: Path, fresh_pg_database: str) -> None:
    loaded = {}
    for name, url in (("duckdb", None), ("postgres", fresh_pg_database)):
        project = files_on(tmp_path / name, TYPED, url)
        write(project.root / "data/typed.csv", TYPED_CSV)
        [stats] = sync(project, "typed")
        assert (stats.rows, stats.quarantined) == (3, 0), (name, stats.notes)
        loaded[name] = sorted(raw_rows(project, "SELECT n, price, ratio, ok, day, stamp, stamp_zone, note, _headwater_file, _headwater_row FROM raw_typed.typed"), key=str)
    assert loaded["postgres"] == loaded["duckdb"]
    by_n = {r[0]: r for r in loaded["postgres"]}
    assert by_n[9223372036854775807][1] == Decimal("123456789012345678901234567890123456.78")  # 38 digits, exactly
    assert by_n[-9223372036854775808][5] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert by_n[9223372036854775807][7] == "NULL" and "{brace}" in by_n[-9223372036854775808][7]  # text, not NULL
    types = rows(fresh_pg_database, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'raw_typed' AND table_name = 'typed' ORDER BY ordinal_position")
    assert [t for _, t in types] == [
        "bigint", "numeric", "double precision", "boolean", "date", "timestamp without time zone", "timestamp with time zone", "character varying", "character varying", "bigint", "timestamp with time zone",
    ]


# --- a NUL byte: a clear error, nothing changed --------------------------------------------------------

ROSTER = "roster:\n  type: csv\n  path: data/roster.csv\n  columns:\n    age: {type: integer}\n"


def test_a_nul_byte_in_a_cell_or_in_a_quarantined_value_stops_the_table_with_an_error_naming_it(tmp_path: Path, fresh_pg_database: str) -> None:
    url = fresh_pg_database
    project = files_on(tmp_path / "p", ROSTER, url)
    csv = write(project.root / "data/roster.csv", "name,age\nAna,34\nBob,thirty\n")
    sync(project, "roster")
    before = schema_checksums(url, "raw_roster"), rows(url, "SELECT table_name, state FROM _headwater.sync_state ORDER BY 1")
    assert set(before[0]) == {"roster", "roster__quarantine"} and all(before[0].values())

    cases = [
        ("name,age\nAna,34\nB" + NUL + "b,35\nCy,36\n", "column roster.name (row 3 of data/roster.csv) holds text with a NUL byte (character 0)"),
        ("name,age\nAna,34\nBob,3" + NUL + "5\n", "column roster__quarantine.original_value (row 3 of data/roster.csv) holds text with a NUL byte (character 0)"),
    ]
    for text, said in cases:
        csv.write_bytes(text.encode())
        with pytest.raises(HeadwaterError) as failure:
            sync(project, "roster")
        rendered = failure.value.render()
        assert f"Source 'roster': {said}, which PostgreSQL's text cannot hold" in rendered, rendered
        assert "Invalid Input Error" not in rendered and "NULL-byte" not in rendered, rendered
        assert (schema_checksums(url, "raw_roster"), rows(url, "SELECT table_name, state FROM _headwater.sync_state ORDER BY 1")) == before

    # from the command line: exit 2 (the file is the user's to fix), the same message
    done = run_cli("sync", "roster", "-p", project.root, env=None)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "column roster__quarantine.original_value (row 3 of data/roster.csv) holds text with a NUL byte" in done.stderr, done.stderr
    assert (schema_checksums(url, "raw_roster"), rows(url, "SELECT table_name, state FROM _headwater.sync_state ORDER BY 1")) == before

    # the file fixed, its values load
    csv.write_text("name,age\nAna,34\nBob,35\nCy,x\n")
    [stats] = sync(project, "roster")
    assert (stats.rows, stats.quarantined) == (2, 1)
    assert raw_rows(project, "SELECT name, age FROM raw_roster.roster ORDER BY 1") == [("Ana", 34), ("Bob", 35)]


def test_a_run_whose_file_has_a_nul_byte_fails_with_exit_2_and_publishes_nothing_new(tmp_path: Path, fresh_pg_database: str) -> None:
    """The demo on PostgreSQL with a CSV source in its pipeline: the run that meets the NUL byte fails
    in its sync step, clearly, and raw and published (PostgreSQL's and the dashboards' copy) stay."""
    url = fresh_pg_database
    project = on_postgres(make_demo(tmp_path / "demo", 300), url)
    path = project.root / "headwater.yml"
    data = yaml.safe_load(path.read_text())
    data["sources"]["notes"] = {"type": "csv", "path": "data/notes.csv"}
    data["pipelines"]["flake_rate"]["sources"].append("notes")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    notes = write(project.root / "data/notes.csv", "who,note\nAna,first\n")
    project = load_project(project.root)
    assert run_pipeline(project).run.status == "success"
    warehouse = open_warehouse(project.root, project.config.warehouse)
    before = (schema_checksums(url, "raw_notes"), schema_checksums(url, "published"), warehouse.current_snapshot())
    assert before[0]["notes"] and before[1] and before[2] is not None

    notes.write_bytes(("who,note\nAna,first\nBob,sec" + NUL + "ond\n").encode())
    done = run_cli("run", "-p", project.root, env=None)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Source 'notes': column notes.note (row 3 of data/notes.csv) holds text with a NUL byte (character 0)" in done.stderr, done.stderr
    assert "Invalid Input Error" not in done.stderr
    assert (schema_checksums(url, "raw_notes"), schema_checksums(url, "published"), warehouse.current_snapshot()) == before


# --- quarantine companions of long names ----------------------------------------------------------------

LONG = "q" * 61  # its companion, cut by PostgreSQL at 63 bytes, would be named as table LONG + "__" is
SOURCES_WITH_LONG_NAMES = f"""
long:
  type: csv
  tables:
    {LONG}:
      path: data/a.csv
      columns: {{n: {{type: integer}}}}
    {LONG}__:
      path: data/b.csv
      columns: {{n: {{type: integer}}}}
lite:
  type: sqlite
  path: data/lite.db
"""


def test_quarantine_companions_of_long_table_names_stay_apart_and_are_found_again(tmp_path: Path, fresh_pg_database: str) -> None:
    url = fresh_pg_database
    project = files_on(tmp_path / "p", SOURCES_WITH_LONG_NAMES, url)
    write(project.root / "data/a.csv", "n\n1\nx\n")
    write(project.root / "data/b.csv", "n\n2\n3\ny\nz\n")
    expected = {LONG: ([(1,)], [("x",)]), LONG + "__": ([(2,), (3,)], [("y",), ("z",)])}
    for attempt in ("first", "unchanged"):
        stats = sync(project, "long")
        assert {s.table: (s.mode == "skipped", s.rows, s.quarantined) for s in stats} == {LONG: (attempt != "first", 1, 1), LONG + "__": (attempt != "first", 2, 2)}
        for name, (kept, _) in expected.items():  # PostgreSQL would have cut LONG's companion onto LONG__'s raw table
            assert rows(url, f'SELECT n FROM raw_long."{name}" ORDER BY 1') == kept, (attempt, name)
        report = quarantine_report([s.as_dict() for s in stats], "long", capabilities("postgres").max_identifier_length)
        for entry in report:
            schema, companion = entry["relation"].split(".")
            assert len(companion.encode()) <= 63 and companion.endswith("__quarantine"), companion
            found = (rows(url, f'SELECT n FROM raw_long."{entry["table"]}" ORDER BY 1'), rows(url, f'SELECT original_value FROM {schema}."{companion}" ORDER BY 1'))
            assert found == expected[entry["table"]], (attempt, entry)
        assert len(rows(url, "SELECT 1 FROM information_schema.tables WHERE table_schema = 'raw_long'")) == 4

    # a SQLite table's quarantine (a value that does not fit its column), kept by --prune as its companion
    table = "t" * 56
    with sqlite3.connect(project.root / "data/lite.db") as lite:
        lite.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, n INTEGER)")
        lite.executemany(f"INSERT INTO {table} VALUES (?, ?)", [(1, 5), (2, "five")])
    companion = quarantine_table(table, 63)
    assert companion != table + "__quarantine" and len(companion.encode()) <= 63
    for _ in range(2):
        warehouse = open_warehouse(project.root, project.config.warehouse)
        con = warehouse.connect_build()
        try:
            [stats] = warehouse.load_raw(con, open_source("lite", project.config.sources["lite"], project.root), lambda _: None, prune=True)
        finally:
            con.close()
        assert (stats.table, stats.rows, stats.quarantined) == (table, 1, 1)
        assert rows(url, f'SELECT key, original_value FROM raw_lite."{companion}"') == [("id=2", "five")]
    assert sorted(r[0] for r in rows(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw_lite'")) == sorted([table, companion])


def test_a_column_name_longer_than_postgresql_keeps_is_refused_naming_it_and_rename_fixes_it(tmp_path: Path, fresh_pg_database: str) -> None:
    """PostgreSQL would cut it at 63 bytes: a model selecting it by its name would not find it, and two
    such headers alike in their first 63 bytes would be one column."""
    url = fresh_pg_database
    long = "a" * 70
    project = files_on(tmp_path / "p", "roster:\n  type: csv\n  path: data/r.csv\n", url)
    csv = write(project.root / "data/r.csv", "name,n\nAna,1\n")
    sync(project, "roster")
    before = schema_checksums(url, "raw_roster"), rows(url, "SELECT state FROM _headwater.sync_state")
    csv.write_text(f"name,{long}\nAna,1\n")
    with pytest.raises(ConfigError) as failure:
        sync(project, "roster")
    said = failure.value.render()
    assert f"column {long} has a name of 70 bytes, longer than the warehouse keeps (63)" in said and "rename:" in said, said
    assert (schema_checksums(url, "raw_roster"), rows(url, "SELECT state FROM _headwater.sync_state")) == before

    data = yaml.safe_load((project.root / "headwater.yml").read_text())
    data["sources"]["roster"]["rename"] = {long: "n"}
    (project.root / "headwater.yml").write_text(yaml.safe_dump(data))
    project = load_project(project.root)
    sync(project, "roster")
    assert raw_rows(project, "SELECT name, n FROM raw_roster.roster") == [("Ana", "1")]


def test_a_tab_whose_name_makes_a_table_name_longer_than_postgresql_keeps_is_refused_and_the_others_sync(tmp_path: Path, fresh_pg_database: str) -> None:
    """`range: '*'` names each tab's table after the tab; Google Sheets allows 100 characters."""
    url = fresh_pg_database
    tab = "Volunteers who signed up at the spring fair and still need a call back"  # 70 characters
    with sheets_server() as fake:
        fake.add(SHEET, {"Chapters": [["Chapter", "Members"], ["Pune", 42]], tab: [["Name", "Phone"], ["Ana", "0123"]]})
        sources = f"chapters:\n  type: google_sheets\n  spreadsheet_id: {SHEET}\n  credentials: ${{GOOGLE_SA_KEY}}\n  api_url: {fake.url}\n  range: '*'\n"
        project = make_project(tmp_path / "p", sources, {"GOOGLE_SA_KEY": fake.account.key_json(fake.token_uri)})
        with open(project.root / "headwater.yml", "a") as handle:
            handle.write(f"warehouse:\n  type: postgres\n  url: {plain_url(url)}\n")
        project = load_project(project.root, env={"GOOGLE_SA_KEY": fake.account.key_json(fake.token_uri)})
        with pytest.raises(HeadwaterError) as failure:
            sync(project, "chapters")
    said = failure.value.render()
    name = "volunteers_who_signed_up_at_the_spring_fair_and_still_need_a_call_back"
    assert f"table {name} has a name of 70 bytes, longer than the warehouse keeps (63)" in said, said
    assert [s.table for s in failure.value.table_stats or []] == ["chapters"]  # what synced is reported with the failure
    assert sorted(r[0] for r in rows(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw_chapters'")) == ["chapters", "chapters__quarantine"]
    assert rows(url, "SELECT chapter, members FROM raw_chapters.chapters") == [("Pune", "42")]


def test_a_database_column_name_longer_than_postgresql_keeps_is_refused_naming_it(tmp_path: Path, fresh_pg_database: str) -> None:
    """SQLite's names have no limit (MySQL's reach 64 characters): PostgreSQL would cut the raw column's."""
    url = fresh_pg_database
    project = files_on(tmp_path / "p", "lite:\n  type: sqlite\n  path: data/lite.db\n", url)
    long = "c" * 64
    (project.root / "data").mkdir()
    with sqlite3.connect(project.root / "data/lite.db") as lite:
        lite.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {long} TEXT)")
        lite.execute("CREATE TABLE fine (id INTEGER PRIMARY KEY)")
        lite.execute("INSERT INTO t VALUES (1, 'x')")
        lite.execute("INSERT INTO fine VALUES (1)")
    with pytest.raises(HeadwaterError) as failure:
        sync(project, "lite")
    said = failure.value.render()
    assert f"column t.{long} has a name of 64 bytes, longer than the warehouse keeps (63)" in said, said
    assert sorted(r[0] for r in rows(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw_lite'")) == ["fine"]

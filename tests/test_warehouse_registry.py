"""The warehouse seam: every ``warehouse.type`` the project file accepts has an engine, engines say what
they can do as data, and the DuckDB engine implements the whole interface."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from headwater.config.loader import load_project
from headwater.config.model import BigQueryWarehouse, DuckDBWarehouse, PostgresWarehouse, Project
from headwater.errors import ConfigError
from headwater.warehouse import ENGINES, Capabilities, Warehouse, WarehouseEngine, capabilities, open_warehouse
from headwater.warehouse.bigquery import Warehouse as BigQueryEngine
from headwater.warehouse.postgres import Warehouse as PostgresEngine
from headwater.warehouse.registry import engine_class

EXAMPLES = {
    "duckdb": DuckDBWarehouse(),
    "postgres": PostgresWarehouse(type="postgres", url="postgresql://hw@db.example:5432/acme"),
    "bigquery": BigQueryWarehouse(type="bigquery", project="acme-data"),
}


def accepted_settings() -> dict[str, type[BaseModel]]:
    """``type`` -> settings class, for every member of the ``warehouse:`` union the config accepts."""
    annotation = Project.model_fields["warehouse"].annotation
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    found = {}
    for member in members:
        (tag,) = typing.get_args(member.model_fields["type"].annotation)
        found[tag] = member
    return found


def test_every_accepted_warehouse_type_has_an_engine_and_every_engine_a_type() -> None:
    accepted = accepted_settings()
    assert accepted == {"duckdb": DuckDBWarehouse, "postgres": PostgresWarehouse, "bigquery": BigQueryWarehouse}
    assert set(EXAMPLES) == set(accepted)
    assert set(accepted) == set(ENGINES)


def test_capabilities_are_read_from_the_registry() -> None:
    for kind, engine in ENGINES.items():
        assert isinstance(engine.capabilities, Capabilities)
        assert capabilities(kind) is engine.capabilities
    duckdb = capabilities("duckdb")
    assert duckdb.transactional_ddl and duckdb.atomic_swap and not duckdb.reader_roles and not duckdb.concurrent_writers


def test_open_warehouse_builds_the_registered_engine_of_the_settings_type(tmp_path: Path) -> None:
    for kind in accepted_settings():
        warehouse = open_warehouse(tmp_path, EXAMPLES[kind])
        assert type(warehouse) is ENGINES[kind]
        assert warehouse.capabilities is capabilities(kind)


def test_an_unknown_engine_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        engine_class("oracle")
    assert "oracle" in info.value.what and "duckdb" in (info.value.why or "")


def test_type_defaults_to_duckdb_and_an_unknown_type_is_refused_with_the_choices(tmp_path: Path) -> None:
    (tmp_path / "headwater.yml").write_text("name: x\nwarehouse:\n  path: w\n")
    assert load_project(tmp_path, env={}).config.warehouse == DuckDBWarehouse(path="w")
    (tmp_path / "headwater.yml").write_text("name: x\nwarehouse:\n  type: duckbd\n")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path, env={})
    assert "headwater.yml:3: warehouse: unknown type 'duckbd' — did you mean 'duckdb'?" in info.value.what


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_engine_implements_every_member_of_the_interface(kind: str) -> None:
    members = {name for name in vars(WarehouseEngine) if not name.startswith("_")} | set(WarehouseEngine.__annotations__)
    assert {"connect_build", "load_raw", "dbt_profile", "publish", "open_snapshot", "grant_reader", "capabilities", "session", "project_rows", "relation_rows", "sample_rows", "dbt_vars"} <= members
    instance = ENGINES[kind](Path("/nonexistent"), EXAMPLES[kind], None)  # type: ignore[call-arg]
    assert all(hasattr(instance, name) for name in members), sorted(name for name in members if not hasattr(instance, name))
    assert type(instance) is {"duckdb": Warehouse, "postgres": PostgresEngine, "bigquery": BigQueryEngine}[kind]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "must be a PostgreSQL URL"),
        ("postgresql://u@h:5432", "names no database"),
        ("postgresql://u@h/memory", "may not be called 'memory'"),
    ],
)
def test_a_postgres_warehouse_url_is_checked_when_the_file_loads(tmp_path: Path, url: str, message: str) -> None:
    (tmp_path / "headwater.yml").write_text(f"name: x\nwarehouse:\n  type: postgres\n  url: {url}\n")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path, env={})
    assert message in str(info.value)


def test_a_duckdb_warehouse_has_no_reader_roles_and_says_what_to_do(tmp_path: Path) -> None:
    from headwater.errors import HeadwaterError

    with pytest.raises(HeadwaterError) as info:
        open_warehouse(tmp_path, DuckDBWarehouse()).grant_reader("metabase")
    assert "metabase" in info.value.what and info.value.fix


def test_the_duckdb_dbt_profile_points_dbt_duckdb_at_the_build_database(tmp_path: Path) -> None:
    from headwater.warehouse import extension_directory

    warehouse = open_warehouse(tmp_path, DuckDBWarehouse(path="wh", memory_limit="1GB"))
    profile = warehouse.dbt_profile(3)
    assert profile["type"] == "duckdb" and profile["threads"] == 3
    assert profile["path"] == str((tmp_path / "wh" / "build.duckdb").resolve())
    assert profile["settings"]["memory_limit"] == "1GB"
    assert profile["settings"].get("extension_directory") == extension_directory()


def test_connections_never_print_duckdbs_progress_bar(tmp_path: Path) -> None:
    """DuckDB's Python client prints a progress bar on stdout for a query past two seconds, into
    `--json` output and pipes (a PostgreSQL warehouse's full loads did: see the peak-memory test of
    tests/test_pg_warehouse_sync_queries.py, which reads a subprocess's stdout). Every connection
    Headwater opens has it off, file or memory, read-only or not."""
    from headwater.warehouse import connect

    connect(tmp_path / "w.duckdb").close()
    for con in (connect(":memory:"), connect(tmp_path / "w.duckdb", read_only=True)):
        assert con.execute("SELECT current_setting('enable_progress_bar_print')").fetchone() == (False,)
        con.close()


def test_a_bigquery_warehouse_without_googles_libraries_says_what_to_install(tmp_path: Path) -> None:
    """An embedded install has no Google client: the import is made to fail as it would there."""
    import subprocess
    import sys

    from cli_process import cli_env

    code = (
        "import sys; sys.modules['google.cloud.bigquery'] = None\n"
        "from pathlib import Path\n"
        "from headwater.config.model import BigQueryWarehouse\n"
        "from headwater.errors import HeadwaterError\n"
        "from headwater.warehouse import open_warehouse\n"
        "try:\n"
        f"    open_warehouse(Path({str(tmp_path)!r}), BigQueryWarehouse(type='bigquery', project='acme-data'))\n"
        "except HeadwaterError as exc:\n"
        "    print(exc.render())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "A BigQuery warehouse needs Google's BigQuery client and dbt-bigquery" in done.stdout and "pip install 'headwater[bigquery]'" in done.stdout, done.stdout


@pytest.mark.parametrize(("block", "message"), [("project: Bad_Project", "project"), ("project: acme-data\n  api_endpoint: ftp://x", "api_endpoint"), ("project: acme-data\n  dataset_prefix: a-b", "dataset_prefix")])
def test_a_bigquery_warehouse_block_is_checked_when_the_file_loads(tmp_path: Path, block: str, message: str) -> None:
    (tmp_path / "headwater.yml").write_text(f"name: x\nwarehouse:\n  type: bigquery\n  {block}\n")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path, env={})
    assert message in info.value.render()

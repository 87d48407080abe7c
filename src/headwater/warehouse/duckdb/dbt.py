"""dbt-duckdb for the DuckDB warehouse: the profile Headwater generates, and what each dbt command needs
around it (an organisation's hold, and closing the instance dbt-duckdb keeps open)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from headwater.config.confine import Confinement
from headwater.config.model import DuckDBWarehouse
from headwater.warehouse.duckdb.warehouse import extension_directory


def profile(settings: DuckDBWarehouse, build_path: Path, threads: int, confinement: Confinement | None) -> dict[str, Any]:
    """The profiles.yml output for dbt-duckdb on the build database; confined, locked by our plugin."""
    output: dict[str, Any] = {"type": "duckdb", "path": str(build_path), "threads": threads}
    extra: dict[str, Any] = {}
    if (ext := extension_directory()) is not None:
        extra["extension_directory"] = ext
    if settings.memory_limit:
        extra["memory_limit"] = settings.memory_limit
    if extra:
        output["settings"] = extra
    if confinement is not None:
        from headwater.warehouse.duckdb.lockdown import confined_profile

        output = confined_profile(output, confinement)
    return output


@contextmanager
def session(confinement: Confinement | None) -> Iterator[None]:
    """Around one dbt command: an organisation's models held to its folder (lockdown.py), and
    dbt-duckdb's instance closed afterwards, whatever happened."""
    try:
        if confinement is None:
            yield
        else:
            from headwater.warehouse.duckdb.lockdown import confined

            with confined():
                yield
    finally:
        release_duckdb()


def release_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB instance open in a class attribute after a command ends; close it,
    or this process cannot open the build database again (with other settings) to publish.

    The one place Headwater touches dbt-duckdb's private names (`_ENV`, `_LOCK`; checked by
    tests/test_dbt_projects.py, which fails when they change). Its public calls cannot do this:
    `close_all_connections()` drops the environment without closing its DuckDB instance, and
    `env()` raises when there is none; closing and dropping must also happen under its lock, or a
    command starting in another thread could be handed the instance being closed."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
        DuckDBConnectionManager.close_all_connections()

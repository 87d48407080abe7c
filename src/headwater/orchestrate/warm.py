"""What the warm server (`supervise.start_warm_attempts`) loads once so that every forked attempt
inherits it: dbt's modules, and the JSON schemas dbt builds from its own classes on each start to
validate project, profile and test results (~0.5 s a process; pure functions of the classes, cached
per class). Nothing here touches a project, dbt's flags or an adapter's connections: that state stays
each attempt's own.

Never raises: a dbt release that renames a class costs the attempts that half-second again, no more.
"""

from __future__ import annotations

import importlib

import headwater.transform  # noqa: F401 - sets dbt's environment before dbt is imported

MODULES = ("dbt.cli.main", "dbt.adapters.duckdb")
SCHEMAS = {
    "dbt.contracts.project": ("ProjectFlags", "ProfileConfig", "Project", "PackageConfig", "Configuration"),
    "dbt.contracts.selection": ("SelectorFile",),
    "dbt.task.test": ("TestResultData",),
    "dbt.adapters.duckdb.credentials": ("DuckDBCredentials",),
}


def warm() -> list[str]:
    """Import dbt and build its schemas; returns the classes whose schema is now cached."""
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - an attempt imports it again and reports what is wrong
            pass
    cached = []
    for module_name, classes in SCHEMAS.items():
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001, S112 - a warm-up only: a class dbt renamed is built on first use instead
            continue
        for name in classes:
            try:
                getattr(module, name).json_schema()
            except Exception:  # noqa: BLE001, S112 - as above: the schema is then built when dbt first asks for it
                continue
            cached.append(f"{module_name}.{name}")
    return cached


WARMED = warm()

"""What the warm server (`supervise.start_warm_attempts`) loads once so that every forked attempt
inherits it: dbt's modules, and the JSON schemas dbt builds from its own classes on each start to
validate project, profile and test results (~0.5 s a process; pure functions of the classes, cached
per class). The server imports the dbt adapters of its projects' warehouses before this module (each
engine names its own, `WarehouseEngine.dbt_adapter`); their credentials' schemas are built here too.
Nothing here touches a project, dbt's flags or an adapter's connections: that state stays each
attempt's own.

Never raises: a dbt release that renames a class costs the attempts that half-second again, no more.
"""

from __future__ import annotations

import importlib
import sys

import headwater.transform  # noqa: F401 - sets dbt's environment before dbt is imported
from headwater.warehouse import ENGINES

MODULES = ("dbt.cli.main",)
SCHEMAS = {
    "dbt.contracts.project": ("ProjectFlags", "ProfileConfig", "Project", "PackageConfig", "Configuration"),
    "dbt.contracts.selection": ("SelectorFile",),
    "dbt.task.test": ("TestResultData",),
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
    for adapter in sorted({engine.dbt_adapter for engine in ENGINES.values()}):
        plugin = getattr(sys.modules.get(adapter), "Plugin", None)  # preloaded by the server: the projects' warehouses
        if plugin is None:
            continue
        try:
            plugin.credentials.json_schema()
        except Exception:  # noqa: BLE001, S112 - as above
            continue
        cached.append(f"{adapter}.{plugin.credentials.__name__}")
    return cached


WARMED = warm()

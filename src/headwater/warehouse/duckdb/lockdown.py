"""dbt in an organisation's run on an install with many organisations: held to its folder.

dbt-duckdb opens its own DuckDB connection from the profile, so the profile carries the hold:

- its ``settings:`` would be ``SET`` on every cursor dbt opens, which a locked configuration
  refuses; they become ``config_options`` instead, given once when the database opens;
- DuckDB will not take ``allowed_directories`` when the database opens, so this module is also a
  dbt-duckdb plugin (``plugins: [{module: headwater.transform.lockdown}]``) whose
  `Plugin.configure_connection` locks the connection (`lock_down`) before dbt runs any
  SQL on it; no extension is loaded or autoloaded (the scanners bypass the allowed directories).

Two things of dbt's own run Python rather than SQL and are refused while an organisation's models
build (`confined`): Python models (dbt-duckdb runs them in this process, where DuckDB's settings
mean nothing) and ``env_var()`` reading the server's environment (the install's secret key, other
organisations' passwords): the environment dbt sees is reduced to `KEPT_VARIABLES` (warehouse/environment.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from headwater.config.confine import Confinement
from headwater.warehouse.duckdb.warehouse import lock_down
from headwater.warehouse.environment import environment

try:
    from dbt.adapters.duckdb.plugins import BasePlugin
except ImportError:  # dbt-duckdb is a dependency; this keeps the module importable without it
    BasePlugin = object  # type: ignore[assignment,misc]


class Plugin(BasePlugin):
    """dbt-duckdb calls `configure_connection` on the connection it opened, before any model."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.confinement = Confinement(str(plugin_config["org"]), Path(str(plugin_config["folder"])))

    def configure_connection(self, conn: Any) -> None:
        lock_down(conn, self.confinement)


def confined_profile(output: dict[str, Any], confinement: Confinement) -> dict[str, Any]:
    """The profile's output for a confined run (see the module's docstring)."""
    options = {**output.get("settings", {}), "autoinstall_known_extensions": False, "autoload_known_extensions": False}  # last: nothing turns them back on
    held = {key: value for key, value in output.items() if key != "settings"}
    return {**held, "config_options": options, "plugins": [{"module": __name__, "config": {"org": confinement.org, "folder": str(confinement.folder)}}]}


@contextmanager
def confined() -> Iterator[None]:
    """While dbt builds an organisation's models: no Python models, no server environment."""
    from dbt.adapters.duckdb.impl import DuckDBAdapter

    saved_python = DuckDBAdapter.submit_python_job
    DuckDBAdapter.submit_python_job = _refuse_python  # type: ignore[method-assign]
    try:
        with environment({}, reduced=True):
            yield
    finally:
        DuckDBAdapter.submit_python_job = saved_python  # type: ignore[method-assign]


def _refuse_python(self: Any, parsed_model: dict[str, Any], compiled_code: str) -> Any:
    from dbt_common.exceptions import DbtRuntimeError

    raise DbtRuntimeError(
        f"Python model {parsed_model.get('name', '')} refused: on an install with many organisations an organisation's "
        "models are SQL only (a Python model runs as Python inside the run, out of reach of the limits put on its SQL). "
        "Fix: write the model in SQL."
    )

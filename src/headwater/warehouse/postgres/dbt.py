"""dbt-postgres for the PostgreSQL warehouse: the profile Headwater generates, and the password
handed to it for the length of each dbt command only.

The password never reaches profiles.yml (a file in the project's work folder): the profile reads it
with ``env_var``, and `session` puts it into this process's environment around one dbt command
(dbt runs in-process) and takes it out again."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import unquote, urlsplit

from headwater.warehouse.environment import environment

PASSWORD_VARIABLE = "HEADWATER_WAREHOUSE_PASSWORD"  # noqa: S105 - the name of the variable, not a password
BUILD_SCHEMA = "build"  # models without a schema of their own; the demo's go to staging, intermediate, marts
# URL query parameters dbt-postgres takes as profile fields (docs.getdbt.com, "Postgres setup").
_PASSED = ("sslmode", "sslcert", "sslkey", "sslrootcert", "connect_timeout", "keepalives_idle", "role", "search_path")


def profile(url: str, threads: int) -> dict[str, Any]:
    parts = urlsplit(url)
    output: dict[str, Any] = {
        "type": "postgres",
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "user": unquote(parts.username or ""),
        "password": "{{ env_var('" + PASSWORD_VARIABLE + "', '') }}",
        "dbname": unquote(parts.path.lstrip("/")),
        "schema": BUILD_SCHEMA,
        "threads": threads,
    }
    for item in filter(None, parts.query.split("&")):
        key, _, value = item.partition("=")
        if key in _PASSED:
            output[key] = int(value) if value.isdigit() else unquote(value)
    return output


def session(url: str, *, confined: bool) -> AbstractContextManager[None]:
    """The warehouse password in the environment for one dbt command, then gone. ``confined`` (an
    organisation on an install with many): the rest of the environment hidden meanwhile, so
    ``env_var()`` in its models reads only its own password, never the install's secrets. dbt-postgres
    runs no Python models, so SQL is all an organisation's project can run, and PostgreSQL holds it
    to the warehouse user's rights."""
    return environment({PASSWORD_VARIABLE: unquote(urlsplit(url).password or "")}, reduced=confined)

"""dbt-postgres for the PostgreSQL warehouse: the profile Headwater generates, and the password
handed to it for the length of each dbt command only.

The password never reaches profiles.yml (a file in the project's work folder): the profile reads it
with ``env_var``, and `session` puts it into this process's environment around one dbt command
(dbt runs in-process) and takes it out again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

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


@contextmanager
def session(url: str) -> Iterator[None]:
    """The warehouse password in the environment for one dbt command, then gone."""
    before = os.environ.get(PASSWORD_VARIABLE)
    os.environ[PASSWORD_VARIABLE] = unquote(urlsplit(url).password or "")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PASSWORD_VARIABLE, None)
        else:
            os.environ[PASSWORD_VARIABLE] = before

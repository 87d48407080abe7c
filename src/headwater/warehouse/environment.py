"""The process environment dbt sees while it builds an organisation's models.

dbt's ``env_var()`` reads this process's environment, which on an install with many organisations is
the install's (its secret key, other organisations' passwords). While a confined organisation's dbt
command runs, the environment is reduced to what dbt needs plus what the engine hands dbt itself
(the PostgreSQL warehouse's password: the organisation's own), and restored afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# What dbt needs from the environment to run; nothing here names a secret.
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHASHSEED", "VIRTUAL_ENV", "DO_NOT_TRACK", "DBT_SEND_ANONYMOUS_USAGE_STATS")


@contextmanager
def environment(added: Mapping[str, str], *, reduced: bool) -> Iterator[None]:
    """``added`` set for the block; with ``reduced`` every other variable but `KEPT_VARIABLES` hidden.
    The environment is restored afterwards, whatever happened."""
    saved = dict(os.environ)
    if reduced:
        os.environ.clear()
        os.environ.update({k: v for k, v in saved.items() if k in KEPT_VARIABLES})
    os.environ.update(added)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)

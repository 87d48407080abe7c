"""dbt as its users type it, on a Headwater project: `headwater dbt ARGS...` and `headwater docs`.

dbt runs in this process with the profile Headwater generates from headwater.yml (written to
``.headwater/dbt/profiles.yml`` first) and the same project, target and log folders as a run's,
given as dbt's own environment variables so that any dbt command and any flag of the user's own
(which wins) works unchanged; the project's dbt vars are added unless the user passes --vars.
The exit code is dbt's: 0 success, 1 a failure dbt handled (a test failed), 2 an error (a bad
flag, a project that does not parse).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headwater.transform.dbt import DbtProject

GROUPS = ("docs", "source")  # dbt commands whose subcommand comes second: `dbt docs generate`
DOCS_FILES = ("index.html", "manifest.json", "catalog.json")  # what `dbt docs serve` serves, and all it needs


def run_dbt(dbt: DbtProject, args: list[str]) -> int:
    """Run ``dbt ARGS`` on the project; returns dbt's exit code."""
    from dbt.cli.main import dbtRunner

    # The engine's session first: for an organisation it reduces the environment to what dbt needs,
    # which would drop the folders given here if they were set before it.
    with dbt.warehouse.dbt_session(), _environment(dbt):
        result = dbtRunner().invoke([*args, *_vars(dbt, args)])
    if result.success:
        return 0
    if result.exception is not None:
        if type(result.exception).__name__ == "DbtUsageException":  # dbt's own CLI prints these; its runner does not
            print(f"dbt: {result.exception}", file=sys.stderr)
        return 2
    return 1


def docs_folder(dbt: DbtProject) -> Path:
    return dbt.work / "target"


@contextmanager
def _environment(dbt: DbtProject) -> Iterator[None]:
    settings = {
        "DBT_PROFILES_DIR": str(dbt.write_profiles()),
        "DBT_PROJECT_DIR": str(dbt.dir),
        "DBT_TARGET_PATH": str(dbt.work / "target"),
        "DBT_LOG_PATH": str(dbt.work / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
        "DO_NOT_TRACK": "1",
    }
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _vars(dbt: DbtProject, args: list[str]) -> list[str]:
    """``--vars`` with the project's dbt vars (and the engine's), after the (sub)command, unless the
    user gave their own or there is no command to give them to (``dbt --version``, ``dbt docs``)."""
    values = {**dbt.project.config.dbt.vars, **dbt.warehouse.dbt_vars()}
    words = [a for a in args if not a.startswith("-")]
    if not values or "--vars" in args or any(a.startswith("--vars=") for a in args) or "--help" in args or "-h" in args or "--" in args or not words:
        return []
    if args[0] != words[0]:  # a global flag before the command: leave the command line as the user wrote it
        return []
    if words[0] in GROUPS and (len(args) < 2 or args[1] != words[1] if len(words) > 1 else True):
        return []
    return ["--vars", json.dumps(values)]

"""`headwater warehouse ...`: the warehouse itself, beyond runs (readers' access)."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.markup import escape

from headwater.cli.console import out
from headwater.cli.options import ProjectOpt
from headwater.errors import HeadwaterError

warehouse_app = typer.Typer(help="The warehouse: who may read what was published.", no_args_is_help=True)

@warehouse_app.command("grant-reader")
def grant_reader(
    role: Annotated[str, typer.Argument(help="The database role a BI tool (Metabase, Superset, Looker Studio...) connects as; created if missing.")],
    project: ProjectOpt = None,
) -> None:
    """Let a database role read the published tables — and nothing else (raw, dbt's schemas and
    Headwater's own stay closed to it). Every later publish grants its new tables again.

    A role created here cannot log in yet: give it a password with
    `ALTER ROLE name LOGIN PASSWORD '...'`, or grant it to a login role of your own."""
    from headwater.system.orgs import open_project
    from headwater.warehouse import open_warehouse

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", role):
        raise HeadwaterError(f"'{role}' is not a role name Headwater creates", fix="Use letters, digits and underscores, starting with a letter (at most 63).")
    loaded = open_project(project)
    warehouse = open_warehouse(loaded.root, loaded.config.warehouse, loaded.confinement)
    warehouse.grant_reader(role)
    out.print(f"Role [bold]{escape(role)}[/] may read the published tables (and only those).", highlight=False)

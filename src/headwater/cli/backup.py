"""`headwater backup [-o FILE]`: a consistent copy of the system database (see system/backup.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from headwater.cli.console import err
from headwater.cli.helptext import OPERATE
from headwater.cli.options import ProjectOpt


def register(app: typer.Typer) -> None:
    app.command("backup", rich_help_panel=OPERATE)(backup)


def backup(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: backups/system-<UTC time>.db beside the system database).", show_default=False)] = None,
    install: Annotated[Path | None, typer.Option("--install", "-i", help="An install with several organisations: its folder.", show_default=False)] = None,
    project: ProjectOpt = None,
) -> None:
    """Copy the system database (runs, accounts, audit log, encrypted secrets) consistently while it
    is in use; the copy is 0600. The key file (secret.key) is not in it: back that up apart."""
    from headwater.cli.orgs import target_db
    from headwater.system.backup import backup as copy

    db, _org = target_db(project, install, None, need_org=False)
    try:
        written = copy(db, output)
    finally:
        db.close()
    err.print(f"Backed up the system database to {written} ({written.stat().st_size / 1e6:.1f} MB).", highlight=False)

"""`headwater secrets`: set, list and delete an organisation's secrets, and rotate the key that
encrypts them. A value is never printed, never taken as a command-line argument (it would sit in the
shell's history and in `ps`), and never logged: it is typed at a hidden prompt or piped in."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from headwater.cli.console import err, out
from headwater.cli.options import ProjectOpt
from headwater.errors import HeadwaterError

if TYPE_CHECKING:
    from headwater.system.secrets import SecretStore

secrets_app = typer.Typer(
    help="Secrets (source passwords, SMTP passwords, webhook URLs, service-account keys), encrypted in the system database; use them in headwater.yml as ${secret:NAME}.",
    no_args_is_help=True,
)

OrgOpt = Annotated[
    str | None,
    typer.Option("--org", help="The organisation the secret belongs to (default: the one whose project the folder is, else default).", show_default=False),
]
NameArg = Annotated[str, typer.Argument(help="The secret's name, as ${secret:NAME} refers to it: letters, digits and underscores.", show_default=False)]


@contextmanager
def project_store(project: Path | None, org: str | None = None) -> Iterator[tuple[SecretStore, str]]:
    """The project's secret store and the organisation meant: ``org``, else the organisation whose
    project the folder is (as ``${secret:}`` in it reads), else ``default``. Only the project file's
    system URL is read, so a secret can be set while headwater.yml already refers to it."""
    from headwater.config.loader import project_system_url
    from headwater.errors import NotFound
    from headwater.system.orgs import org_of_folder
    from headwater.system.secrets import open_store

    if project is not None and not project.is_dir():
        raise NotFound(f"--project {project}: no such folder", fix="Pass the folder that holds headwater.yml.")
    root, url = project_system_url(project)
    with open_store(url, root) as store:
        yield store, org or org_of_folder(store.db, root)


@secrets_app.command("set")
def set_secret(
    name: NameArg,
    org: OrgOpt = None,
    value_stdin: Annotated[bool, typer.Option("--value-stdin", help="Read the value from standard input (all of it, less one final newline) instead of asking.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Set a secret (asks for the value without showing it); replaces the value if it exists."""
    from headwater.system.audit import cli_actor
    from headwater.system.secrets import FileKeys, check_name

    check_name(name)  # before asking for a value
    with project_store(project, org) as (store, org):
        value = _read_value(name, value_stdin)
        new_key_file = store.keys.path if isinstance(store.keys, FileKeys) and not store.keys.path.exists() else None
        created = store.set(org, name, value, cli_actor())
        out.print(f"Secret {name} {'set' if created else 'replaced'} in organisation {org}. Use it in headwater.yml as ${{secret:{name}}}.", highlight=False)
        if new_key_file is not None:
            err.print(f"Created the key file {new_key_file} (mode 0600). Back it up: without it no secret can be read.", highlight=False)


def _read_value(name: str, from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.read()
        value = text.removesuffix("\n")  # the newline `echo` and editors add; one \r\n too
        return value.removesuffix("\r") if value != text else value
    if sys.stdin.isatty():
        return str(typer.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True))
    raise HeadwaterError(
        "No terminal to ask for the secret's value",
        fix=f"Pipe it in with --value-stdin, e.g. `printf '%s' \"$VALUE\" | headwater secrets set {name} --value-stdin`, or `< key.json`.",
    )


@secrets_app.command("list")
def list_secrets(org: OrgOpt = None, project: ProjectOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """The organisation's secrets: names, when and by whom they were last set (never their values)."""
    with project_store(project, org) as (store, org):
        items = store.list(org)
    if as_json:
        out.print_json(data=[{"name": s.name, "created_at": s.created_at.isoformat(), "updated_at": s.updated_at.isoformat(), "updated_by": s.updated_by, "key_id": s.key_id} for s in items])
        return
    table = Table("name", "updated (UTC)", "by", "key", box=None)
    for s in items:
        table.add_row(s.name, f"{s.updated_at:%Y-%m-%d %H:%M}", s.updated_by, s.key_id)
    out.print(table if items else f"No secrets in organisation {org}. Add one with `headwater secrets set NAME`.")


@secrets_app.command("delete")
def delete_secret(name: NameArg, org: OrgOpt = None, project: ProjectOpt = None) -> None:
    """Delete a secret. A project file that still refers to it stops loading, with an error naming it."""
    from headwater.system.audit import cli_actor

    with project_store(project, org) as (store, org):
        store.delete(org, name, cli_actor())
    out.print(f"Secret {name} deleted from organisation {org}.", highlight=False)


@secrets_app.command("rotate-key")
def rotate_key(project: ProjectOpt = None) -> None:
    """Re-encrypt every secret with a new key, in one transaction; the old key is then no longer needed.

    With a key file, the new key is generated and written there. With HEADWATER_SECRET_KEY, put the
    new key first (NEW,OLD) before running this, and remove the old one afterwards."""
    from headwater.system.audit import cli_actor
    from headwater.system.secrets import EnvKeys

    with project_store(project) as (store, _org):
        done = store.rotate_key(actor=cli_actor())
        where = store.keys.where
    out.print(f"Re-encrypted {done.secrets} secret(s) with key {done.key_id} ({where}).", highlight=False)
    if done.retired and isinstance(store.keys, EnvKeys):
        out.print("Remove the old key from HEADWATER_SECRET_KEY now: keep only its first entry.", highlight=False)
    elif done.retired:
        out.print(f"The old key ({', '.join(done.retired)}) was removed from the key file. Replace your backup of it.", highlight=False)


@secrets_app.command("generate-key")
def generate_key() -> None:
    """Print a new random key, for HEADWATER_SECRET_KEY (the key file makes its own)."""
    from headwater.system.secrets import generate_key as new_key

    out.print(new_key().decode(), highlight=False)

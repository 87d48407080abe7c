"""What an organisation's run may reach on an install with many organisations: its own folder.

On a one-project install whoever writes headwater.yml and the dbt models runs the server too, and
may point them anywhere. On an install with many organisations each organisation's authors are
strangers to one another and to the install, so their project files are held to their own folder:

- every path-like setting (`check_paths`) resolves, symlinks followed, inside the folder;
- the folder holds no symlink leading out of it (`check_links`), since DuckDB's allowed directories
  compare names, not the files they end at;
- the folder does not hold the install's system database or key file (`check_holds_nothing_of`);
- DuckDB connections that run the organisation's SQL (dbt models, checks) are locked to the folder
  (warehouse/duckdb/warehouse.py `lock_down`, warehouse/duckdb/dbt.py's profile), and dbt Python
  models and dbt's ``env_var`` (the install's environment) are refused in its runs
  (warehouse/duckdb/lockdown.py).

The threat model, and what is not defended, is in docs/security.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from headwater.errors import ConfigError

if TYPE_CHECKING:
    from headwater.config.model import LoadedProject

_GLOB = re.compile(r"[*?\[]")
_URL = re.compile(r"^https?://", re.IGNORECASE)
# dbt_project.yml keys naming folders dbt reads or writes.
DBT_PATH_KEYS = ("model-paths", "seed-paths", "macro-paths", "snapshot-paths", "analysis-paths", "test-paths", "asset-paths", "docs-paths", "target-path", "log-path", "packages-install-path", "clean-targets")
# Folders too big or too private to walk for links, and written only by Headwater and dbt.
_NOT_WALKED = {".git"}


@dataclass(frozen=True)
class Confinement:
    """An organisation's run is held to ``folder`` (resolved)."""

    org: str
    folder: Path
    install: Path | None = None  # the install's folder: a run's own process loads the project from it again

    def allowed_directories(self) -> list[str]:
        """What DuckDB's ``allowed_directories`` lists: the folder, with a trailing separator so that
        ``/orgs/acme`` does not also allow ``/orgs/acme-evil``."""
        return [str(self.folder) + os.sep]

    def contains(self, path: Path) -> bool:
        return path == self.folder or self.folder in path.parents


def check_paths(project: LoadedProject, confinement: Confinement) -> None:
    """Every path-like setting of the project resolves inside the organisation's folder."""
    for key, value in project_paths(project):
        _inside(confinement, key, project.root, value, str(project.file))
    dbt_dir = project.path(project.config.dbt.project_dir).resolve()
    for file, key, value in dbt_paths(dbt_dir):
        _inside(confinement, key, dbt_dir, value, str(dbt_dir / file))


def project_paths(project: LoadedProject) -> Iterator[tuple[str, str]]:
    """(key, path) of every setting of headwater.yml that names a file or folder (URLs and inline
    keys are left out: they name no file)."""
    config = project.config
    yield "warehouse.path", config.warehouse.path
    yield "dbt.project_dir", config.dbt.project_dir
    for name, source in config.sources.items():
        path = getattr(source, "path", None) if "path" in type(source).model_fields else None
        if path:
            yield f"sources.{name}.path", path
        tables = getattr(source, "tables", None)
        for table, spec in tables.items() if isinstance(tables, dict) else ():
            if getattr(spec, "path", None):
                yield f"sources.{name}.tables.{table}.path", spec.path
        credentials = getattr(source, "credentials", None)
        if credentials and not credentials.strip().startswith("{"):
            yield f"sources.{name}.credentials", credentials.strip()
        tunnel = getattr(source, "ssh_tunnel", None)
        if tunnel is not None and tunnel.private_key and "PRIVATE KEY" not in tunnel.private_key:
            yield f"sources.{name}.ssh_tunnel.private_key", tunnel.private_key


def dbt_paths(dbt_dir: Path) -> Iterator[tuple[str, str, str]]:
    """(file, key, path): folders dbt_project.yml names, and local packages in dependencies.yml and
    packages.yml (dbt reads either; both are checked)."""
    settings = _yaml(dbt_dir / "dbt_project.yml")
    for key in DBT_PATH_KEYS:
        value = settings.get(key)
        for item in value if isinstance(value, list) else [value] if value is not None else []:
            yield "dbt_project.yml", key, str(item)
    for file in ("dependencies.yml", "packages.yml"):
        for number, package in enumerate(_yaml(dbt_dir / file).get("packages") or []):
            if isinstance(package, dict) and package.get("local") is not None:
                yield file, f"packages[{number}].local", str(package["local"])


def _yaml(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text())
    except (FileNotFoundError, yaml.YAMLError):
        return {}  # a missing or broken file is reported by dbt, where it is read
    return data if isinstance(data, dict) else {}


def _inside(confinement: Confinement, key: str, base: Path, value: str, file: str) -> None:
    if _URL.match(value):
        return
    static = _static_part(value)
    path = Path(static).expanduser()
    resolved = (path if path.is_absolute() else base / path).resolve()
    if not confinement.contains(resolved):
        raise ConfigError(
            f"{file}: {key} ({value}) leads outside the organisation's folder",
            why=f"on an install with many organisations, organisation '{confinement.org}' may read and write only its own folder {confinement.folder} (it resolves to {resolved})",
            fix=f"Keep {key} inside {confinement.folder} (a relative path without '..' steps out of it, and no symlink leading out).",
        )


def _static_part(pattern: str) -> str:
    """The part of a glob before its first wildcard: ``data/../x/*.csv`` → ``data/../x``."""
    parts = Path(pattern).parts
    for number, part in enumerate(parts):
        if _GLOB.search(part):
            return str(Path(*parts[:number])) if number else "."
    return pattern


def check_links(confinement: Confinement) -> None:
    """No symlink in the folder leads out of it: DuckDB's allowed directories compare the name
    asked for, so ``acme/link/secret.key`` would be read if ``link`` pointed at the install."""
    for link in _links(confinement.folder):
        target = link.resolve()
        if not confinement.contains(target):
            raise ConfigError(
                f"{link} is a symbolic link leading outside the organisation's folder (to {target})",
                why=f"on an install with many organisations, organisation '{confinement.org}' may read only its own folder {confinement.folder}",
                fix=f"Remove the link, or copy what it points at into {confinement.folder}.",
            )


def _links(folder: Path) -> Iterator[Path]:
    for current, folders, files in os.walk(folder):  # never follows links: they are listed, not entered
        here = Path(current)
        folders[:] = [f for f in folders if f not in _NOT_WALKED or (here / f).is_symlink()]
        for name in [*folders, *files]:
            if (here / name).is_symlink():
                yield here / name


def check_holds_nothing_of(confinement: Confinement, install_files: Iterable[Path]) -> None:
    """The folder does not hold the install's own files (its system database, its key file)."""
    for file in install_files:
        resolved = file.resolve()
        if confinement.contains(resolved):
            raise ConfigError(
                f"The folder of organisation '{confinement.org}' holds the install's {resolved.name}",
                why=f"an organisation's runs may read its whole folder {confinement.folder}, and {resolved} is the install's",
                fix="Give the organisation a folder of its own, outside the install's files (by default: orgs/NAME in the install).",
            )

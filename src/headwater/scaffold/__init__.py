"""Create project folders from the templates shipped in this package."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from headwater.config.loader import PROJECT_FILE
from headwater.errors import HeadwaterError
from headwater.redact import redact

TEMPLATE = Path(__file__).parent / "project"  # a project that runs at once: an example CSV source, its models, a dashboard
BARE = Path(__file__).parent / "bare"  # headwater.yml without a source or pipeline (`init --dbt-project`, and without the example)
TEXT_SUFFIXES = {".yml", ".yaml", ".sql", ".md", ""}


@dataclass(frozen=True)
class Created:
    name: str
    root: Path


def init_project(directory: Path, name: str | None = None, dbt_project: Path | None = None, warehouse: str | None = None, *, example: bool = False) -> Created:
    """A new project in ``directory``: headwater.yml and a dbt project with staging, intermediate and
    marts folders. With ``example`` (`headwater init`), one that runs as it is: an example CSV source
    (data/shifts.csv) and a pipeline, a model in each folder and a dashboard over the mart; without,
    no source, pipeline, model or dashboard. With ``dbt_project``: headwater.yml pointing at that
    existing dbt project (``dbt.project_dir``, relative to the new project) and no dbt files of its own."""
    name = name or re.sub(r"[^A-Za-z0-9_]", "_", directory.resolve().name).strip("_") or "project"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise HeadwaterError(f"'{name}' is not a valid project name", fix="Use letters, digits and underscores, starting with a letter (--name my_project).")
    values = {"name": name, "dbt_project_dir": "."}
    if dbt_project is not None:
        values["dbt_project_dir"] = _dbt_project_dir(dbt_project, directory)
        copy_template(BARE, directory, values, only=HEADWATER_FILES)
        (directory / "dashboards").mkdir(exist_ok=True)  # made here: a wheel holds no empty folder
    elif example:
        copy_template(TEMPLATE, directory, values)
    else:
        copy_template(BARE, directory, values)
        for dbt_file in DBT_FILES:
            _copy_file(TEMPLATE / dbt_file, directory / dbt_file, values)
        for folder in ("models/staging", "models/intermediate", "models/marts", "dashboards"):
            (directory / folder).mkdir(parents=True, exist_ok=True)
    if warehouse is not None:
        set_warehouse(directory, warehouse)
    return Created(name, directory)


# The dbt project of a project without the example: the template's, without its models.
DBT_FILES = ("dbt_project.yml", "macros/generate_schema_name.sql")
# What `init --dbt-project` writes: Headwater's own files, none of the dbt scaffold.
HEADWATER_FILES = frozenset({PROJECT_FILE, "gitignore"})


def _dbt_project_dir(dbt_project: Path, directory: Path) -> str:
    """``dbt_project`` as headwater.yml's ``dbt.project_dir``: relative to the new project, so the two
    folders can move together; refused unless it holds a dbt_project.yml."""
    if not dbt_project.is_dir():
        raise HeadwaterError(f"--dbt-project {dbt_project}: no such folder", fix="Pass the folder that holds your dbt project's dbt_project.yml.")
    if not (dbt_project / "dbt_project.yml").is_file():
        raise HeadwaterError(
            f"--dbt-project {dbt_project}: no dbt_project.yml in that folder",
            why="Headwater runs the dbt project whose dbt_project.yml is there",
            fix="Pass the dbt project's root folder (the one holding dbt_project.yml), or leave --dbt-project out to start a new dbt project.",
        )
    return Path(os.path.relpath(dbt_project.resolve(), directory.resolve())).as_posix()


def copy_template(template: Path, directory: Path, values: dict[str, str], only: frozenset[str] | None = None) -> None:
    """Copy a project template; ``{{key}}`` in text files is replaced by ``values[key]``. With ``only``
    (top-level names), just those are copied, into a folder that may hold other files (an existing
    dbt project): none of them is overwritten, and the ignore entries are added to its .gitignore."""
    if (directory / PROJECT_FILE).exists():
        raise HeadwaterError(f"{directory / PROJECT_FILE} exists already", fix="Choose an empty folder, or work in the existing project.")
    if only is None and directory.exists() and any(directory.iterdir()):
        raise HeadwaterError(f"{directory} is not empty", why="a new project must not mix with other files", fix="Choose a new or empty folder.")
    for source in sorted(template.rglob("*")):
        relative = source.relative_to(template)
        if source.is_dir() or "__pycache__" in source.parts or (only is not None and relative.parts[0] not in only):
            continue
        target = directory / (".gitignore" if relative.name == "gitignore" else relative)
        if target.exists() and only is not None:
            if target.name == ".gitignore":
                _add_ignores(target, source.read_text())
            continue
        _copy_file(source, target, values)


def _copy_file(source: Path, target: Path, values: dict[str, str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix in TEXT_SUFFIXES:
        text = source.read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        target.write_text(text)
    else:
        shutil.copyfile(source, target)


def _add_ignores(gitignore: Path, entries: str) -> None:
    present = set(gitignore.read_text().splitlines())
    missing = [line for line in entries.splitlines() if line and line not in present]
    if missing:
        text = gitignore.read_text()
        gitignore.write_text(text + ("" if text.endswith("\n") or not text else "\n") + "\n".join(missing) + "\n")


WAREHOUSE_SECRET = "WAREHOUSE_URL"  # noqa: S105 - a secret's name, not its value: the secret `init/demo --warehouse` keep a URL's password in


def warehouse_block(url: str) -> tuple[str, bool]:
    """headwater.yml's ``warehouse:`` block for ``--warehouse URL``, and whether the URL must be kept
    as the secret `WAREHOUSE_SECRET` (it carries a password, which never goes into the file)."""
    parts = urlsplit(url)
    if parts.scheme == "bigquery":
        return _bigquery_block(url), False
    if parts.scheme not in ("postgres", "postgresql"):
        raise HeadwaterError(
            f"--warehouse {redact(url)}: not a warehouse URL Headwater knows",
            why="the DuckDB warehouse is the default and needs no URL; a PostgreSQL warehouse is given as a postgresql:// URL ending in its database, "
            "a BigQuery one as bigquery://PROJECT (?location=...&dataset_prefix=...)",
            fix="Leave --warehouse out for DuckDB, or pass a postgresql:// or bigquery:// URL.",
        )
    if not parts.path.strip("/"):
        raise HeadwaterError(f"--warehouse {redact(url)}: the URL names no database", fix="End it with /DATABASE, e.g. postgresql://hw@db.example:5432/flake_demo.")
    secret = parts.password is not None
    shown = f"${{secret:{WAREHOUSE_SECRET}}}" if secret else url
    block = (
        "warehouse:\n"
        "  type: postgres\n"
        f"  url: {shown}" + ("   # `headwater secrets set WAREHOUSE_URL` changes it" if secret else "") + "\n"
    )
    return block, secret


BIGQUERY_OPTIONS = ("location", "dataset_prefix", "api_endpoint", "maximum_bytes_billed")


def _bigquery_block(url: str) -> str:
    """``bigquery://PROJECT?location=EU&dataset_prefix=acme_&api_endpoint=...`` as a warehouse block.
    Credentials are never in the URL: a service account key goes in a secret (the block says how)."""
    parts = urlsplit(url)
    project = parts.netloc
    if not project or parts.path.strip("/") or parts.username or parts.password:
        raise HeadwaterError(f"--warehouse {redact(url)}: not a BigQuery URL", fix="Write bigquery://PROJECT, e.g. bigquery://my-project?location=EU.")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(BIGQUERY_OPTIONS))
    if unknown:
        raise HeadwaterError(f"--warehouse {redact(url)}: unknown option(s) {', '.join(unknown)}", why=f"a BigQuery URL takes {', '.join(BIGQUERY_OPTIONS)}", fix="Remove them, or set them in headwater.yml.")
    lines = ["warehouse:", "  type: bigquery", f"  project: {project}"]
    lines += [f"  {key}: {json.dumps(options[key]) if key != 'maximum_bytes_billed' else options[key]}" for key in BIGQUERY_OPTIONS if key in options]
    if "api_endpoint" not in options:
        lines.append("  # credentials: ${secret:BQ_SA_KEY}   # a service account key (`headwater secrets set BQ_SA_KEY`); without it, application-default credentials")
    return "\n".join(lines) + "\n"


def set_warehouse(directory: Path, block: str) -> None:
    """Replace headwater.yml's top-level ``warehouse:`` block with ``block``, in its place (added at the
    end when there is none)."""
    file = directory / PROJECT_FILE
    lines = file.read_text().splitlines(keepends=True)
    out: list[str] = []
    at: int | None = None  # where the old block was: the new one goes there
    skipping = False
    for line in lines:
        if line.startswith("warehouse:"):
            skipping, at = True, len(out)
        elif not (skipping and line.startswith((" ", "\t"))):
            skipping = False
            out.append(line)
    if at is None:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        at = len(out)
    out.insert(at, block)
    file.write_text("".join(out))

"""Create project folders from the templates shipped in this package."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from headwater.config.loader import PROJECT_FILE
from headwater.errors import HeadwaterError

TEMPLATE = Path(__file__).parent / "project"
TEXT_SUFFIXES = {".yml", ".yaml", ".sql", ".md", ""}


@dataclass(frozen=True)
class Created:
    name: str
    root: Path


def init_project(directory: Path, name: str | None = None) -> Created:
    name = name or re.sub(r"[^A-Za-z0-9_]", "_", directory.resolve().name).strip("_") or "project"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise HeadwaterError(f"'{name}' is not a valid project name", fix="Use letters, digits and underscores, starting with a letter (--name my_project).")
    copy_template(TEMPLATE, directory, {"name": name})
    return Created(name, directory)


def copy_template(template: Path, directory: Path, values: dict[str, str]) -> None:
    """Copy a project template; ``{{key}}`` in text files is replaced by ``values[key]``."""
    if (directory / PROJECT_FILE).exists():
        raise HeadwaterError(f"{directory / PROJECT_FILE} exists already", fix="Choose an empty folder, or work in the existing project.")
    if directory.exists() and any(directory.iterdir()):
        raise HeadwaterError(f"{directory} is not empty", why="a new project must not mix with other files", fix="Choose a new or empty folder.")
    for source in sorted(template.rglob("*")):
        if source.is_dir() or "__pycache__" in source.parts:
            continue
        relative = source.relative_to(template)
        target = directory / (".gitignore" if relative.name == "gitignore" else relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix in TEXT_SUFFIXES:
            text = source.read_text()
            for key, value in values.items():
                text = text.replace("{{" + key + "}}", value)
            target.write_text(text)
        else:
            shutil.copyfile(source, target)

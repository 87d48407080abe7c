"""Where a model's SQL error is in the model's own file.

The database cites a line of the SQL dbt ran (`LINE 10: nonexistent_col`): the compiled model
wrapped in dbt's DDL and query comment, so the number is not the model file's. The line's text,
which the database quotes after the number, is found in the compiled SQL
(``target/compiled/<package>/<path>``), then in the model's file: found there once, or on the same
line with no Jinja above it, that is the model's own line; otherwise (Jinja wrote the line) the
compiled file and its line are named instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_IN_MODEL = re.compile(r"\bin model (\S+) \(([^)\n]+\.sql)\)")
_LINE = re.compile(r"^\s*LINE (\d+):(.*)$", re.MULTILINE)
_JINJA = re.compile(r"\{[{%#]")


def locate(message: str, dbt_dir: Path, target: Path, root: Path) -> str | None:
    """A sentence naming the model's file and line for a dbt error ``message`` that cites a
    ``LINE n`` of a model; None when it cites none. Paths are shown relative to ``root`` (the
    project folder) when inside it."""
    model, cited = _IN_MODEL.search(message), _LINE.search(message)
    if model is None or cited is None:
        return None
    path, number, quoted = model.group(2), int(cited.group(1)), cited.group(2).strip()
    source = dbt_dir / path
    compiled = sorted((target / "compiled").glob(f"*/{path}"))
    if not source.is_file() or len(compiled) != 1:
        return f"The model's file: {_shown(source, root)} (the database's LINE {number} counts the lines of the SQL dbt ran)."
    compiled_lines = compiled[0].read_text(errors="replace").splitlines()
    at = _compiled_line(compiled_lines, number, quoted)
    if at is None:
        return f"The model's file: {_shown(source, root)} (the database's LINE {number} counts the lines of the SQL dbt ran, under {_shown(target / 'run', root)})."
    own = _own_line(source.read_text(errors="replace").splitlines(), compiled_lines, at)
    if own is not None:
        return f"In the model's file: {_shown(source, root)}, line {own} (the database's LINE {number} counts the SQL dbt ran)."
    return f"In the compiled SQL: {_shown(compiled[0], root)}, line {at} (Jinja in the model {_shown(source, root)} wrote or moved that line)."


def _compiled_line(lines: list[str], cited: int, quoted: str) -> int | None:
    """The 1-based line of the compiled SQL the database quoted; of several, the nearest below the
    cited number (the SQL dbt ran has the compiled SQL after a few lines of its own)."""
    quoted = quoted.strip(". ")  # a long line is quoted cut, with "..." at either end
    if not quoted:
        return None
    found = [i + 1 for i, line in enumerate(lines) if line.strip() == quoted] or [i + 1 for i, line in enumerate(lines) if quoted in line]
    if not found:
        return None
    below = [i for i in found if i <= cited]
    return max(below) if below else found[0]


def _own_line(raw: list[str], compiled: list[str], at: int) -> int | None:
    text = compiled[at - 1].strip()
    same = [i + 1 for i, line in enumerate(raw) if line.strip() == text]
    if len(same) == 1:
        return same[0]
    if at in same and not any(_JINJA.search(line) for line in raw[: at - 1]):
        return at
    return None


def _shown(path: Path, root: Path) -> str:
    try:
        return os.path.relpath(path, root) if path.resolve().is_relative_to(root.resolve()) else str(path)
    except (OSError, ValueError):
        return str(path)

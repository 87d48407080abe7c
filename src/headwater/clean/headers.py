"""From a sheet's first rows to column names: find the header row, join multi-row headers, snake_case.

Spreadsheets kept by people start with whatever they like — a title, a date, a blank row — and
header cells get merged, repeated or left empty. Names must come out stable (the same file gives the
same columns every sync), unique, and usable in SQL without quoting.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Sequence

from headwater.config.files import TableRules
from headwater.errors import ConfigError

Cell = str | None
_NON_WORD = re.compile(r"[^0-9a-z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
SAMPLE_ROWS = 60  # rows looked at to find the header


def snake_case(text: str) -> str:
    """'Phone #' -> 'phone', 'E-mail Address' -> 'e_mail_address', 'firstName' -> 'first_name',
    'Région' -> 'region', '2024 total' -> 'c_2024_total'; '' for text with no letters or digits."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = _NON_WORD.sub("_", _CAMEL.sub("_", ascii_text).lower()).strip("_")
    return f"c_{words}" if words[:1].isdigit() else words


def filled(cell: Cell) -> bool:
    return cell is not None and cell.strip() != ""


def find_header_row(rows: Sequence[Sequence[Cell]]) -> int:
    """The 0-based index of the header among the first rows: the first row with at least 60% as many
    filled cells as the fullest of them, and at least two (a title row or a note above the table
    fills one or two cells; a header names nearly every column)."""
    counts = [sum(filled(c) for c in row) for row in rows[:SAMPLE_ROWS]]
    widest = max(counts, default=0)
    if widest == 0:
        return 0
    need = 1 if widest == 1 else max(2, math.ceil(0.6 * widest))
    return next(i for i, n in enumerate(counts) if n >= need)


def header_texts(rows: Sequence[Sequence[Cell]], width: int, merged: Sequence[tuple[int, int, int, int]] | None = None) -> list[str]:
    """One text per column from the header ``rows`` (several when a group row sits above the names).

    ``merged`` are the merged cell ranges when the file says (Excel): (first row, first column, last
    row, last column; 0-based within ``rows``); every cell of a range reads the range's text. When the
    file cannot say (CSV, the Sheets values API), an empty cell above the last header row continues
    the label on its left, which is how a merged group label looks once exported."""
    grid = [[(row[c] or "").strip() if c < len(row) else "" for c in range(width)] for row in rows]
    for top, left, bottom, right in merged or ():
        if 0 <= top < len(grid):
            text = grid[top][left] if left < width else ""
            for r in range(top, min(bottom, len(grid) - 1) + 1):
                for c in range(left, min(right, width - 1) + 1):
                    grid[r][c] = text
    for r in range(len(grid) - 1 if merged is None else 0):  # group rows: carry a label right
        for c in range(1, width):
            if not grid[r][c]:
                grid[r][c] = grid[r][c - 1]
    texts = []
    for c in range(width):
        parts: list[str] = []
        for r in range(len(grid)):
            if grid[r][c] and (not parts or parts[-1] != grid[r][c]):
                parts.append(grid[r][c])
        texts.append(" ".join(parts))
    return texts


def column_names(texts: Sequence[str], rules: TableRules, where: str) -> list[str]:
    """Final column names: renamed (by the header as written or as normalised), snake_cased unless
    turned off, empty ones called column_N, repeats made unique with _2, _3, ..."""
    known = {t.strip() for t in texts} | {snake_case(t) for t in texts}
    unknown = [key for key in rules.rename if key.strip() not in known]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        raise ConfigError(
            f"{where}: rename names the header '{unknown[0]}', which the file does not have",
            why=f"the headers are: {', '.join(repr(t) for t in texts if t) or '(none)'}",
            fix=(f"Did you mean '{hint[0]}'? " if hint else "") + "Use the header as written in the file, or its snake_case form.",
        )
    names: list[str] = []
    for position, text in enumerate(texts, 1):
        stripped = text.strip()
        name = rules.rename.get(stripped) or rules.rename.get(snake_case(stripped))
        if name is None:
            name = snake_case(stripped) if rules.normalize_headers else stripped
        names.append(name or f"column_{position}")
    return _unique(names)


def _unique(names: list[str]) -> list[str]:
    taken = {n.lower() for n in names}
    seen: dict[str, int] = {}
    out = []
    for name in names:
        key = name.lower()
        unique = name
        if key in seen:
            n = seen[key] + 1
            while f"{key}_{n}" in taken:
                n += 1
            seen[key] = n
            unique = f"{name}_{n}"
            taken.add(unique.lower())
        else:
            seen[key] = 1
        out.append(unique)
    return out


def check_rule_columns(names: Sequence[str], rules: TableRules, where: str) -> None:
    """Rules must name columns the file has: a typo would otherwise silently check nothing."""
    wanted = [*rules.columns, *rules.unique]
    for column in wanted:
        if column not in names:
            hint = difflib.get_close_matches(column, list(names), n=1)
            raise ConfigError(
                f"{where}: the rules name column '{column}', which the file does not have",
                why=f"its columns are: {', '.join(names) or '(none)'}",
                fix=(f"Did you mean '{hint[0]}'? " if hint else "") + "Rules use the final column names (snake_case, after rename:).",
            )

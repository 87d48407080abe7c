"""Compile a table's cleaning rules into one DuckDB SELECT.

The SELECT reads a staged relation (every cell as text: ``_file``, ``_row``, ``c0``, ``c1``, ...)
and yields, per row, the cleaned and typed columns, ``_empty`` (no value at all) and ``_problems``:
a list with one entry per broken rule (column, rule, original value, message), NULL for a good row.
Everything runs vectorised inside DuckDB, in one pass, with no row passing through Python — that is
how cleaning a million rows stays close to the speed of DuckDB reading the file.

Order of work per cell: whitespace (collapse/trim/keep; empty text is NULL) -> value map (ignoring
case) -> case -> type. ``required``/``allowed_values``/``regex`` look at the cleaned text, ``range``
at the typed value. Unique keys need all rows and are checked afterwards (`headwater.clean.load`).
"""

from __future__ import annotations

from dataclasses import dataclass

from headwater.clean.parsers import bound_sql, expected, parse_sql
from headwater.config.files import ColumnRules, TableRules
from headwater.sqltext import ident, literal, literal_list

PROBLEM_TYPE = 'STRUCT("column" VARCHAR, rule VARCHAR, value VARCHAR, message VARCHAR)'
_SPACE = r"[\s\x{a0}\x{202f}]"
_OTHER_SPACES = (9, 10, 12, 13, 160, 8239)  # tab, line feed, form feed, carriage return, no-break spaces
_TRIM_CHARS = literal(" \t\r\n\f\u00a0\u202f")
DEFAULT_RULES = ColumnRules()


@dataclass(frozen=True)
class Column:
    name: str  # final name in the raw table
    rules: ColumnRules


def columns_for(names: list[str], rules: TableRules) -> list[Column]:
    return [Column(name, rules.columns.get(name, DEFAULT_RULES)) for name in names]


def unique_keys(rules: TableRules) -> list[list[str]]:
    """The table's key (``unique:``) and every column marked ``unique: true``, each checked on its own."""
    keys = [list(rules.unique)] if rules.unique else []
    keys += [[name] for name, column in rules.columns.items() if column.unique and [name] not in keys]
    return keys


def cleaning_select(relation: str, columns: list[Column], rules: TableRules) -> str:
    required = {name for key in unique_keys(rules) for name in key}
    n = range(len(columns))
    modes = [c.rules.whitespace or rules.whitespace for c in columns]
    spaced = [f"c{i}" for i in n if modes[i] != "keep"]
    joined = f"concat_ws(chr(31), {', '.join(spaced)})" if spaced else "''"
    dirty = _dirty_row(spaced)
    whitespace = ", ".join(f"{_whitespace(f'c{i}', modes[i])} AS w{i}" for i in n)
    texts = ", ".join(f"{_text(f'w{i}', c.rules)} AS t{i}" for i, c in enumerate(columns))
    empty = " AND ".join(f"w{i} IS NULL" for i in n) or "true"
    values = ", ".join(f"{parse_sql(f't{i}', c.rules)} AS v{i}" for i, c in enumerate(columns))
    outputs = ", ".join(f"{'t' if c.rules.type == 'text' else 'v'}{i} AS {ident(c.name)}" for i, c in enumerate(columns))
    checks = [check for i, c in enumerate(columns) for check in _checks(i, c, c.name in required)]
    if checks:  # the list is built only for rows that break a rule: most rows pay for the conditions alone
        any_broken = " OR ".join(f"({condition})" for condition, _ in checks)
        problems = f"CASE WHEN {any_broken} THEN list_filter([{', '.join(entry for _, entry in checks)}], p -> p IS NOT NULL) END"
    else:
        problems = f"CAST(NULL AS {PROBLEM_TYPE}[])"
    raw = ", ".join(f"c{i}" for i in n)
    sep = ", " if columns else ""
    return f"""
        SELECT _file, _row, _empty{sep}{outputs}, {problems} AS _problems
        FROM (SELECT *{sep}{values} FROM (
            SELECT _file, _row{sep}{raw}{sep}{texts}, {empty} AS _empty FROM (
                SELECT _file, _row{sep}{raw}{sep}{whitespace} FROM (
                    SELECT *, {dirty} AS _dirty FROM (SELECT *, {joined} AS _joined FROM {relation})))))
    """


def _dirty_row(cells: list[str]) -> str:
    """Whether any cell of the row has whitespace to trim or collapse, tested once on the row's cells
    joined by a unit separator (chr(31)): per cell it would cost several times more, and most rows of
    most files are clean already, so their cells are taken as they are. Substring tests, not a
    regex: a third cheaper, for the same answer."""
    if not cells:
        return "false"
    unit = "chr(31)"
    tests = ["contains(_joined, '  ')", f"contains(_joined, {unit} || ' ')", f"contains(_joined, ' ' || {unit})", "starts_with(_joined, ' ')", "ends_with(_joined, ' ')"]
    tests += [f"contains(_joined, chr({code}))" for code in _OTHER_SPACES]
    return " OR ".join(tests)


def _whitespace(c: str, mode: str) -> str:
    if mode == "keep":
        return f"nullif({c}, '')"
    if mode == "trim":
        return f"CASE WHEN _dirty THEN nullif(trim({c}, {_TRIM_CHARS}), '') ELSE nullif({c}, '') END"
    collapsed = f"trim(regexp_replace({c}, {literal(_SPACE + '+')}, ' ', 'g'))"
    return f"CASE WHEN _dirty THEN nullif({collapsed}, '') ELSE nullif({c}, '') END"


def _text(w: str, rules: ColumnRules) -> str:
    text = w
    if rules.map:
        whens = " ".join(f"WHEN {literal(key.strip().lower())} THEN {literal(value)}" for key, value in rules.map.items())
        text = f"CASE lower({w}) {whens} ELSE {w} END"
    if rules.case == "lower":
        text = f"lower({text})"
    elif rules.case == "upper":
        text = f"upper({text})"
    elif rules.case == "title":
        text = f"array_to_string(list_transform(string_split(lower({text}), ' '), x -> upper(x[1]) || x[2:]), ' ')"
    return text


def _problem(i: int, column: Column, rule: str, condition: str, message: str) -> tuple[str, str]:
    """(the condition, the list entry it adds) for one rule of one column."""
    entry = f"{{'column': {literal(column.name)}, 'rule': {literal(rule)}, 'value': c{i}, 'message': {literal(message)}}}"
    return condition, f"CASE WHEN {condition} THEN {entry} END"


def _checks(i: int, column: Column, in_key: bool) -> list[tuple[str, str]]:
    rules, t, v = column.rules, f"t{i}", f"v{i}"
    checks = []
    if rules.required or in_key:
        checks.append(_problem(i, column, "required", f"{t} IS NULL", "a value is required" + (" (part of a unique key)" if in_key and not rules.required else "")))
    if rules.type != "text":
        checks.append(_problem(i, column, "type", f"{t} IS NOT NULL AND {v} IS NULL", f"expected {expected(rules)}"))
    if rules.allowed_values is not None:
        shown = ", ".join(rules.allowed_values[:8]) + (", ..." if len(rules.allowed_values) > 8 else "")
        checks.append(_problem(i, column, "allowed_values", f"{t} IS NOT NULL AND {t} NOT IN {literal_list(rules.allowed_values)}", f"not one of the allowed values: {shown}"))
    if rules.regex is not None:
        checks.append(_problem(i, column, "regex", f"{t} IS NOT NULL AND NOT regexp_full_match({t}, {literal(rules.regex)})", f"does not match the pattern {rules.regex}"))
    if rules.min is not None:
        checks.append(_problem(i, column, "range", f"{v} < {bound_sql(rules.min, rules)}", f"below the minimum {rules.min}"))
    if rules.max is not None:
        checks.append(_problem(i, column, "range", f"{v} > {bound_sql(rules.max, rules)}", f"above the maximum {rules.max}"))
    return checks

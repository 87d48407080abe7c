"""Reconciliation: two queries that must agree, e.g. sign-ups in the source and in the mart.

Each side returns either one number (one row, one column) or rows of (key columns..., number),
compared key by key. A key missing on one side counts as 0 there (and so differs unless the other
side's number is within the tolerance of 0). NULL numbers count as 0 (``sum()`` over no rows).
Keys are matched by value, with dates and times compared as text, so a DuckDB ``DATE`` key matches
the ``'2026-01-03'`` a SQLite source returns.

A difference passes when ``|left - right| <= max(tolerance, tolerance_percent / 100 * |left|)``.
Numbers are compared exactly (integers as integers, decimals and floats as decimals).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

import duckdb

from headwater.checks.outcome import CheckOutcome, failed_status, make_sample
from headwater.checks.queries import QueryError, describe_source, query_source, query_warehouse
from headwater.config.model import LoadedProject, Query, ReconcileCheck
from headwater.warehouse.base import WarehouseEngine

Number = int | Decimal


class _Invalid(Exception):
    """A side's result has a shape or value the comparison cannot use."""


@dataclass(frozen=True)
class _Single:
    value: Number


@dataclass(frozen=True)
class _Keyed:
    key_columns: list[str]
    values: dict[tuple[Any, ...], Number]


def run_reconcile(project: LoadedProject, check: ReconcileCheck, build: duckdb.DuckDBPyConnection, warehouse: WarehouseEngine | None = None) -> CheckOutcome:
    def error(message: str) -> CheckOutcome:
        return CheckOutcome(check.name, "reconcile", "error", check.severity, None, None, f"{check.name}: {message}", None)

    sides: dict[str, _Single | _Keyed] = {}
    for side, query in (("left", check.left), ("right", check.right)):
        where = describe_source(project, query.source)
        try:
            columns, rows = _run(project, query, build, warehouse)
        except QueryError as exc:
            return error(f"the {side} query failed on {where}: {exc}. Fix {side}.sql of check '{check.name}' in headwater.yml.")
        try:
            sides[side] = _shape(side, columns, rows)
        except _Invalid as exc:
            return error(f"the {side} query (on {where}) {exc}. Fix {side}.sql of check '{check.name}' in headwater.yml.")

    left, right = sides["left"], sides["right"]
    with localcontext() as ctx:
        ctx.prec = 80  # exact for any DuckDB HUGEINT or DECIMAL(38, s)
        if isinstance(left, _Single) and isinstance(right, _Single):
            return _compare_single(check, left.value, right.value)
        if isinstance(left, _Keyed) and isinstance(right, _Keyed):
            if len(left.key_columns) != len(right.key_columns):
                return error(
                    f"the left query has {len(left.key_columns)} key column(s) ({', '.join(left.key_columns)}) but the right "
                    f"query has {len(right.key_columns)} ({', '.join(right.key_columns)}); both must return the same key "
                    "columns, then the number."
                )
            return _compare_keyed(check, left, right)
    shapes = {side: "one number" if isinstance(s, _Single) else "rows of (key columns..., number)" for side, s in sides.items()}
    return error(f"the left query returns {shapes['left']} but the right query returns {shapes['right']}; make both return the same shape.")


def _run(project: LoadedProject, query: Query, build: duckdb.DuckDBPyConnection, warehouse: WarehouseEngine | None) -> tuple[list[str], list[tuple[Any, ...]]]:
    if query.source is None:
        return query_warehouse(build, query.sql, warehouse)
    return query_source(project, query.source, query.sql)


def _shape(side: str, columns: list[str], rows: list[tuple[Any, ...]]) -> _Single | _Keyed:
    if len(columns) == 1:
        if len(rows) != 1:
            raise _Invalid(
                f"returned {len(rows)} rows of one column; return one number (one row, one column), "
                "or rows of (key columns..., number) to compare key by key"
            )
        return _Single(_number(rows[0][0], side, None))
    values: dict[tuple[Any, ...], Number] = {}
    for row in rows:
        key = tuple(_key_part(v) for v in row[:-1])
        if key in values:
            raise _Invalid(f"returned the key {_key_text(columns[:-1], key)} more than once; GROUP BY the key columns so each key has one row")
        values[key] = _number(row[-1], side, (columns[:-1], key))
    return _Keyed(list(columns[:-1]), values)


def _number(value: Any, side: str, key: tuple[list[str], tuple[Any, ...]] | None) -> Number:
    where = f" for {_key_text(*key)}" if key else ""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):  # SQLite keeps whatever was stored: numbers may arrive as text
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise _Invalid(f"returned {value!r}{where} where a number belongs (the last column must be the number)") from None
    else:
        raise _Invalid(f"returned {value!r}{where} where a number belongs (the last column must be the number)")
    if not number.is_finite():
        raise _Invalid(f"returned {value}{where}, which cannot be compared")
    return number


def _key_part(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time, uuid.UUID)):
        return str(value)  # '2026-01-03', '2026-01-03 06:00:00': what SQLite stores as text
    return value


def _key_text(columns: list[str], key: tuple[Any, ...]) -> str:
    return ", ".join(f"{c}={v}" for c, v in zip(columns, key, strict=False))


def _magnitude(number: Number) -> Number:
    """abs() of a Number, typed as one (typeshed's abs of ``int | Decimal`` is ``object``)."""
    if isinstance(number, int):
        return abs(number)
    return abs(number)


def _allowed(check: ReconcileCheck, left: Number) -> Number:
    absolute = Decimal(str(check.tolerance))
    relative = Decimal(str(check.tolerance_percent)) / 100 * abs(Decimal(left))
    allowed = max(absolute, relative)
    return int(allowed) if allowed == allowed.to_integral_value() else allowed


def _tolerance_text(check: ReconcileCheck) -> str:
    if not check.tolerance_percent:
        return f"tolerance {fmt(check.tolerance)}"
    percent = f"{check.tolerance_percent:g}% of left"
    if not check.tolerance:
        return f"tolerance {percent}"
    return f"tolerance {fmt(check.tolerance)} or {percent}, whichever is larger"


def _compare_single(check: ReconcileCheck, left: Number, right: Number) -> CheckOutcome:
    difference = left - right
    allowed = _allowed(check, left)
    expected = fmt(right) if not check.tolerance and not check.tolerance_percent else f"{fmt(right)} ± {fmt(allowed)}"
    if _magnitude(difference) <= allowed:
        return CheckOutcome(check.name, "reconcile", "pass", check.severity, fmt(left), expected, None, None)
    limit = _tolerance_text(check) if not check.tolerance_percent else f"allowed {fmt(allowed)}: {_tolerance_text(check)}"
    message = f"{check.name}: left {fmt(left)} ≠ right {fmt(right)} (difference {fmt(_magnitude(difference))}, {limit})"
    return CheckOutcome(check.name, "reconcile", failed_status(check.severity), check.severity, fmt(left), expected, message, None)


def _compare_keyed(check: ReconcileCheck, left: _Keyed, right: _Keyed) -> CheckOutcome:
    keys = list(left.values) + [k for k in right.values if k not in left.values]
    differing: list[tuple[tuple[Any, ...], Number | None, Number | None, Number]] = []
    for key in keys:
        lv, rv = left.values.get(key), right.values.get(key)
        difference = (lv or 0) - (rv or 0)
        if _magnitude(difference) > _allowed(check, lv or 0):
            differing.append((key, lv, rv, difference))
    observed = f"{len(differing)} of {len(keys)} keys differ"
    expected = "0 keys differ" + ("" if not check.tolerance and not check.tolerance_percent else f" ({_tolerance_text(check)})")
    if not differing:
        return CheckOutcome(check.name, "reconcile", "pass", check.severity, observed, expected, None, None)

    differing.sort(key=lambda d: (-_magnitude(d[3]), str(d[0])))
    key, lv, rv, difference = differing[0]
    side_text = f"left {'no row' if lv is None else fmt(lv)} ≠ right {'no row' if rv is None else fmt(rv)}"
    only_left = sum(1 for d in differing if d[2] is None)  # of the differing keys
    only_right = sum(1 for d in differing if d[1] is None)
    one_sided = [f"{n} key(s) only on the {side}" for n, side in ((only_left, "left"), (only_right, "right")) if n]
    message = (
        f"{check.name}: {observed} ({_tolerance_text(check)}); largest: {_key_text(left.key_columns, key)}: "
        f"{side_text} (difference {fmt(_magnitude(difference))})" + (f"; {', '.join(one_sided)}" if one_sided else "")
    )
    columns = [*left.key_columns, "left", "right", "difference"]
    sample = make_sample(columns, [[*k, lv_, rv_, d] for k, lv_, rv_, d in differing])
    return CheckOutcome(check.name, "reconcile", failed_status(check.severity), check.severity, observed, expected, message, sample)


def fmt(number: float | Number) -> str:
    """200000 -> '200,000'; 0.5 -> '0.5'; 2.0 -> '2'."""
    if isinstance(number, float):
        number = Decimal(repr(number))
    if isinstance(number, Decimal):
        if number == number.to_integral_value():
            return f"{int(number):,}"
        return format(number.normalize(), ",f")
    return f"{number:,}"

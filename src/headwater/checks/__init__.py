"""Checks that gate publishing: dbt's tests, reconciliations and freshness checks.

They run after ``dbt build`` and before publishing; a failed or errored check of severity
"error" (`CheckOutcome.blocks_publish`) keeps the run from publishing, one of severity "warn" is
recorded (status "warn") and alerted only. Every check is read-only: warehouse queries run in a
transaction that is rolled back, source queries on read-only connections.

    outcome.py    CheckOutcome, JSON-safe samples
    queries.py    run SQL on the warehouse or on a source (one function per kind of source)
    reconcile.py  two queries that must agree, as one number or key by key
    freshness.py  the newest timestamp of a synced table
    dbt_tests.py  dbt's test results (and their stored failures) as outcomes
"""

from __future__ import annotations

import datetime as dt

import duckdb

from headwater.checks.dbt_tests import dbt_test_outcomes
from headwater.checks.freshness import run_freshness
from headwater.checks.outcome import SAMPLE_ROWS, CheckOutcome, json_safe
from headwater.checks.reconcile import run_reconcile
from headwater.config.model import FreshnessCheck, LoadedProject, ReconcileCheck
from headwater.warehouse.base import WarehouseEngine


def run_checks(
    project: LoadedProject,
    checks: list[ReconcileCheck | FreshnessCheck],
    build: duckdb.DuckDBPyConnection,
    *,
    now: dt.datetime | None = None,
    warehouse: WarehouseEngine | None = None,
) -> list[CheckOutcome]:
    """Run every check, in order, and return one outcome each. A check that cannot run (bad SQL,
    missing table) gives status "error"; it never stops the other checks. ``warehouse``: the engine
    ``build`` is a connection of (default: the DuckDB warehouse's own build database)."""
    if now is None:
        now = dt.datetime.now(dt.UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)  # naive means UTC
    outcomes: list[CheckOutcome] = []
    for check in checks:
        if isinstance(check, ReconcileCheck):
            outcomes.append(run_reconcile(project, check, build, warehouse))
        elif isinstance(check, FreshnessCheck):
            outcomes.append(run_freshness(check, build, now, warehouse))
        else:  # the project file's validation prevents this
            raise TypeError(f"no check implementation for {type(check).__name__}")
    return outcomes


__all__ = ["SAMPLE_ROWS", "CheckOutcome", "dbt_test_outcomes", "json_safe", "run_checks"]

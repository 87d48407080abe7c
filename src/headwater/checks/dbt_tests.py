"""dbt's tests as checks: one `CheckOutcome` per test node of a `dbt build`.

dbt's statuses map as follows:

=========  ========  =========  ==============================================================
dbt        status    severity   why
=========  ========  =========  ==============================================================
pass       pass      error*     ran, no failing rows
fail       fail      error      failing rows, test severity error: blocks publishing
warn       warn      warn       failing rows, test severity warn: recorded, does not block
error      error     error      the test could not run (bad SQL, missing relation): blocks
skipped    error     error      dbt did not run it because something it depends on failed, so
                                the data is unverified; recorded as an error, never as a pass
other      error     error      a status this code does not know is never taken for a pass
=========  ========  =========  ==============================================================

\\* A passing test's severity is its configured one when `NodeResult` carries a ``severity``
attribute, else "error" (dbt's default). Unit tests (``unit_test`` nodes) count as tests too; dbt
gives them no severity, so a failing one always blocks, and its sample is dbt's diff of the model's
actual rows against the expected ones rather than stored failing rows.

Runs pass ``--store-failures``, so a failing test's ``relation`` names the table holding its
failing rows; up to `SAMPLE_ROWS` of them become the sample.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import duckdb

from headwater.checks.outcome import SAMPLE_ROWS, CheckOutcome, make_sample
from headwater.errors import HeadwaterError
from headwater.transform.dbt import BuildResult, NodeResult
from headwater.warehouse.base import WarehouseEngine
from headwater.warehouse.duckdb.warehouse import sample

TEST_TYPES = ("test", "unit_test")


def dbt_test_outcomes(result: BuildResult, build: duckdb.DuckDBPyConnection, warehouse: WarehouseEngine | None = None) -> list[CheckOutcome]:
    """``warehouse`` reads the stored failures (default: SQL on ``build``, the DuckDB warehouse's)."""
    return [_outcome(node, build, warehouse) for node in result.nodes if str(node.resource_type) in TEST_TYPES]


def _outcome(node: NodeResult, build: duckdb.DuckDBPyConnection, warehouse: WarehouseEngine | None) -> CheckOutcome:
    status = str(node.status)
    configured = str(getattr(node, "severity", None) or "error").lower()
    failures = node.failures
    observed = None if failures is None else str(failures)
    if status == "pass":
        return CheckOutcome(node.name, "dbt_test", "pass", "warn" if configured == "warn" else "error", observed, "0", None, None)
    if status == "fail" and node.diff:
        message = (
            f"{node.name}: the unit test failed: the model's output differs from the rows the test expects "
            f"(the sample marks rows found only in the output as 'actual only', rows missing from it as 'expected only'). "
            f"See {node.path} and fix the model or the test."
        )
        return CheckOutcome(node.name, "dbt_test", "fail", "error", observed, "0", message, unit_test_sample(node.diff))
    if status in ("fail", "warn"):
        rows = f"{failures:,} failure{'s' if failures != 1 else ''}" if failures is not None else "failed"  # dbt's count of the test query's rows
        message = f"{node.name}: {rows}" + (f" ({node.message})" if node.message else "") + f". See {node.path} and fix the data or the model."
        severity = "warn" if status == "warn" else "error"
        return CheckOutcome(node.name, "dbt_test", status, severity, observed, "0", message, _stored_failures(node, build, warehouse))
    if status == "error":
        message = f"{node.name}: the test could not run: {node.message or 'dbt reported an error'}. Fix {node.path}."
        return CheckOutcome(node.name, "dbt_test", "error", "error", observed, "0", message, None)
    if status == "skipped":
        message = f"{node.name}: not run — dbt skipped it because a model it tests or depends on failed, so that data is unchecked."
        return CheckOutcome(node.name, "dbt_test", "error", "error", None, "0", message, None)
    message = f"{node.name}: dbt reported status '{status}'" + (f": {node.message}" if node.message else "")
    return CheckOutcome(node.name, "dbt_test", "error", "error", observed, "0", message, None)


# daff's row markers (with its glyphs, as dbt renders them) in words
DIFF_MARKERS = {"": "same", "+++": "actual only", "---": "expected only", "->": "changed", "→": "changed", "...": "rows omitted", "…": "rows omitted", ":": "moved"}


def unit_test_sample(diff: str) -> dict[str, Any]:
    """dbt's unit-test diff (daff's CSV, padded into columns: a marker, then the model's columns, a
    changed value as ``old→new``) as a sample whose first column says what each marker means."""
    header, *rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(diff)) if row]
    return make_sample(["diff", *header[1:]], [[DIFF_MARKERS.get(row[0], row[0]), *row[1:]] for row in rows])


def _stored_failures(node: NodeResult, build: duckdb.DuckDBPyConnection, warehouse: WarehouseEngine | None) -> dict[str, Any] | None:
    """Up to SAMPLE_ROWS rows of the test's stored-failures table, if it exists (best effort: a
    missing or unreadable table leaves the sample empty, never changes the outcome)."""
    if not node.relation:
        return None
    try:
        columns, rows = warehouse.sample_rows(build, node.relation, SAMPLE_ROWS) if warehouse is not None else sample(build, node.relation, SAMPLE_ROWS)
    except (duckdb.Error, HeadwaterError):
        return None
    return make_sample(columns, rows)

"""Issue 19's "done": the demo, with exactly the command scripts use, runs end to end on BigQuery (the
emulator) and publishes the DuckDB demo's mart — the same CSV from `headwater export`, and the same
rows in BigQuery's published view. Measured: ~35 s on two cores (two demos of 3,000 sign-ups)."""

from __future__ import annotations

import csv
from pathlib import Path

import bq
import pytest
from cli_process import run_cli

pytestmark = pytest.mark.bigquery

MART = "flake_rate_weekly"


def _export(project: Path, out: Path) -> list[list[str]]:
    done = run_cli("export", MART, "-p", project, "-o", out)
    assert done.returncode == 0, done.stdout + done.stderr
    header, *rows = list(csv.reader(out.open()))
    return [header, *sorted(rows)]


def test_the_demo_command_on_bigquery_publishes_what_the_duckdb_demo_does(tmp_path: Path, bigquery_emulator: bq.Emulator) -> None:
    url = f"bigquery://{bigquery_emulator.project}?api_endpoint={bigquery_emulator.endpoint}"
    on_bq = run_cli("demo", tmp_path / "bq", "--no-serve", "--signups", "3000", "--warehouse", url, timeout=600)
    assert on_bq.returncode == 0, on_bq.stdout + on_bq.stderr
    on_duckdb = run_cli("demo", tmp_path / "duckdb", "--no-serve", "--signups", "3000", timeout=600)
    assert on_duckdb.returncode == 0, on_duckdb.stdout + on_duckdb.stderr
    assert "type: bigquery" in (tmp_path / "bq" / "headwater.yml").read_text()

    exported = _export(tmp_path / "bq", tmp_path / "bq.csv")
    assert exported == _export(tmp_path / "duckdb", tmp_path / "duckdb.csv")
    assert len(exported) > 50 and any(0 < float(r[8]) < 1 for r in exported[1:] if r[8])

    # What BI tools read in BigQuery (the published view onto the current version) holds the same rows.
    client = bq.client(bigquery_emulator)
    try:
        header = exported[0]
        rows = client.query(f"SELECT {', '.join(header)} FROM `published.{MART}`", retry=None, job_retry=None).result(retry=None, timeout=60)
        shown = sorted([_csv_cell(v) for v in row.values()] for row in rows)
        assert [header, *shown] == exported
    finally:
        client.close()


def _csv_cell(value: object) -> str:
    """A value as `headwater export` writes it in CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():  # DuckDB's CSV writer: 0.0 as 0
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)

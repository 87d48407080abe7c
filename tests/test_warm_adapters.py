"""The warm server (`supervise.start_warm_attempts`) preloads the dbt adapter of the projects'
warehouses, as their engines name it (`WarehouseEngine.dbt_adapter`), and builds its credentials'
schema: an attempt forked from it finds dbt-postgres loaded for a PostgreSQL warehouse, dbt-duckdb
for a DuckDB one, dbt-bigquery for a BigQuery one, and not the others. Each case runs in a Python of its own: a process has one
forkserver, started with the first caller's preload. Measured: ~8 s on two cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_process import cli_env

from headwater.warehouse import ENGINES

ADAPTERS = sorted(engine.dbt_adapter for engine in ENGINES.values())

CHECK = """
import json
import sys

from headwater.orchestrate import supervise


def report(path, adapters):
    loaded = [name for name in adapters if name in sys.modules]  # before anything here imports more
    from headwater.orchestrate import warm

    with open(path, "w") as handle:
        json.dump({"loaded": loaded, "warmed": warm.WARMED}, handle)


if __name__ == "__main__":
    warehouses, path, adapters = sys.argv[1].split(","), sys.argv[2], sys.argv[3].split(",")
    assert supervise.start_warm_attempts(warehouses)
    assert not [name for name in adapters if name in sys.modules], "the server's parent imported an adapter itself"
    attempt = supervise._warm.Process(target=report, args=(path, adapters))
    attempt.start()
    attempt.join()
    sys.exit(attempt.exitcode)
"""


@pytest.mark.parametrize(("warehouses", "expected"), [("postgres", ["dbt.adapters.postgres"]), ("duckdb", ["dbt.adapters.duckdb"]), ("bigquery", ["dbt.adapters.bigquery"])])
def test_attempts_forked_warm_find_the_adapter_of_their_warehouse_loaded(tmp_path: Path, warehouses: str, expected: list[str]) -> None:
    assert ADAPTERS == ["dbt.adapters.bigquery", "dbt.adapters.duckdb", "dbt.adapters.postgres"]
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    found = tmp_path / "found.json"
    done = subprocess.run([sys.executable, str(script), warehouses, str(found), ",".join(ADAPTERS)], env=cli_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(found.read_text())
    assert report["loaded"] == expected
    credentials = {"dbt.adapters.postgres": "PostgresCredentials", "dbt.adapters.duckdb": "DuckDBCredentials", "dbt.adapters.bigquery": "BigQueryCredentials"}
    assert [w for w in report["warmed"] if w.endswith("Credentials")] == [f"{m}.{credentials[m]}" for m in expected]  # its schema built once, in the server

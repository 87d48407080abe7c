"""Syncing a PostgreSQL table into BigQuery (the emulator): Headwater against dlt's BigQuery destination (issue 19).

    python bench/warehouse_bigquery.py --rows 5000000 [--runs 3] [--only dlt|headwater] [--changes 10000]

Needs the emulator (scripts/bqemulator-venv) and, for dlt, ./.venv-bench (scripts/bench-venv: dlt[bigquery]
cannot share ./.venv, see there). Run with the project's Python (./.venv); dlt runs as a subprocess in
.venv-bench (bench/dlt_bigquery.py, which also says how it is pointed at the emulator).

One throwaway PostgreSQL server (tests/pg.py) holds the source table `bench_orders` (--rows rows, ~200
bytes a row: bigint key, two ints, three texts, two numerics, two timestamptz, a boolean and a nullable
text that is NULL in two rows of three; an index on updated_at). One BigQuery emulator (tests/bq.py,
in memory) is the warehouse of both. Every figure is a whole process (start-up and imports included),
timed with its peak RSS (`/usr/bin/time`'s maximum resident set of the process and the children it
waited for), and also timed in process (after the imports; both print it), median of --runs, the
two alternated (neither always first):

- full load: dlt (`sql_table`, pyarrow backend, incremental on updated_at, primary key id,
  write_disposition merge) into a new dataset, from a new pipeline folder; `headwater sync` of a
  project whose headwater.yml says `warehouse: {type: bigquery, project: test-project, api_endpoint:
  <the emulator>}` from a new project folder. Between runs the datasets a run made are deleted;
  the last run's are kept for:
- incremental: --changes rows updated (updated_at = now()) and --changes rows inserted, then dlt's
  merge and `headwater sync` of the same rows.

Reported: seconds, rows/s, the ratio dlt/Headwater (the issue's target: >= 3x on the full load,
>= 5x on the incremental), peak RSS, and bytes uploaded per row: for dlt the load package's files
uploaded by load jobs (Parquet for the table; dlt's state rows as JSONL), for Headwater the Parquet
bytes the sync sent (a table's `uploaded_bytes` in `headwater sync --json` if it reports them, else the
"bytes of Parquet" of the run's log, `headwater logs`; null if neither has them). Row counts in BigQuery are checked against the source after
the full loads and the incremental rounds. Results: docs/benchmarks.md, "BigQuery warehouse".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from sync import LAST_STDOUT, timed  # noqa: E402 - after the path above
from warehouse_postgres import Postgres  # noqa: E402

SOURCE_DB = "bench_source"
TABLE = "bench_orders"
COLUMNS = """(id bigint PRIMARY KEY, account_id int NOT NULL, quantity int, status text NOT NULL, title text, body text,
  amount numeric(12,2), rate numeric(10,4), created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, flag boolean, note text)"""
FILL = """INSERT INTO bench_orders SELECT g, g % 1000, g % 37, (array['new','open','closed'])[1 + g % 3], 'order ' || g,
  md5(g::text) || md5((g*7)::text), (g % 100000) / 100.0, (g % 1000000) / 10000.0,
  now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval, g % 2 = 0,
  CASE WHEN g % 3 = 0 THEN 'note ' || md5((g*13)::text) END
FROM generate_series({start}, {end}) g;
"""
# The rows updated are spread over the table (every 97th id from an offset), the rows inserted are new ids.
CHANGES = """UPDATE bench_orders SET status = 'changed {run}', amount = amount + 1, note = NULL, updated_at = now()
  WHERE id IN (SELECT id FROM bench_orders WHERE id % 97 = {run} ORDER BY id LIMIT {n});
INSERT INTO bench_orders SELECT g, 1, 1, 'inserted {run}', 'order ' || g, 'x', 1, 1, now(), now(), true, NULL FROM generate_series({start}, {start} + {n} - 1) g;
ANALYZE bench_orders;
"""
DLT_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
DLT_RUN = ROOT / "bench" / "dlt_bigquery.py"
DLT_DATASET = "dlt_raw"
HW_SOURCE = "app"  # Headwater's raw table: raw_app.bench_orders
TARGETS = {"full": 3.0, "incremental": 5.0}  # issue 19: Headwater's throughput over dlt's


def headwater_project(folder: Path, source_url: str, endpoint: str, project: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "headwater.yml").write_text(
        f'name: bench\nwarehouse: {{type: bigquery, project: {project}, api_endpoint: "{endpoint}"}}\n'
        f"sources:\n  {HW_SOURCE}:\n    type: postgres\n    url: {source_url}\n    tables: [{TABLE}]\n"
    )
    return folder


class Tools:
    """The two syncs, each one whole process: `run(name)` times it and returns its figures."""

    def __init__(self, work: Path, source_url: str, endpoint: str, project: str, client: Any) -> None:
        self.work, self.source_url, self.endpoint, self.project, self.client = work, source_url, endpoint, project, client
        self.headwater = [str(Path(sys.executable).with_name("headwater"))]
        self.dlt_dir = work / "dlt"
        self.hw_dir = work / "headwater"

    def fresh(self, name: str) -> None:
        """A new pipeline folder (dlt) or project folder (Headwater); the datasets of the last one deleted."""
        folder = self.dlt_dir if name == "dlt" else self.hw_dir
        shutil.rmtree(folder, ignore_errors=True)
        for dataset in self.datasets(name):
            self.client.delete_dataset(dataset, delete_contents=True, not_found_ok=True, retry=None)
        if name == "headwater":
            headwater_project(folder, self.source_url, self.endpoint, self.project)

    def datasets(self, name: str) -> list[str]:
        ids = [d.dataset_id for d in self.client.list_datasets(retry=None)]
        return [d for d in ids if d.startswith(DLT_DATASET)] if name == "dlt" else [d for d in ids if not d.startswith(DLT_DATASET)]

    def run(self, name: str) -> dict[str, Any]:
        if name == "dlt":
            cmd = [str(DLT_PYTHON), str(DLT_RUN), self.source_url, TABLE, self.endpoint, self.project, DLT_DATASET, str(self.dlt_dir)]
            seconds, mb = timed(cmd)
            out = json.loads(LAST_STDOUT[0].strip().splitlines()[-1])
            return {"whole_s": seconds, "in_process_s": out["seconds"], "peak_mb": mb, "rows": out["rows"], "uploaded_bytes": out["uploaded_bytes"], "table_bytes": out["table_bytes"], "steps": out["steps"], "columns": out["columns"]}
        seconds, mb = timed([*self.headwater, "sync", "-p", str(self.hw_dir), "--json"], env=os.environ | {"HEADWATER_NO_DAEMON": "1"})
        data = json.loads(LAST_STDOUT[0])
        tables = [t for stats in data["sources"].values() for t in stats]
        reported = [t["uploaded_bytes"] for t in tables if t.get("uploaded_bytes") is not None]
        rows = sum(int(t.get("rows_read", 0)) for t in tables)
        uploaded = sum(reported) if reported else self.logged_parquet_bytes(int(data["run"]))
        return {"whole_s": seconds, "in_process_s": float(data["seconds"]), "table_s": sum(float(t["seconds"]) for t in tables), "peak_mb": mb, "rows": rows, "uploaded_bytes": uploaded}

    def logged_parquet_bytes(self, run_id: int) -> int | None:
        """The Parquet bytes a Headwater sync sent, from its run's log (after the timing): the BigQuery
        warehouse logs "…: N rows sent, M bytes of Parquet (…)" for each table it writes."""
        proc = subprocess.run([*self.headwater, "logs", "-p", str(self.hw_dir), str(run_id)], capture_output=True, text=True, check=False, env=os.environ | {"HEADWATER_NO_DAEMON": "1", "COLUMNS": "1000"})
        sizes = [int(m.replace(",", "")) for m in re.findall(r"rows sent, ([\d,]+) bytes of Parquet", proc.stdout)]
        return sum(sizes) if sizes else None

    def count(self, name: str, where: str = "TRUE") -> int:
        table = f"{DLT_DATASET}.{TABLE}" if name == "dlt" else f"raw_{HW_SOURCE}.{TABLE}"
        job = self.client.query(f"SELECT COUNT(*) AS n FROM `{table}` WHERE {where}", retry=None, job_retry=None)
        return int(next(iter(job.result(retry=None, timeout=600)))["n"])


def summary(name: str, runs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """Medians of one tool's runs, with rows per second and uploaded bytes per row."""
    out: dict[str, Any] = {}
    for key in ("whole_s", "in_process_s", "table_s"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 2)
    out["rows_per_s"] = round(rows / out["whole_s"])
    out["rows_per_s_in_process"] = round(rows / out["in_process_s"])
    out["peak_mb"] = statistics.median(r["peak_mb"] for r in runs)
    out["peak_mb_max"] = max(r["peak_mb"] for r in runs)
    uploaded = [r["uploaded_bytes"] for r in runs if r.get("uploaded_bytes") is not None]
    out["uploaded_bytes"] = statistics.median(uploaded) if uploaded else None
    out["uploaded_bytes_per_row"] = round(out["uploaded_bytes"] / rows, 1) if uploaded else None
    out["rows_reported"] = [r["rows"] for r in runs]
    out["runs"] = {key: [round(r[key], 2) for r in runs] for key in ("whole_s", "in_process_s") if all(r.get(key) is not None for r in runs)}
    if name == "dlt":
        out["table_parquet_bytes_per_row"] = round(statistics.median(r["table_bytes"] for r in runs) / rows, 1)
        out["columns"] = runs[-1]["columns"]  # as dlt made the table (with the pyarrow backend it adds none of its own)
        out["steps_s"] = {step: round(statistics.median(r["steps"].get(step, 0.0) for r in runs), 2) for step in runs[0]["steps"]}
    return out


def compare(results: dict[str, Any], phase: str) -> None:
    if {"dlt", "headwater"} <= results.keys():
        dlt, hw = results["dlt"], results["headwater"]
        results["ratio_whole"] = round(dlt["whole_s"] / hw["whole_s"], 2)  # Headwater's throughput over dlt's, whole processes
        results["ratio_in_process"] = round(dlt["in_process_s"] / hw["in_process_s"], 2)
        results["target"] = TARGETS[phase]
        results["meets_target"] = results["ratio_whole"] >= TARGETS[phase]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changes", type=int, default=10_000, help="rows updated and (as many) inserted before each incremental round")
    parser.add_argument("--only", choices=["dlt", "headwater"], help="time one of the two (default both)")
    parser.add_argument("--skip-incremental", action="store_true")
    args = parser.parse_args()
    names = [args.only] if args.only else ["dlt", "headwater"]
    if "dlt" in names and not os.access(DLT_PYTHON, os.X_OK):
        print(f"{DLT_PYTHON} is missing: run scripts/bench-venv to install dlt in its own venv", file=sys.stderr)
        raise SystemExit(2)

    import bq
    import pg

    server = pg.start_server()
    emulator = bq.start_emulator()
    client = bq.client(emulator)
    db = Postgres(server.bin_dir, server.port)
    work = Path(tempfile.mkdtemp(prefix="hw-bench-bq-"))
    tools = Tools(work, db.url(SOURCE_DB), emulator.endpoint, emulator.project, client)
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "cpu": _cpu(), "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30), "python": platform.python_version(), "linux": platform.release()},
        "versions": _versions(names),
        "rows": args.rows, "runs": args.runs, "changes": args.changes, "load_before": os.getloadavg()[0],
    }
    try:
        results["versions"]["postgres"] = db.run("postgres", "SHOW server_version")
        db.fresh_database(SOURCE_DB)
        print(f"creating {TABLE} with {args.rows:,} rows …", flush=True)
        started = time.perf_counter()
        db.run(SOURCE_DB, f"CREATE TABLE {TABLE} {COLUMNS};\n" + FILL.format(start=1, end=args.rows) + f"CREATE INDEX ON {TABLE} (updated_at);\nVACUUM ANALYZE {TABLE};")
        results["table_size"] = db.run(SOURCE_DB, f"SELECT pg_size_pretty(pg_table_size('{TABLE}'))")
        print(f"  made in {time.perf_counter() - started:.1f} s ({results['table_size']})", flush=True)

        full: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for run in range(args.runs):
            for name in names if run % 2 == 0 else names[::-1]:
                tools.fresh(name)
                full[name].append(figures := tools.run(name))
                print(f"  full load, run {run + 1}, {name}: {figures['whole_s']:.2f} s (in process {figures['in_process_s']:.2f} s), peak {figures['peak_mb']} MB", flush=True)
                if (count := tools.count(name)) != args.rows:
                    raise SystemExit(f"{name}: {count:,} rows in BigQuery after the full load, {args.rows:,} in the source")
        results["full"] = {n: summary(n, full[n], args.rows) for n in names}
        compare(results["full"], "full")

        if not args.skip_incremental:
            inc: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
            next_id = args.rows * 10
            changed: list[int] = []  # rows updated and inserted in each round (fewer updated if the table is small)
            for run in range(args.runs):
                db.run(SOURCE_DB, CHANGES.format(run=run + 1, n=args.changes, start=next_id))
                next_id += args.changes
                changed.append(int(db.run(SOURCE_DB, f"SELECT count(*) FROM {TABLE} WHERE status IN ('changed {run + 1}', 'inserted {run + 1}')")))
                for name in names if run % 2 == 0 else names[::-1]:
                    inc[name].append(figures := tools.run(name))
                    print(f"  incremental run {run + 1}, {name}: {figures['whole_s']:.2f} s (in process {figures['in_process_s']:.2f} s), peak {figures['peak_mb']} MB", flush=True)
            wheres = ("TRUE", f"status = 'changed {args.runs}'", f"status = 'inserted {args.runs}'", "note IS NULL")
            source = tuple(int(db.run(SOURCE_DB, f"SELECT count(*) FROM {TABLE} WHERE {where}")) for where in wheres)
            for name in names:
                counts = tuple(tools.count(name, where) for where in wheres)
                if counts != source:
                    raise SystemExit(f"{name} after the incremental rounds: rows, last round's updated, inserted, null notes {counts}; the source's {source}")
            results["incremental"] = {n: summary(n, inc[n], round(statistics.median(changed))) for n in names} | {"rows_changed": changed}
            compare(results["incremental"], "incremental")
        results["load_after"] = os.getloadavg()[0]
        print(json.dumps(results, indent=2))
    finally:
        client.close()
        emulator.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _versions(names: list[str]) -> dict[str, str]:
    versions = {"emulator": subprocess.run([str(ROOT / ".venv-bqemulator" / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('bqemulator'))"], capture_output=True, text=True, check=False).stdout.strip()}
    if "dlt" in names:
        code = "import importlib.metadata as m; print(m.version('dlt'), m.version('google-cloud-bigquery'), m.version('pyarrow'))"
        dlt, gcb, arrow = subprocess.run([str(DLT_PYTHON), "-c", code], capture_output=True, text=True, check=True).stdout.split()
        versions |= {"dlt": dlt, "dlt_google_cloud_bigquery": gcb, "dlt_pyarrow": arrow}
    return versions


if __name__ == "__main__":
    main()

"""Sync speed against PostgreSQL, compared in the same run with the anchors the issue names.

    python bench/sync.py --rows 5000000 [--runs 3] [--dlt] [--url postgresql://...]

Without --url a throwaway PostgreSQL server is started (tests/pg.py). The table is ~230 bytes a
row (1.1-1.3 GB at 5M rows): bigint key, int, short text, 128-char text, numeric, two timestamptz,
jsonb, boolean. Each figure is a whole process (start-up included), timed with its peak RSS:

- full load: `COPY (SELECT * FROM t) TO STDOUT (FORMAT binary)` into /dev/null (the floor: psql)
  versus `headwater sync` into an empty warehouse → ratio of throughputs (the table's load as
  `headwater sync --json` times it; and the whole process, start-up included);
- incremental: 10,000 updated + 10,000 inserted rows, then a run with nothing to do: headwater
  versus dlt's `sql_table` incremental merge on `updated_at` (connectorx backend) into DuckDB (--dlt),
  each also timed in process, after its imports (both print that time themselves), and headwater
  once more as a whole process through its warm CLI server (`headwater daemon start`: the command
  runs in a fork of a server that has the imports done).

Incremental rounds start --interval seconds apart (default 60: cron's finest schedule, so the most
often a scheduled sync runs). Between full passes headwater reads changes through the updated_at
index from the last sync's bound less a one-minute margin, and the margin's rows are scanned (not
re-read) on the server: with --interval 0 every sync also scans all earlier rounds' changes of the
last minute, a write rate no schedule meets. docs/benchmarks.md gives both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

TABLE_SQL = """
DROP TABLE IF EXISTS bench_signups;
CREATE TABLE bench_signups (id bigint PRIMARY KEY, account_id int NOT NULL, status text, body text, amount numeric(12,2),
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, payload jsonb, flag boolean);
INSERT INTO bench_signups SELECT g, g % 1000, (array['new','open','closed'])[1 + g % 3],
  md5(g::text) || md5((g*7)::text) || md5((g*13)::text) || md5((g*17)::text), (g % 100000) / 100.0,
  now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval, jsonb_build_object('k', g, 'v', md5(g::text)), g % 2 = 0
FROM generate_series(1, {rows}) g;
CREATE INDEX ON bench_signups (updated_at);
VACUUM ANALYZE bench_signups;
"""

CHANGES_SQL = """
UPDATE bench_signups SET status = 'changed', updated_at = now() WHERE id IN (SELECT id FROM bench_signups WHERE id % 97 = 0 LIMIT 10000);
INSERT INTO bench_signups SELECT g, 1, 'new', 'x', 1, now(), now(), '{{}}', true FROM generate_series({start}, {start} + 9999) g;
"""

DLT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import dlt
    from dlt.sources.sql_database import sql_table
    started = time.perf_counter()  # after the imports, like headwater's own "seconds"
    url, path, work = sys.argv[1:4]
    table = sql_table(credentials=url, table="bench_signups", schema="public", backend="connectorx",
                      incremental=dlt.sources.incremental("updated_at"), primary_key="id")
    pipeline = dlt.pipeline(pipeline_name="bench", destination=dlt.destinations.duckdb(path), dataset_name="raw", pipelines_dir=work)
    pipeline.run(table, write_disposition="merge")
    print('{"seconds": %.3f}' % (time.perf_counter() - started))
    """
)


LAST_STDOUT = [""]


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of a whole process (its stdout kept in LAST_STDOUT)."""
    out = tempfile.NamedTemporaryFile(suffix=".time", delete=False)
    out.close()
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd], env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}… failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    LAST_STDOUT[0] = proc.stdout
    kb = int(Path(out.name).read_text().strip().splitlines()[-1])
    os.unlink(out.name)
    return seconds, kb // 1024


def _table_seconds() -> float:
    """The sync's own time for the table (without process start-up), from `headwater sync --json`."""
    data = json.loads(LAST_STDOUT[0])
    return sum(t["seconds"] for tables in data["sources"].values() for t in tables)


def _in_process_seconds() -> float:
    """The whole sync after the imports (project file, system database, sources, warehouse), as
    `headwater sync --json` and the dlt script both print it."""
    text = LAST_STDOUT[0].strip()
    try:
        return float(json.loads(text)["seconds"])  # headwater: one JSON document
    except json.JSONDecodeError:
        return float(json.loads(text.splitlines()[-1])["seconds"])  # dlt: its last line


def psql(url: str, sql: str) -> None:
    proc = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-f", "-"], input=sql, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"psql failed: {proc.stderr}")


def project(folder: Path, url: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "headwater.yml").write_text(f"name: bench\nsources:\n  app:\n    type: postgres\n    url: {url}\n    tables: [bench_signups]\n{extra}")
    return folder


# The opt-in cursor mode: the updated_at index instead of a pass over the table, deletes checked hourly.
CURSOR_MODE = "    check_deletes_every: 1h\n    overrides:\n      bench_signups: {cursor: [updated_at], lookback: 1h}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", help="postgresql:// URL of a database to use (default: start a throwaway server)")
    parser.add_argument("--dlt", action="store_true", help="also time dlt's incremental merge (needs dlt[duckdb,sql_database] and connectorx)")
    parser.add_argument("--reuse", action="store_true", help="keep an existing bench_signups table that has --rows rows (e.g. 20M: 5 minutes to make)")
    parser.add_argument("--full-only", action="store_true", help="time full loads only")
    parser.add_argument("--interval", type=float, default=60, help="seconds from the start of one incremental round to the next (default 60; 0: back to back)")
    args = parser.parse_args()

    os.environ["HEADWATER_NO_DAEMON"] = "1"  # cold processes, unless a run says otherwise (warm_env)
    server = None
    if args.url:
        url = args.url
    else:
        import pg

        server = pg.start_server()
        url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    work = Path(tempfile.mkdtemp(prefix="hw-bench-sync-"))
    headwater = [str(Path(sys.executable).with_name("headwater"))]
    results: dict[str, object] = {"rows": args.rows, "cores": os.cpu_count(), "interval_s": args.interval}
    try:
        existing = subprocess.run(["psql", url, "-tAc", "SELECT count(*) FROM bench_signups"], capture_output=True, text=True, check=False).stdout.strip()
        if args.reuse and existing == str(args.rows):
            print(f"reusing bench_signups ({args.rows:,} rows)", flush=True)
        else:
            print(f"creating bench_signups with {args.rows:,} rows …", flush=True)
            psql(url, TABLE_SQL.format(rows=args.rows))
        size = subprocess.run(["psql", url, "-tAc", "SELECT pg_size_pretty(pg_table_size('bench_signups'))"], capture_output=True, text=True, check=True).stdout.strip()
        results["table_size"] = size
        copy_cmd = ["psql", url, "-c", "\\copy (SELECT * FROM bench_signups) TO '/dev/null' (FORMAT binary)"]
        copies, fulls, full_mem, full_tables = [], [], [], []
        for run in range(args.runs):
            copies.append(timed(copy_cmd)[0])
            folder = project(work / f"full{run}", url)
            seconds, mb = timed([*headwater, "sync", "-p", str(folder), "--json"])
            fulls.append(seconds)
            full_mem.append(mb)
            full_tables.append(_table_seconds())
            shutil.rmtree(folder)
            print(f"  run {run + 1}: COPY binary {copies[-1]:.2f} s · headwater full {seconds:.2f} s, the table's load {full_tables[-1]:.2f} s ({mb} MB)", flush=True)
        copy_s, full_s, table_s = statistics.median(copies), statistics.median(fulls), statistics.median(full_tables)
        results["full"] = {
            "copy_binary_s": round(copy_s, 2),
            "headwater_s": round(full_s, 2),
            "headwater_table_s": round(table_s, 2),
            "throughput_ratio": round(copy_s / table_s, 2),  # the load itself: rows per second against COPY's
            "whole_process_ratio": round(copy_s / full_s, 2),  # with Python's start-up and imports (~0.5 s)
            "peak_mb": max(full_mem),
        }

        if args.full_only:
            print(json.dumps(results, indent=2))
            return
        inc_folder = project(work / "inc", url)
        timed([*headwater, "sync", "-p", str(inc_folder), "--json"])
        cur_folder = project(work / "cursor", url, CURSOR_MODE)
        timed([*headwater, "sync", "-p", str(cur_folder), "--json"])
        warm_folder = project(work / "warm", url)
        timed([*headwater, "sync", "-p", str(warm_folder), "--json"])
        runtime = work / "rt"
        runtime.mkdir(mode=0o700)
        warm_env = {k: v for k, v in os.environ.items() if k != "HEADWATER_NO_DAEMON"} | {"HEADWATER_RUNTIME_DIR": str(runtime)}
        timed([*headwater, "daemon", "start", "--idle", "1h"], env=warm_env)
        dlt_db, dlt_work = work / "dlt.duckdb", work / "dlt"
        dlt_script = work / "dlt_run.py"
        dlt_script.write_text(DLT_SCRIPT)
        if args.dlt:
            print("  dlt initial load …", flush=True)
            timed([sys.executable, str(dlt_script), url, str(dlt_db), str(dlt_work)])
        incs, idles, dlt_incs, dlt_idles, inc_table, idle_table, curs, cur_idles = [], [], [], [], [], [], [], []
        inc_in, idle_in, dlt_inc_in, dlt_idle_in, warms, warm_idles = [], [], [], [], [], []
        next_id = args.rows * 10
        round_started = 0.0
        for run in range(args.runs):
            if run:
                time.sleep(max(0.0, round_started + args.interval - time.perf_counter()))
            round_started = time.perf_counter()
            psql(url, CHANGES_SQL.format(start=next_id))
            next_id += 10000
            if args.dlt:  # dlt first: both see the same 20,000 changed rows
                dlt_incs.append(timed([sys.executable, str(dlt_script), url, str(dlt_db), str(dlt_work)])[0])
                dlt_inc_in.append(_in_process_seconds())
                dlt_idles.append(timed([sys.executable, str(dlt_script), url, str(dlt_db), str(dlt_work)])[0])
                dlt_idle_in.append(_in_process_seconds())
            incs.append(timed([*headwater, "sync", "-p", str(inc_folder), "--json"])[0])
            inc_table.append(_table_seconds())
            inc_in.append(_in_process_seconds())
            idles.append(timed([*headwater, "sync", "-p", str(inc_folder), "--json"])[0])
            idle_table.append(_table_seconds())
            idle_in.append(_in_process_seconds())
            curs.append(timed([*headwater, "sync", "-p", str(cur_folder), "--json"])[0])
            cur_idles.append(timed([*headwater, "sync", "-p", str(cur_folder), "--json"])[0])
            warms.append(timed([*headwater, "sync", "-p", str(warm_folder), "--json"], env=warm_env)[0])
            warm_idles.append(timed([*headwater, "sync", "-p", str(warm_folder), "--json"], env=warm_env)[0])
            print(f"  run {run + 1}: headwater incremental {incs[-1]:.2f} s (in process {inc_in[-1]:.2f} s, table {inc_table[-1]:.2f} s),"
                  + f" nothing to do {idles[-1]:.2f} s (in process {idle_in[-1]:.2f} s, table {idle_table[-1]:.2f} s)"
                  + f" · cursor mode {curs[-1]:.2f} s, nothing to do {cur_idles[-1]:.2f} s"
                  + f" · warm CLI {warms[-1]:.2f} s, nothing to do {warm_idles[-1]:.2f} s"
                  + (f" · dlt incremental {dlt_incs[-1]:.2f} s (in process {dlt_inc_in[-1]:.2f} s), nothing to do {dlt_idles[-1]:.2f} s (in process {dlt_idle_in[-1]:.2f} s)" if args.dlt else ""), flush=True)
        inc = {
            "headwater_s": round(statistics.median(incs), 2),
            "headwater_idle_s": round(statistics.median(idles), 2),
            "headwater_table_s": round(statistics.median(inc_table), 2),
            "headwater_idle_table_s": round(statistics.median(idle_table), 2),
            "headwater_in_process_s": round(statistics.median(inc_in), 3),
            "headwater_idle_in_process_s": round(statistics.median(idle_in), 3),
            "headwater_cursor_mode_s": round(statistics.median(curs), 2),
            "headwater_cursor_mode_idle_s": round(statistics.median(cur_idles), 2),
            "headwater_warm_cli_s": round(statistics.median(warms), 2),
            "headwater_warm_cli_idle_s": round(statistics.median(warm_idles), 2),
        }
        if args.dlt:
            inc |= {
                "dlt_s": round(statistics.median(dlt_incs), 2),
                "dlt_idle_s": round(statistics.median(dlt_idles), 2),
                "dlt_in_process_s": round(statistics.median(dlt_inc_in), 3),
                "dlt_idle_in_process_s": round(statistics.median(dlt_idle_in), 3),
                "speedup": round(statistics.median(dlt_incs) / statistics.median(incs), 2),
                "idle_speedup": round(statistics.median(dlt_idles) / statistics.median(idles), 2),
                "speedup_in_process": round(statistics.median(dlt_inc_in) / statistics.median(inc_in), 2),
                "idle_speedup_in_process": round(statistics.median(dlt_idle_in) / statistics.median(idle_in), 2),
                "cursor_mode_speedup": round(statistics.median(dlt_incs) / statistics.median(curs), 2),
                "warm_cli_speedup": round(statistics.median(dlt_incs) / statistics.median(warms), 2),
                "warm_cli_idle_speedup": round(statistics.median(dlt_idles) / statistics.median(warm_idles), 2),
            }
        results["incremental_20k"] = inc
        print(json.dumps(results, indent=2))
    finally:
        if (work / "rt").exists():
            subprocess.run([*headwater, "daemon", "stop"], env={**os.environ, "HEADWATER_RUNTIME_DIR": str(work / "rt")}, capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()

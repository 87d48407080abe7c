"""Syncing into the PostgreSQL warehouse, against PostgreSQL's own binary COPY and the DuckDB warehouse.

    python bench/warehouse_postgres.py --rows 1000000 [--grow 2000000] [--runs 3]

One throwaway PostgreSQL server (tests/pg.py) holds both the source database (`bench_source`, table
`bench_orders`: 12 columns of bigint, int, numeric, text, timestamptz, jsonb and boolean, ~250 bytes a
row, an index on updated_at) and the warehouses. Every figure is a whole process, timed with its
peak RSS (`/usr/bin/time`, which covers its children), median of --runs, the commands alternated:

- full load: `headwater sync` of the table into an empty PostgreSQL warehouse database (a project
  whose headwater.yml says `warehouse: {type: postgres, url: ...}`) versus the anchor, the same rows
  copied by PostgreSQL's own clients: `psql -c "COPY bench_orders TO STDOUT (FORMAT binary)" | psql
  -c "COPY anchor FROM STDIN (FORMAT binary)"` into a pre-created table of the same columns in the
  warehouse's server → ratio of throughputs (the table's own load time from `headwater sync
  --json`, and the whole process with start-up);
- memory as the table grows: the table is grown to each --grow size (rows appended) and the full
  load timed again;
- incremental: 10,000 updated + 10,000 inserted rows, then `headwater sync` into the PostgreSQL
  warehouse and the same sync into a DuckDB warehouse (the default engine; its own project, state
  and raw), each also timed in process (`"seconds"` of `--json`, after the imports) and by the
  table's own time; rounds back to back (--interval 0) unless --interval says otherwise; then a
  sync of each with nothing to do.

--before-src PATH times another checkout's code (e.g. before a change) alongside, full loads and
incremental rounds, on warehouse databases of its own; --memory-limit sets the PostgreSQL
warehouse's memory_limit (a full load's rows are staged in DuckDB, held to it). Results and what
they say: docs/benchmarks.md, "PostgreSQL warehouse".
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from sync import LAST_STDOUT, timed  # noqa: E402 - after the path above

SOURCE_DB = "bench_source"
COLUMNS = """(id bigint {pk}, account_id int NOT NULL, quantity int, status text, title text, body text,
  amount numeric(12,2), rate numeric(10,4), created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
  payload jsonb, flag boolean)"""
FILL = """INSERT INTO bench_orders SELECT g, g % 1000, g % 37, (array['new','open','closed'])[1 + g % 3], 'order ' || g,
  md5(g::text) || md5((g*7)::text) || md5((g*13)::text), (g % 100000) / 100.0, (g % 1000000) / 10000.0,
  now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval, jsonb_build_object('k', g, 'v', md5(g::text)), g % 2 = 0
FROM generate_series({start}, {end}) g;
"""
CHANGES = """UPDATE bench_orders SET status = 'changed {run}', amount = amount + 1, updated_at = now()
  WHERE id IN (SELECT id FROM bench_orders WHERE id % 97 = {run} LIMIT 10000);
INSERT INTO bench_orders SELECT g, 1, 1, 'new', 'order ' || g, 'x', 1, 1, now(), now(), '{{}}', true FROM generate_series({start}, {start} + 9999) g;
"""


class Postgres:
    """The server's client binaries, run against one database of it."""

    def __init__(self, bin_dir: Path, port: int) -> None:
        self.psql = str(bin_dir / "psql")
        self.port = port

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, database: str, sql: str) -> str:
        proc = subprocess.run([self.psql, self.url(database), "-v", "ON_ERROR_STOP=1", "-qtA", "-f", "-"], input=sql, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"psql failed: {proc.stderr}")
        return proc.stdout.strip()

    def fresh_database(self, name: str) -> None:
        self.run("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE);\nCREATE DATABASE {name};")


MEMORY_LIMIT: list[str] = []  # --memory-limit: the PostgreSQL warehouse's memory_limit


def project(folder: Path, source_url: str, warehouse_url: str | None, check_deletes_every: str | None = None) -> Path:
    """A project syncing bench_orders; into a PostgreSQL warehouse, or (None) the DuckDB one."""
    folder.mkdir(parents=True, exist_ok=True)
    limit = "".join(f"  memory_limit: {m}\n" for m in MEMORY_LIMIT)
    warehouse = f"warehouse:\n  type: postgres\n  url: {warehouse_url}\n{limit}" if warehouse_url else ""
    passes = f"    check_deletes_every: {check_deletes_every}\n" if check_deletes_every else ""
    (folder / "headwater.yml").write_text(f"name: bench\n{warehouse}sources:\n  app:\n    type: postgres\n    url: {source_url}\n    tables: [bench_orders]\n{passes}")
    return folder


def sync_json() -> tuple[float, float]:
    """(in process, the table's own) seconds from `headwater sync --json`."""
    data = json.loads(LAST_STDOUT[0])
    return float(data["seconds"]), sum(t["seconds"] for tables in data["sources"].values() for t in tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the table for the full loads and the incremental rounds")
    parser.add_argument("--grow", type=int, nargs="*", default=[2_000_000], help="then grow the table to these sizes and time full loads again (memory as rows grow)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0, help="seconds from the start of one incremental round to the next (default 0: back to back)")
    parser.add_argument("--skip-incremental", action="store_true")
    parser.add_argument("--before-src", type=Path, default=None, help="another checkout's src folder (e.g. the code before a change), timed alongside as 'before'")
    parser.add_argument("--memory-limit", help="the PostgreSQL warehouse's memory_limit (default: the sync's, an eighth of RAM and not under 700 MB)")
    args = parser.parse_args()
    MEMORY_LIMIT.extend([args.memory_limit] if args.memory_limit else [])
    before_env = {**os.environ, "PYTHONPATH": str(args.before_src.resolve())} if args.before_src else None

    import pg

    os.environ["HEADWATER_NO_DAEMON"] = "1"  # cold processes: the whole command each time
    server = pg.start_server()
    db = Postgres(server.bin_dir, server.port)
    work = Path(tempfile.mkdtemp(prefix="hw-bench-pgwh-"))
    headwater = [str(Path(sys.executable).with_name("headwater"))]
    results: dict[str, object] = {"cores": os.cpu_count(), "load_before": os.getloadavg()[0], "runs": args.runs, "memory_limit": args.memory_limit}
    source_url = db.url(SOURCE_DB)
    try:
        version = db.run("postgres", "SHOW server_version")
        results["postgres"] = version
        db.fresh_database(SOURCE_DB)
        print(f"PostgreSQL {version}; creating bench_orders with {args.rows:,} rows …", flush=True)
        started = time.perf_counter()
        db.run(SOURCE_DB, "CREATE TABLE bench_orders " + COLUMNS.format(pk="PRIMARY KEY") + ";\n" + FILL.format(start=1, end=args.rows)
               + "CREATE INDEX ON bench_orders (updated_at);\nVACUUM ANALYZE bench_orders;")
        print(f"  made in {time.perf_counter() - started:.1f} s", flush=True)
        fulls = []
        rows = args.rows
        for size in [args.rows, *args.grow]:
            if size > rows:
                started = time.perf_counter()
                db.run(SOURCE_DB, FILL.format(start=rows + 1, end=size) + "VACUUM ANALYZE bench_orders;")
                print(f"grown to {size:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
                rows = size
            fulls.append(full_loads(db, work, headwater, source_url, rows, args.runs, before_env))
            if size == args.rows and not args.skip_incremental:
                results["incremental_20k"] = incremental(db, work, headwater, source_url, args.rows, args.runs, args.interval, before_env)
                db.run(SOURCE_DB, f"DELETE FROM bench_orders WHERE id > {args.rows};  -- the rounds' inserted rows\nVACUUM ANALYZE bench_orders;")
                rows = args.rows
        results["full"] = fulls
        results["load_after"] = os.getloadavg()[0]
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()


def full_loads(db: Postgres, work: Path, headwater: list[str], source_url: str, rows: int, runs: int, before_env: dict[str, str] | None = None) -> dict[str, object]:
    size = db.run(SOURCE_DB, "SELECT pg_size_pretty(pg_table_size('bench_orders'))")
    anchor_sql = (
        f"{db.psql} '{db.url(SOURCE_DB)}' -c 'COPY bench_orders TO STDOUT (FORMAT binary)'"
        f" | {db.psql} '{db.url('bench_anchor')}' -v ON_ERROR_STOP=1 -c 'COPY bench_orders FROM STDIN (FORMAT binary)'"
    )
    db.fresh_database("bench_anchor")
    copies, loads, wholes, mems, copy_mems, befores = [], [], [], [], [], []
    for run in range(runs):
        # the anchor: into a pre-created table of the same columns (no key or index, as raw tables have none)
        db.run("bench_anchor", "DROP TABLE IF EXISTS bench_orders; CREATE TABLE bench_orders " + COLUMNS.format(pk="") + ";\nCHECKPOINT;")
        seconds, mb = timed(["sh", "-c", f"set -e; {anchor_sql}"])
        copies.append(seconds)
        copy_mems.append(mb)
        db.fresh_database("bench_wh")
        db.run("bench_wh", "CHECKPOINT")
        folder = project(work / f"full{run}", source_url, db.url("bench_wh"))
        seconds, mb = timed([*headwater, "sync", "-p", str(folder), "--json"])
        wholes.append(seconds)
        mems.append(mb)
        loads.append(sync_json()[1])
        shutil.rmtree(folder)
        if before_env is not None:
            db.fresh_database("bench_wh_before")
            folder = project(work / f"full_before{run}", source_url, db.url("bench_wh_before"))
            timed([*headwater, "sync", "-p", str(folder), "--json"], env=before_env)
            befores.append(sync_json()[1])
            shutil.rmtree(folder)
        print(
            f"  {rows:,} rows ({size}), run {run + 1}: COPY | COPY {copies[-1]:.2f} s · headwater sync {wholes[-1]:.2f} s, the table's load {loads[-1]:.2f} s, peak {mb} MB"
            + (f" · before: the table's load {befores[-1]:.2f} s" if befores else ""),
            flush=True,
        )
    copied = int(db.run("bench_anchor", "SELECT count(*) FROM bench_orders"))
    synced = int(db.run("bench_wh", "SELECT count(*) FROM raw_app.bench_orders"))
    if copied != rows or synced != rows:
        raise SystemExit(f"row counts differ: source {rows}, anchor {copied}, warehouse {synced}")
    copy_s, load_s, whole_s = statistics.median(copies), statistics.median(loads), statistics.median(wholes)
    return {
        "rows": rows,
        "table_size": size,
        "copy_pipe_s": round(copy_s, 2),
        "headwater_load_s": round(load_s, 2),
        "headwater_whole_s": round(whole_s, 2),
        "throughput_ratio": round(copy_s / load_s, 2),  # the table's load: rows per second against COPY | COPY's
        "whole_process_ratio": round(copy_s / whole_s, 2),  # with the CLI's start-up and imports
        "headwater_peak_mb": statistics.median(mems),
        "headwater_peak_mb_max": max(mems),
        "copy_pipe_peak_mb": max(copy_mems),
        "runs": {"copy_pipe_s": [round(s, 2) for s in copies], "headwater_load_s": [round(s, 2) for s in loads], "headwater_whole_s": [round(s, 2) for s in wholes]},
    } | ({"before_load_s": round(statistics.median(befores), 2), "before_throughput_ratio": round(copy_s / statistics.median(befores), 2), "before_runs": befores} if befores else {})


# How often the sync makes a full pass over the table (deletes, counts): "1h" is the default for
# tables over a million rows (between passes the changes come through the updated_at index);
# "0" makes one every sync, as for smaller tables.
PASSES = {"between passes": "1h", "a pass every sync": "0"}


def incremental(db: Postgres, work: Path, headwater: list[str], source_url: str, rows: int, runs: int, interval: float, before_env: dict[str, str] | None = None) -> dict[str, object]:
    projects: dict[tuple[str, str], Path] = {}
    envs = {"postgres": None, "duckdb": None} | ({"postgres_before": before_env} if before_env else {})
    for mode, every in PASSES.items():
        slug = every.replace("0", "pass").replace("1h", "hourly")
        db.fresh_database(f"bench_wh_{slug}")
        projects[(mode, "postgres")] = project(work / f"inc_pg_{slug}", source_url, db.url(f"bench_wh_{slug}"), every)
        projects[(mode, "duckdb")] = project(work / f"inc_duck_{slug}", source_url, None, every)
        if before_env:
            db.fresh_database(f"bench_wh_{slug}_before")
            projects[(mode, "postgres_before")] = project(work / f"inc_pg_{slug}_before", source_url, db.url(f"bench_wh_{slug}_before"), every)
    for (_mode, engine), folder in projects.items():
        timed([*headwater, "sync", "-p", str(folder), "--json"], env=envs[engine])
    figures: dict[tuple[str, str, str], list[float]] = {(m, e, what): [] for (m, e) in projects for what in ("whole_s", "in_process_s", "table_s", "idle_whole_s", "idle_in_process_s", "idle_table_s")}
    next_id = rows * 10
    round_started = 0.0
    for run in range(runs):
        if run:
            time.sleep(max(0.0, round_started + interval - time.perf_counter()))
        round_started = time.perf_counter()
        db.run(SOURCE_DB, CHANGES.format(start=next_id, run=run + 1))
        next_id += 10000
        order = list(projects) if run % 2 == 0 else list(reversed(projects))  # none always first
        for mode, engine in order:
            for phase in ("", "idle_"):
                seconds, _mb = timed([*headwater, "sync", "-p", str(projects[(mode, engine)]), "--json"], env=envs[engine])
                in_process, table = sync_json()
                figures[(mode, engine, f"{phase}whole_s")].append(seconds)
                figures[(mode, engine, f"{phase}in_process_s")].append(in_process)
                figures[(mode, engine, f"{phase}table_s")].append(table)
        for mode in PASSES:
            pg = {what: v[-1] for (m, e, what), v in figures.items() if (m, e) == (mode, "postgres")}
            duck = {what: v[-1] for (m, e, what), v in figures.items() if (m, e) == (mode, "duckdb")}
            print(
                f"  incremental run {run + 1}, {mode}: postgres warehouse {pg['whole_s']:.2f} s (in process {pg['in_process_s']:.2f}, table {pg['table_s']:.2f})"
                f" · duckdb warehouse {duck['whole_s']:.2f} s (in process {duck['in_process_s']:.2f}, table {duck['table_s']:.2f})"
                f" · nothing to do: postgres {pg['idle_whole_s']:.2f} s (table {pg['idle_table_s']:.2f}), duckdb {duck['idle_whole_s']:.2f} s (table {duck['idle_table_s']:.2f})"
                + (f" · postgres before: {figures[(mode, 'postgres_before', 'whole_s')][-1]:.2f} s (table {figures[(mode, 'postgres_before', 'table_s')][-1]:.2f})" if before_env else ""),
                flush=True,
            )
    source = int(db.run(SOURCE_DB, "SELECT count(*) FROM bench_orders"))
    for every in PASSES.values():
        for suffix in ("", "_before") if before_env else ("",):
            database = "bench_wh_" + every.replace("0", "pass").replace("1h", "hourly") + suffix
            synced = int(db.run(database, "SELECT count(*) FROM raw_app.bench_orders"))
            if source != synced:
                raise SystemExit(f"row counts differ after the incremental rounds: source {source}, postgres warehouse {database} {synced}")
    out: dict[str, object] = {}
    for mode in PASSES:
        medians = {f"{e}_{what}": round(statistics.median(v), 3) for (m, e, what), v in figures.items() if m == mode}
        ratios = {
            f"{engine}_over_duckdb_{what}": round(medians[f"{engine}_{what}"] / medians[f"duckdb_{what}"], 2)
            for engine in envs if engine != "duckdb"
            for what in ("whole_s", "in_process_s", "table_s", "idle_whole_s", "idle_table_s")
        }
        out[mode] = medians | ratios | {"runs_each": {f"{e}_{what}": [round(x, 2) for x in v] for (m, e, what), v in figures.items() if m == mode}}
    return out


if __name__ == "__main__":
    main()

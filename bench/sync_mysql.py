"""Sync speed and memory against MariaDB, compared in the same run with MariaDB's own client.

    python bench/sync_mysql.py --rows 1000000 [--runs 3]

A throwaway MariaDB server is started (tests/mysql.py). Two tables with the same ~230-byte rows
(bigint key, int, short text, 128-char text, decimal, datetime(6), timestamp(6), JSON, tinyint(1)):
`bench_orders` has an `ON UPDATE CURRENT_TIMESTAMP` column (synced by cursor), `bench_plain` has
none (synced by comparison). Each figure is a whole process (start-up included), timed with its
peak RSS:

- full load: `mariadb --quick --batch -e 'SELECT * FROM bench_orders' > /dev/null` (the anchor: the
  server's own client streaming every row as text) versus `headwater sync` of that table into an
  empty warehouse → ratio of throughputs;
- incremental: 10,000 updated + 10,000 inserted rows in each table, then a sync with nothing to do;
  the cursor table and the compared table are timed separately (`--json`'s per-table seconds). The
  compared table's first comparison (every row read, hashes stored) is timed on its own before.
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

from sync import LAST_STDOUT, timed

COLUMNS = """(id BIGINT PRIMARY KEY, account_id INT NOT NULL, status VARCHAR(10), body VARCHAR(160), amount DECIMAL(12,2),
  created_at DATETIME(6) NOT NULL, {updated} payload JSON, flag TINYINT(1))"""
FILL = """INSERT INTO {table} SELECT seq, seq % 1000, ELT(1 + seq % 3, 'new', 'open', 'closed'),
  CONCAT(MD5(seq), MD5(seq * 7), MD5(seq * 13), MD5(seq * 17)), (seq % 100000) / 100.0,
  NOW(6) - INTERVAL seq SECOND, {updated} JSON_OBJECT('k', seq, 'v', MD5(seq)), seq % 2
FROM seq_1_to_{rows}"""
CHANGES = """UPDATE {table} SET status = 'changed {run}' WHERE id % 97 = 0 LIMIT 10000;
INSERT INTO {table} SELECT seq, 1, 'new', 'x', 1, NOW(6), {updated} '{{}}', 1 FROM seq_{start}_to_{end};"""



def table_seconds() -> dict[str, float]:
    """Each table's own sync time (no process start-up), from `headwater sync --json`."""
    data = json.loads(LAST_STDOUT[0])
    return {t["table"]: t["seconds"] for tables in data["sources"].values() for t in tables}


def project(folder: Path, url: str, tables: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "headwater.yml").write_text(f"name: bench\nsources:\n  app:\n    type: mysql\n    url: {url}\n    tables: [{', '.join(tables)}]\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import mysql

    server = mysql.start_server()
    work = Path(tempfile.mkdtemp(prefix="hw-bench-mysql-"))
    headwater = [str(Path(sys.executable).with_name("headwater"))]
    results: dict[str, object] = {"rows": args.rows, "cores": os.cpu_count()}
    try:
        database = server.create_database()
        url = server.url(database)
        print(f"creating bench_orders and bench_plain with {args.rows:,} rows each …", flush=True)
        with server.connect(database) as con, con.cursor() as cur:
            cur.execute("CREATE TABLE bench_orders " + COLUMNS.format(updated="updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),"))
            cur.execute(FILL.format(table="bench_orders", rows=args.rows, updated="NOW(6) - INTERVAL seq SECOND,"))
            cur.execute("CREATE INDEX bench_orders_updated ON bench_orders (updated_at)")
            cur.execute("CREATE TABLE bench_plain " + COLUMNS.format(updated=""))
            cur.execute(FILL.format(table="bench_plain", rows=args.rows, updated=""))
            cur.execute("SELECT ROUND(SUM(data_length) / 1048576) FROM information_schema.TABLES WHERE table_schema = %s AND table_name = 'bench_orders'", [database])
            results["table_mb"] = int(cur.fetchone()[0])
        client = ["mariadb", "--no-defaults", "--quick", "--batch", "-h", "127.0.0.1", "-P", str(server.port), "-u", mysql.ADMIN, f"-p{server.password}", database, "-e", "SELECT * FROM bench_orders"]
        clients, fulls, client_mem, full_mem = [], [], [], []
        for run in range(args.runs):
            seconds, mb = _client(client)
            clients.append(seconds)
            client_mem.append(mb)
            folder = project(work / f"full{run}", url, ["bench_orders"])
            seconds, mb = timed([*headwater, "sync", "-p", str(folder), "--json"])
            fulls.append(seconds)
            full_mem.append(mb)
            shutil.rmtree(folder)
            print(f"  run {run + 1}: mariadb client {clients[-1]:.2f} s ({client_mem[-1]} MB) · headwater full {fulls[-1]:.2f} s ({mb} MB)", flush=True)
        client_s, full_s = statistics.median(clients), statistics.median(fulls)
        results["full"] = {"mariadb_client_s": round(client_s, 2), "headwater_s": round(full_s, 2), "throughput_ratio": round(client_s / full_s, 2), "client_peak_mb": max(client_mem), "headwater_peak_mb": max(full_mem)}

        inc_folder = project(work / "inc", url, ["bench_orders", "bench_plain"])
        timed([*headwater, "sync", "-p", str(inc_folder), "--json"])
        # The compared table's first comparison reads every row (and stores their hashes); later
        # syncs read keys and hashes, and only the rows that changed.
        timed([*headwater, "sync", "-p", str(inc_folder), "--json"])
        results["first_comparison_s"] = round(table_seconds()["bench_plain"], 2)
        print(f"  first comparison of bench_plain (reads every row, stores their hashes): {results['first_comparison_s']:.2f} s", flush=True)
        rows: dict[str, list[float]] = {"changes": [], "changes_cursor": [], "changes_compare": [], "idle": [], "idle_cursor": [], "idle_compare": []}
        mem: list[int] = []
        next_id = args.rows * 10
        for run in range(args.runs):
            with server.connect(database) as con, con.cursor() as cur:
                for table, updated in (("bench_orders", "NOW(6),"), ("bench_plain", "")):
                    for statement in CHANGES.format(table=table, updated=updated, start=next_id, end=next_id + 9999, run=run).split(";\n"):
                        if statement.strip():
                            cur.execute(statement)
            next_id += 10000
            for phase in ("changes", "idle"):
                seconds, mb = timed([*headwater, "sync", "-p", str(inc_folder), "--json"])
                per_table = table_seconds()
                rows[phase].append(seconds)
                rows[f"{phase}_cursor"].append(per_table["bench_orders"])
                rows[f"{phase}_compare"].append(per_table["bench_plain"])
                mem.append(mb)
            print(
                f"  run {run + 1}: 20k changed per table {rows['changes'][-1]:.2f} s (cursor table {rows['changes_cursor'][-1]:.2f} s, compared table {rows['changes_compare'][-1]:.2f} s),"
                f" nothing to do {rows['idle'][-1]:.2f} s (cursor {rows['idle_cursor'][-1]:.2f} s, compared {rows['idle_compare'][-1]:.2f} s)",
                flush=True,
            )
        results["incremental_20k"] = {k + "_s": round(statistics.median(v), 2) for k, v in rows.items()} | {"peak_mb": max(mem)}
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()


def _client(cmd: list[str]) -> tuple[float, int]:
    """The anchor: the mariadb client writing every row to /dev/null."""
    with open(os.devnull, "w") as sink:
        out = tempfile.NamedTemporaryFile(suffix=".time", delete=False)
        out.close()
        started = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd], stdout=sink, stderr=subprocess.PIPE, text=True, check=False)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"mariadb client failed: {proc.stderr[-2000:]}")
        kb = int(Path(out.name).read_text().strip().splitlines()[-1])
        os.unlink(out.name)
    return seconds, kb // 1024


if __name__ == "__main__":
    main()

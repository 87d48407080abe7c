"""Memory of DuckDB writing an Arrow stream into PostgreSQL: a reproducer, not a Headwater benchmark.

    python bench/pg_arrow_insert_memory.py [--rows 20000000]

The PostgreSQL warehouse's full load (src/headwater/warehouse/postgres/load.py) has DuckDB write
raw from an Arrow stream that a second DuckDB connection reads. The process grows with the table
in some runs (docs/benchmarks.md, "PostgreSQL warehouse"). This isolates it, without Headwater: one
throwaway PostgreSQL server (tests/pg.py), one DuckDB connection (one thread), the same generated
rows (bigint, 96-character text, timestamptz, bigint, double) written four ways, each in a fresh
process, RSS sampled every second:

- generated:     CREATE TABLE pg.t AS SELECT ... FROM range(n)                  (no Arrow)
- arrow→count:   SELECT count(*), sum(length(body)) FROM <stream>                (Arrow, no PostgreSQL)
- arrow→pg CTAS: CREATE TABLE pg.t AS SELECT * FROM <stream>                    (what load.py does)
- arrow→pg INSERT: CREATE TABLE pg.t (...); INSERT INTO pg.t SELECT * FROM <stream>

<stream> is ``cursor.execute(<the same SELECT>).fetch_record_batch(8192)`` of a second connection.
Measured 2026-12-07 (DuckDB 1.4.4, its postgres extension, PostgreSQL 15, 2 cores): generated
flat at ~84 MB and arrow→count flat at ~187 MB in every run; arrow→pg grows in some runs and not
in others: at 20M rows CTAS 190 → 340-440 MB and INSERT 190 → 730 MB (another process busy on the
machine); at 10M rows, quiet, CTAS flat at 201-227 MB and INSERT 209 → 381 MB. So neither DuckDB's
Arrow scan nor the postgres extension's writer alone, but the two together, and outside DuckDB's
buffer pool (duckdb_memory() stays at a few MB) and pyarrow's pool (0 bytes). Not pinned down.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pg  # noqa: E402 - after the path above

CHILD = """
import sys, threading, time
from headwater.warehouse import connect, require_extension
from headwater.sqltext import literal
dsn, mode, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = connect(":memory:", threads=1)
require_extension(con, "postgres")
con.execute(f"ATTACH {literal(dsn)} AS pg (TYPE postgres)")
con.execute("CALL postgres_execute('pg', 'DROP TABLE IF EXISTS public.t')")
select = f"SELECT i AS id, md5(i::varchar) || md5((i*7)::varchar) || md5((i*13)::varchar) AS body, now() AS ts, i % 1000 AS a, (i % 100000) / 100.0 AS amount FROM range({rows}) r(i)"
samples, done = [], threading.Event()
def sample():
    while not done.wait(1):
        samples.append(int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20)
threading.Thread(target=sample, daemon=True).start()
if mode == "generated":
    con.execute(f"CREATE TABLE pg.public.t AS {select}")
else:
    reader = con.cursor()
    reader.execute(select)
    stream = reader.fetch_record_batch(8192)
    if mode == "arrow-count":
        con.execute("SELECT count(*), sum(length(body)) FROM stream").fetchall()
    elif mode == "arrow-ctas":
        con.execute("CREATE TABLE pg.public.t AS SELECT * FROM stream")
    else:
        con.execute("CREATE TABLE pg.public.t (id BIGINT, body VARCHAR, ts TIMESTAMPTZ, a BIGINT, amount DOUBLE)")
        con.execute("INSERT INTO pg.public.t SELECT * FROM stream")
done.set()
print(mode, "RSS MB each second:", samples)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    args = parser.parse_args()
    server = pg.start_server()
    try:
        dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
        for mode in ("generated", "arrow-count", "arrow-ctas", "arrow-insert"):
            done = subprocess.run([sys.executable, "-c", CHILD, dsn, mode, str(args.rows)], capture_output=True, text=True, check=False)
            print(done.stdout.strip() or done.stderr[-2000:], flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()

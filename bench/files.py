"""Benchmark: file sources against DuckDB's own readers, measured in the same run.

CSV, --rows rows (default 1M) x 20 columns, about 0.1% of rows breaking a rule:
    duckdb read_csv (anchor)   CREATE TABLE t AS SELECT * FROM read_csv('file')  (types sniffed)
    headwater csv sync         the csv source with a dozen cleaning rules: hash, sniff, header,
                               read as text, clean, quarantine, replace table + state in one txn
    headwater csv, 256MB       the same with DuckDB's memory_limit at 256MB (memory stays bounded)
XLSX, --xlsx-rows rows (default 100k) x 20 columns:
    openpyxl (read-only)       every cell as a Python value, the reference Python reader
    python-calamine            every cell as a Python value (Rust)
    fastexcel -> arrow         every cell as text into Arrow (Rust): what the excel source uses
    headwater excel sync       the excel source end to end, with rules

Each measurement is a separate process that times its load alone (no interpreter start-up or
imports) and reports its peak RSS (wait4); runs alternate, and the medians are printed as markdown
tables with the speed relative to the anchor (higher is faster).

    python bench/files.py --rows 1000000 --xlsx-rows 100000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MAKE_CSV = """
COPY (
  SELECT i AS id,
         ['Ana', 'Bob', 'Chloe', 'Dev', 'Eun'][1 + i % 5] || CASE WHEN i % 50 = 0 THEN '  ' ELSE ' ' END || ['Smith', 'Lee', 'Okafor', 'Ng'][1 + i % 4] || CASE WHEN i % 71 = 0 THEN ' ' ELSE '' END AS name,
         CASE WHEN i % 997 = 0 THEN 'Nort' ELSE ['North', 'south', 'EAST', 'West'][1 + i % 4] || CASE WHEN i % 53 = 0 THEN ' ' ELSE '' END END AS region,
         CASE WHEN i % 1499 = 0 THEN '2.02555E+09' ELSE printf('0%09d', i) END AS phone,
         CASE WHEN i % 1201 = 0 THEN 'n/a' ELSE CAST(18 + i % 70 AS VARCHAR) END AS age,
         printf('%d,%03d.%02d', i % 9, i % 1000, i % 100) AS amount,
         ['yes', 'no', 'Y', 'N'][1 + i % 4] AS active,
         strftime(DATE '2020-01-01' + CAST(i % 1500 AS INTEGER), '%d/%m/%Y') AS joined,
         ['M', 'Male', 'Female', 'f', 'other'][1 + i % 5] AS gender,
         'team ' || (i % 40) AS team,
         printf('%05d', i % 99999) AS pin,
         'note ' || (i % 13) AS note,
         CAST(i % 101 AS VARCHAR) AS score,
         'c14 ' || (i % 23) AS c14, 'c15 ' || (i % 29) AS c15, 'c16 ' || (i % 31) AS c16,
         CAST(i * 3 AS VARCHAR) AS c17, 'c18 ' || (i % 37) AS c18, 'c19 ' || (i % 41) AS c19,
         strftime(TIMESTAMP '2024-01-01' + to_minutes(i % 100000), '%Y-%m-%d %H:%M') AS seen_at
  FROM range(1, {rows} + 1) t(i)
) TO '{path}' (HEADER, DELIMITER ',')
"""

PROJECT = """
name: bench_files
sources:
  people:
    type: csv
    path: people.csv
    unique: [id]
    columns:
      id: {type: integer, required: true}
      name: {required: true}
      region: {case: title, allowed_values: [North, South, East, West]}
      phone: {regex: '0[0-9]{9}'}
      age: {type: integer, min: 0, max: 120}
      amount: {type: decimal}
      active: {type: boolean}
      joined: {type: date, format: '%d/%m/%Y'}
      gender: {case: lower, map: {m: male, f: female}, allowed_values: [male, female, other]}
      score: {type: integer, max: 100}
      c17: {type: integer}
      seen_at: {type: datetime, format: '%Y-%m-%d %H:%M', timezone: Europe/Berlin}
  book:
    type: excel
    path: people.xlsx
    columns:
      id: {type: integer, required: true}
      amount: {type: decimal}
      active: {type: boolean}
"""

CLOCK = """
import resource, time
def clock():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime
def elapsed(start):
    wall, cpu = clock()
    return f"{wall - start[0]:.3f} {cpu - start[1]:.3f}"
"""

ANCHOR = CLOCK + """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SET enable_progress_bar = false")
started = clock()
con.execute(f"CREATE TABLE people AS SELECT * FROM read_csv('{sys.argv[2]}')")
print(elapsed(started), con.execute("SELECT count(*) FROM people").fetchone()[0])
"""

SYNC = CLOCK + """
import sys
from headwater.config import load_project
from headwater.sources import open_source
from headwater.sync import sync_source
from headwater.warehouse import connect
project = load_project(__import__('pathlib').Path(sys.argv[1]))
con = connect(sys.argv[2], memory_limit=sys.argv[4] if len(sys.argv) > 4 else None)
con.execute("SET enable_progress_bar = false")
started = clock()
stats = sync_source(con, open_source(sys.argv[3], project.config.sources[sys.argv[3]], project.root), full_refresh=True)
print(elapsed(started), stats[0].rows, stats[0].quarantined, stats[0].quarantine_by_rule)
"""

_TIMED = CLOCK + "import sys\nIMPORTS\nstarted = clock()\nn = READ\nprint(elapsed(started), n)"
XLSX_READERS = {
    "openpyxl (read-only)": _TIMED.replace("IMPORTS", "import openpyxl").replace("READ", "sum(1 for _ in openpyxl.load_workbook(sys.argv[1], read_only=True, data_only=True).active.iter_rows(values_only=True))"),
    "python-calamine": _TIMED.replace("IMPORTS", "import python_calamine").replace("READ", "len(python_calamine.CalamineWorkbook.from_path(sys.argv[1]).get_sheet_by_index(0).to_python())"),
    "fastexcel -> arrow": _TIMED.replace("IMPORTS", "import fastexcel").replace("READ", "fastexcel.read_excel(sys.argv[1]).load_sheet(0, header_row=None, dtypes='string').to_arrow().num_rows"),
}


def run(code: str, *args: str) -> tuple[float, float, float, str]:
    """Wall and CPU seconds (all threads) of the timed part — the load itself, without Python's
    start-up and imports — the peak RSS (MB) of the whole process, and its output."""
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark step failed:\n{err}")
    wall, cpu = out.split()[:2]
    return float(wall), float(cpu), usage.ru_maxrss / 1024, out.strip()


def make_xlsx(path: Path, rows: int) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = book.add_worksheet("People")
    sheet.write_row(0, 0, ["id", "name", "region", "phone", "age", "amount", "active", "joined", "gender", "team", *(f"c{i}" for i in range(11, 21))])
    for i in range(1, rows + 1):
        sheet.write_row(i, 0, [i, f"Name {i}", ["North", "South"][i % 2], f"0{i:09d}", 18 + i % 70, i * 1.25, ["yes", "no"][i % 2], f"{1 + i % 28:02d}/03/2024", "f", f"team {i % 40}", *(i % (k + 3) for k in range(10))])
    book.close()


Measure = tuple[list[float], list[float], list[float]]  # wall seconds, CPU seconds, peak RSS MB per run


def table(title: str, rows: dict[str, Measure], anchor: str, unit_rows: int) -> str:
    base_wall = statistics.median(rows[anchor][0])
    base_cpu = statistics.median(rows[anchor][1])
    lines = [
        f"**{title}**",
        "",
        "| reader | median wall s | rows/s | speed vs anchor (wall) | median CPU s | speed vs anchor (CPU) | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (walls, cpus, rss) in rows.items():
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        lines.append(f"| {name} | {wall:.2f} | {unit_rows / wall:,.0f} | {base_wall / wall:.2f} | {cpu:.2f} | {base_cpu / cpu:.2f} | {max(rss):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import duckdb

    duckdb.execute("SET enable_progress_bar = false")
    with tempfile.TemporaryDirectory(prefix="hw-bench-files-") as folder:
        work = Path(folder)
        csv_path = work / "people.csv"
        duckdb.execute(MAKE_CSV.format(rows=args.rows, path=csv_path))
        (work / "headwater.yml").write_text(PROJECT)
        make_xlsx(work / "people.xlsx", args.xlsx_rows)
        print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, duckdb {duckdb.__version__}; "
              f"CSV {csv_path.stat().st_size / 1e6:.0f} MB, {args.rows:,} rows; XLSX {(work / 'people.xlsx').stat().st_size / 1e6:.1f} MB, {args.xlsx_rows:,} rows\n")
        csv_rows: dict[str, Measure] = {k: ([], [], []) for k in ("duckdb read_csv (anchor)", "headwater csv sync", "headwater csv sync, memory_limit 256MB")}
        for n in range(args.runs):
            for name, (walls, cpus, rss) in csv_rows.items():
                db = work / f"run{n}-{len(walls)}-{abs(hash(name))}.duckdb"
                if name.startswith("duckdb"):
                    wall, cpu, peak, out = run(ANCHOR, str(db), str(csv_path))
                else:
                    extra = ["256MB"] if "256MB" in name else []
                    wall, cpu, peak, out = run(SYNC, str(work), str(db), "people", *extra)
                print(f"  {name}: {out}", file=sys.stderr)
                walls.append(wall)
                cpus.append(cpu)
                rss.append(peak)
                db.unlink(missing_ok=True)
                Path(f"{db}.wal").unlink(missing_ok=True)
        print(table(f"CSV: {args.rows:,} rows x 20 columns, 12 column rules + a unique key", csv_rows, "duckdb read_csv (anchor)", args.rows))
        xlsx_rows: dict[str, Measure] = {k: ([], [], []) for k in [*XLSX_READERS, "headwater excel sync"]}
        for n in range(args.runs):
            for name, (walls, cpus, rss) in xlsx_rows.items():
                if name in XLSX_READERS:
                    wall, cpu, peak, _ = run(XLSX_READERS[name], str(work / "people.xlsx"))
                else:
                    db = work / f"x{n}.duckdb"
                    wall, cpu, peak, _ = run(SYNC, str(work), str(db), "book")
                    db.unlink(missing_ok=True)
                walls.append(wall)
                cpus.append(cpu)
                rss.append(peak)
        print()
        print(table(f"XLSX: {args.xlsx_rows:,} rows x 20 columns", xlsx_rows, "openpyxl (read-only)", args.xlsx_rows))


if __name__ == "__main__":
    main()

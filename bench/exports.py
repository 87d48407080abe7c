"""Benchmark: exports of published data (CSV and XLSX), against what they are built from.

It publishes a synthetic table of the flake-rate mart's shape (11 columns: a date, two texts, seven
numbers, a boolean), made with DuckDB's range(), into a real snapshot of a throwaway project. Then it
alternates, run by run, each command as a whole process (wall time and peak RSS from wait4):

  CSV, --rows rows (default 5M)
    headwater export            `headwater export TABLE -o out.csv`: the CLI, start-up included
    web download body           what a CSV download streams: dashboards.stream -> export.csv_chunks
    web download body, gzip     the same, gzip-compressed (level 1) as browsers are sent it
                                (--gzip9: also at level 9, a default GZipMiddleware's level)
    duckdb COPY (anchor)        DuckDB's own CSV writer: COPY (SELECT * FROM TABLE) TO 'out.csv'
    duckdb COPY, 200MB          the same with DuckDB's memory_limit at 200MB
  XLSX, --xlsx-rows rows (default 1M; one sheet holds 1,048,575)
    headwater export -f xlsx    the CLI
    xlsxwriter alone (anchor)   the same rows written with xlsxwriter's constant-memory mode by a
                                bare loop: the floor for an XLSX made with xlsxwriter

and prints medians as markdown tables, with the ratio to the anchor (lower is better).

    python bench/exports.py --rows 5000000 --xlsx-rows 1000000 --runs 5 --gzip9 --batch-rows 32768 65536 131072 262144
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

BIN = Path(sys.executable).parent
TABLE = "flake_rate_weekly"

MAKE = """
SELECT DATE '2020-01-04' + CAST(7 * (i // 3000) AS INTEGER) AS week_start,
       ['East', 'North', 'South', 'West', 'Central'][1 + i % 5] AS region,
       'Organizer ' || (i % 600) AS organizer,
       CAST(i % 97 AS BIGINT) AS completed,
       CAST(i % 13 AS BIGINT) AS no_show,
       CAST(i % 7 AS BIGINT) AS cancelled,
       CAST(i % 13 + i % 7 AS BIGINT) AS total_flakes,
       CAST(i % 97 + i % 13 + i % 7 + i % 5 AS BIGINT) AS total_signups,
       CAST(i % 13 + i % 7 AS DOUBLE) / nullif(i % 97 + i % 13 + i % 7 + i % 5, 0) AS flake_rate,
       i // 3000 = {last_week} AS is_current_week,
       CAST(i % 5 AS BIGINT) AS scheduled
FROM range({rows}) t(i)
"""

ANCHOR_COPY = """
import sys
from headwater.warehouse import connect
con = connect(sys.argv[1], read_only=True, memory_limit=sys.argv[4] if len(sys.argv) > 4 else None)
con.execute(f"COPY (SELECT * FROM {sys.argv[2]}) TO '{sys.argv[3]}' (HEADER)")
"""

WEB_BODY = """
import sys
from pathlib import Path
from headwater import dashboards
from headwater.config import load_project
from headwater.publish import PublishedData, export
from headwater.warehouse import Warehouse
project = load_project(Path(sys.argv[1]))
table, out, level = sys.argv[2], sys.argv[3], int(sys.argv[4])  # gzip level, 0: none
if len(sys.argv) > 5:
    export.BATCH_ROWS = int(sys.argv[5])
data = PublishedData(Warehouse(project.root, project.config.warehouse))
with dashboards.stream(data, table, dashboards.Query(data.table_query(table), {})) as reader, open(out, "wb") as sink:
    chunks = export.csv_chunks(reader)
    for chunk in export.gzip_chunks(chunks, level) if level else chunks:
        sink.write(chunk)
"""

ANCHOR_XLSX = """
import sys, datetime as dt
import xlsxwriter
from headwater.warehouse import connect
con = connect(sys.argv[1], read_only=True)
cur = con.execute(f"SELECT * FROM {sys.argv[2]}")
book = xlsxwriter.Workbook(sys.argv[3], {"constant_memory": True})
sheet = book.add_worksheet("data")
date = book.add_format({"num_format": "yyyy-mm-dd"})
sheet.write_row(0, 0, [d[0] for d in cur.description])
row = 1
while batch := cur.fetchmany(100_000):
    for record in batch:
        for col, value in enumerate(record):
            if isinstance(value, dt.date):
                sheet.write_datetime(row, col, dt.datetime(value.year, value.month, value.day), date)
            elif value is not None:
                sheet.write(row, col, value)
        row += 1
book.close()
"""


def measure(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS in MB of one process run to completion."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    return wall, usage.ru_maxrss / 1024


MAKE_PROJECT = """
import json, sys
from pathlib import Path
from headwater.config import load_project
from headwater.warehouse import Warehouse
folder, sizes, make = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
folder.mkdir(parents=True)
(folder / "headwater.yml").write_text("name: export_bench\\n")
project = load_project(folder)
warehouse = Warehouse(project.root, project.config.warehouse)
con = warehouse.connect_build()
try:
    for name, rows in sizes.items():
        con.execute(f"CREATE TABLE {name} AS {make.format(rows=rows, last_week=(rows - 1) // 3000)}")
    snapshot = warehouse.write_snapshot(con, "run-000001", {name: f"main.{name}" for name in sizes}, [])
finally:
    con.close()
warehouse.switch(snapshot)
print(snapshot)
"""


def make_project(folder: Path, sizes: dict[str, int]) -> Path:
    """A project whose published snapshot holds one table of each size (name -> rows).

    Built in a child process: this process must stay small, because Linux reports a child's peak
    RSS as at least the parent's at the fork (the old memory map's high-water mark survives exec)."""
    done = subprocess.run([sys.executable, "-c", MAKE_PROJECT, str(folder), json.dumps(sizes), MAKE], check=True, capture_output=True, text=True)
    return Path(done.stdout.strip().splitlines()[-1])  # after DuckDB's progress bar, if it drew one


def lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))


def bench(commands: dict[str, list[str]], outputs: dict[str, Path], runs: int, cwd: Path, check: object) -> dict[str, tuple[float, float]]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(measure(command, cwd))
            check(name, outputs[name])  # type: ignore[operator]
            outputs[name].unlink()
    return {name: (statistics.median(w for w, _ in s), statistics.median(m for _, m in s)) for name, s in samples.items()}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    memory = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))) / 2**20
    versions = ", ".join(f"{name} {version(name)}" for name in ("duckdb", "pyarrow", "xlsxwriter"))  # not imported: see make_project
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()} {platform.release()}; {versions}"


def table_rows(results: dict[str, tuple[float, float]], rows: int, anchor: str) -> None:
    print("| command | rows | seconds | rows/s | peak RSS | time / anchor |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (wall, rss) in results.items():
        print(f"| {name} | {rows:,} | {wall:.2f} | {rows / wall / 1e6:.2f} M | {rss:.0f} MB | {wall / results[anchor][0]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the CSV exports")
    parser.add_argument("--xlsx-rows", type=int, default=1_000_000, help="rows of the XLSX exports (0: skip)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each command (medians are reported)")
    parser.add_argument("--batch-rows", type=int, nargs="*", default=[], help="also time the web body with these Arrow batch sizes")
    parser.add_argument("--gzip9", action="store_true", help="also time the web body gzipped at level 9 (what a default GZipMiddleware does)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the project (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hw-export-bench-"))
    project = workdir / "project"
    sizes = {TABLE: args.rows} | ({f"{TABLE}_xlsx": args.xlsx_rows} if args.xlsx_rows else {})
    snapshot = make_project(project, sizes)
    out = workdir / "out"
    out.mkdir()
    print(f"Machine: {machine()}\n")
    print(f"Published table: {args.rows:,} rows x 11 columns ({snapshot.stat().st_size / 2**20:.0f} MB snapshot); medians of {args.runs} runs.\n")

    def check(name: str, path: Path) -> None:
        expected = sizes[TABLE] if "xlsx" not in name else sizes[f"{TABLE}_xlsx"]
        if path.suffix == ".csv" and lines(path) != expected + 1:
            raise SystemExit(f"{name}: {lines(path)} lines in {path}, expected {expected + 1}")
        if path.suffix == ".gz" and path.stat().st_size == 0:
            raise SystemExit(f"{name}: empty output")
        if path.suffix == ".xlsx" and path.stat().st_size < 1000:
            raise SystemExit(f"{name}: no workbook")

    py = sys.executable
    csv_outputs = {
        "headwater export (CSV)": out / "cli.csv",
        "web download body (CSV)": out / "web.csv",
        "web download body (CSV, gzip level 1)": out / "web.csv.gz",
        "duckdb COPY (anchor)": out / "anchor.csv",
        "duckdb COPY, memory_limit 200MB": out / "anchor-200.csv",
    }
    csv_commands = {
        "headwater export (CSV)": [str(BIN / "headwater"), "export", TABLE, "-o", str(csv_outputs["headwater export (CSV)"])],
        "web download body (CSV)": [py, "-c", WEB_BODY, str(project), TABLE, str(csv_outputs["web download body (CSV)"]), "0"],
        "web download body (CSV, gzip level 1)": [py, "-c", WEB_BODY, str(project), TABLE, str(csv_outputs["web download body (CSV, gzip level 1)"]), "1"],
        "duckdb COPY (anchor)": [py, "-c", ANCHOR_COPY, str(snapshot), TABLE, str(csv_outputs["duckdb COPY (anchor)"])],
        "duckdb COPY, memory_limit 200MB": [py, "-c", ANCHOR_COPY, str(snapshot), TABLE, str(csv_outputs["duckdb COPY, memory_limit 200MB"]), "200MB"],
    }
    if args.gzip9:
        csv_outputs["web download body (CSV, gzip level 9)"] = out / "web9.csv.gz"
        csv_commands["web download body (CSV, gzip level 9)"] = [py, "-c", WEB_BODY, str(project), TABLE, str(csv_outputs["web download body (CSV, gzip level 9)"]), "9"]
    csv_results = bench(csv_commands, csv_outputs, args.runs, project, check)
    print("CSV:\n")
    table_rows(csv_results, args.rows, "duckdb COPY (anchor)")

    if args.batch_rows:
        sweep_outputs = {f"web body, {n:,} rows per batch": out / f"sweep-{n}.csv" for n in args.batch_rows}
        sweep_commands = {name: [py, "-c", WEB_BODY, str(project), TABLE, str(path), "0", str(n)] for (name, path), n in zip(sweep_outputs.items(), args.batch_rows, strict=True)}
        sweep_outputs["duckdb COPY (anchor)"] = out / "anchor.csv"
        sweep_commands["duckdb COPY (anchor)"] = csv_commands["duckdb COPY (anchor)"]
        print("\nArrow batch size (web body, CSV):\n")
        table_rows(bench(sweep_commands, sweep_outputs, args.runs, project, check), args.rows, "duckdb COPY (anchor)")

    if args.xlsx_rows:
        xlsx_table = f"{TABLE}_xlsx"
        xlsx_outputs = {"headwater export (XLSX)": out / "cli.xlsx", "xlsxwriter alone (anchor)": out / "anchor.xlsx"}
        xlsx_commands = {
            "headwater export (XLSX)": [str(BIN / "headwater"), "export", xlsx_table, "-f", "xlsx", "-o", str(xlsx_outputs["headwater export (XLSX)"])],
            "xlsxwriter alone (anchor)": [py, "-c", ANCHOR_XLSX, str(snapshot), xlsx_table, str(xlsx_outputs["xlsxwriter alone (anchor)"])],
        }
        print("\nXLSX:\n")
        table_rows(bench(xlsx_commands, xlsx_outputs, args.runs, project, check), args.xlsx_rows, "xlsxwriter alone (anchor)")
    if args.workdir is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()

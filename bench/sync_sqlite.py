"""Benchmark: `headwater sync` of the demo's SQLite source, against DuckDB's own scanner copy.

    python bench/sync_sqlite.py --signups 1000000 --runs 3 [--before-src /path/to/other/checkout/src]

Generates the flake-rate demo once, syncs it once (so that the timed syncs find nothing changed, as
a scheduled sync mostly does: every table with a key is still read in full and compared), then
alternates, run by run, each a whole process (start-up included):

  A  headwater sync campaign signups signup_statuses      this checkout's code
  A0 the same with --before-src on PYTHONPATH             e.g. the code before a change (optional)
  B  anchor: DuckDB copies the same two tables            CREATE TABLE AS over DuckDB's sqlite scanner

and prints medians of wall time, the ratios A / B (and A0 / B), and the load average before and
after (other processes on the machine slow every command alike: compare within one run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TABLES = ["signups", "signup_statuses"]

COPY_TABLES = """
import sys
from headwater.warehouse import connect
con = connect(sys.argv[2])
con.execute("LOAD sqlite")
con.execute(f"ATTACH '{sys.argv[1]}' AS src (TYPE sqlite, READ_ONLY)")
for table in sys.argv[3:]:
    con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM src."{table}"')
"""


def timed(command: list[str], cwd: Path, src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signups", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before-src", type=Path, default=None, help="another checkout's src folder, timed as A0")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hw-bench-sqlite-"))
    project = workdir / "demo"
    subprocess.run([BIN / "headwater", "demo", str(project), "--no-serve", "--signups", str(args.signups)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    here = ROOT / "src"
    sync = [sys.executable, "-m", "headwater.cli.main", "sync", "campaign", *TABLES, "-p", str(project)]
    copy = [sys.executable, "-c", COPY_TABLES, "data/campaign.db", str(workdir / "copy.duckdb"), *TABLES]
    timed(sync, project, here)  # the first sync loads raw; the timed ones compare
    commands = {"headwater sync": (sync, here), "duckdb copy (anchor)": (copy, here)}
    if args.before_src is not None:
        commands["headwater sync (before)"] = (sync, args.before_src)
    load_before = os.getloadavg()
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, (command, src) in commands.items():
            samples[name].append(timed(command, project, src))
            (workdir / "copy.duckdb").unlink(missing_ok=True)
    load_after = os.getloadavg()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    anchor = medians["duckdb copy (anchor)"]
    print(f"{args.signups:,} sign-ups, {args.runs} runs; load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, {os.cpu_count()} cores\n")
    print("| command | median | runs | / anchor |")
    print("|---|---:|---|---:|")
    for name, values in samples.items():
        print(f"| {name} | {medians[name]:.1f} s | {', '.join(f'{v:.1f}' for v in values)} | {medians[name] / anchor:.2f} |")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()

"""Benchmark: `headwater run` on the flake-rate demo, against what it is built from.

For each size it generates the demo once, then alternates, run by run:
  A  headwater run                     the whole pipeline: sync, dbt build + tests, publish, records
  B  anchor: DuckDB copies the source  CREATE TABLE AS over DuckDB's sqlite scanner, the sync floor
  C  anchor: dbt build                 the plain dbt CLI on the same project and warehouse
and prints medians of wall time and peak memory (RSS of the process, from wait4), and the ratio
A / (B + C): what Headwater costs on top of loading the data and running dbt.

    python bench/demo_pipeline.py --signups 200000 5000000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent

COPY_SOURCE = """
import duckdb, sys
from headwater.warehouse import connect
con = connect(sys.argv[2])
con.execute("LOAD sqlite")
con.execute(f"ATTACH '{sys.argv[1]}' AS src (TYPE sqlite, READ_ONLY)")
for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'src'").fetchall():
    con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM src."{table}"')
"""


def measure(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS in MB of one process run to completion."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def bench_size(signups: int, runs: int, workdir: Path) -> dict[str, object]:
    project = workdir / f"demo-{signups}"
    subprocess.run([BIN / "headwater", "demo", str(project), "--no-serve", "--signups", str(signups)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    source_bytes = (project / "data" / "campaign.db").stat().st_size
    dbt_args = ["--profiles-dir", ".headwater/dbt", "--target-path", ".headwater/bench-target", "--log-path", ".headwater/bench-logs", "--quiet"]
    commands = {
        "headwater run": [str(BIN / "headwater"), "run"],
        "duckdb copy (anchor)": [sys.executable, "-c", COPY_SOURCE, "data/campaign.db", str(workdir / "copy.duckdb")],
        "dbt build (anchor)": [str(BIN / "dbt"), "build", *dbt_args],
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(measure(command, project))
            (workdir / "copy.duckdb").unlink(missing_ok=True)
    result: dict[str, object] = {"signups": signups, "source_mb": source_bytes / 2**20}
    for name, values in samples.items():
        result[name] = (statistics.median(w for w, _ in values), statistics.median(m for _, m in values))
    anchors = result["duckdb copy (anchor)"][0] + result["dbt build (anchor)"][0]  # type: ignore[index]
    result["ratio"] = result["headwater run"][0] / anchors  # type: ignore[index]
    result["breakdown"] = breakdown(project, samples["headwater run"][-1][0])
    shutil.rmtree(project)
    return result


def breakdown(project: Path, wall: float) -> dict[str, float]:
    """Seconds per step of the project's latest run, from the system database it recorded."""
    import json

    from headwater.config import load_project
    from headwater.services.runs import get_run, recent_runs
    from headwater.system import open_system_db

    loaded = load_project(project)
    db = open_system_db(loaded)
    try:
        run = get_run(db, loaded.config.name, recent_runs(db, loaded.config.name, 1)[0].id)
    finally:
        db.close()
    steps: dict[str, float] = {}
    for s in run.steps:  # one sync step per source (sync:campaign, sync:roster): summed
        steps[s.name.split(":")[0]] = steps.get(s.name.split(":")[0], 0.0) + (s.finished_at - s.started_at).total_seconds()
    dbt_detail = json.loads(next(s.detail for s in run.steps if s.name == "dbt:build"))
    steps["dbt nodes"] = sum(n["seconds"] for n in dbt_detail["nodes"])
    steps["other"] = wall - sum(v for k, v in steps.items() if k != "dbt nodes")
    return steps


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    memory = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))) / 2**20
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signups", type=int, nargs="+", default=[200_000, 5_000_000])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each command (medians are reported)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the demo projects (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hw-bench-"))
    print(f"Machine: {machine()}\n")
    print("| sign-ups | source | headwater run | peak RSS | duckdb copy (anchor) | dbt build (anchor) | run / (copy + dbt) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for signups in args.signups:
        r = bench_size(signups, args.runs, workdir)
        results.append(r)
        (hw, hw_mb), (copy, _), (dbt, _) = r["headwater run"], r["duckdb copy (anchor)"], r["dbt build (anchor)"]  # type: ignore[misc]
        print(f"| {signups:,} | {r['source_mb']:.0f} MB | {hw:.1f} s | {hw_mb:.0f} MB | {copy:.1f} s | {dbt:.1f} s | {r['ratio']:.2f} |", flush=True)
    print("\nWhere a `headwater run` spends its time (the last timed run of each size, from its run record):\n")
    print("| sign-ups | sync | dbt build | of which dbt nodes | checks | publish | other (start-up, supervisor, records) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        b = r["breakdown"]  # type: ignore[index]
        print(f"| {r['signups']:,} | {b.get('sync', 0):.1f} s | {b['dbt']:.1f} s | {b['dbt nodes']:.1f} s | {b.get('checks', 0):.2f} s | {b['publish']:.2f} s | {b['other']:.1f} s |")


if __name__ == "__main__":
    main()

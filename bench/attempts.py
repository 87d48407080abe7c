"""Benchmark: how an unattended run's process starts — a fresh Python against a fork of the warm server.

The worker and the web server start each attempt of a pipeline in a process of its own
(`orchestrate/supervise.py`). `headwater run` starts a fresh Python (the anchor: what every attempt
cost before); the worker and the web server fork it from a server that imported dbt, DuckDB,
SQLAlchemy and Headwater once (`start_warm_attempts`). Same project, same supervisor call,
alternating run by run:

  A  fresh   `python -m headwater.orchestrate.child ...`
  B  warm    forked from the warm server

For each: the supervisor's wall time per attempt (`supervise.execute`: start, run, records, reap) and
the part of it outside the run's own record (start-up and teardown), medians; the ratio A / B; and
the warm server's resident memory.

    python bench/attempts.py --signups 2000 200000 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_pipeline import BIN, machine


def _attempt(project: object) -> tuple[float, float]:
    """Wall seconds of one supervised attempt, and how much of it the run's own record does not cover."""
    from headwater.orchestrate.supervise import execute
    from headwater.services.runs import recent_runs
    from headwater.system import open_system_db

    started = time.perf_counter()
    outcome = execute(project, None, "bench")  # type: ignore[arg-type]
    wall = time.perf_counter() - started
    if outcome.status != "success":
        raise SystemExit(f"run failed ({outcome.exit_code}):\n{outcome.stderr}")
    db = open_system_db(project)  # type: ignore[arg-type]
    try:
        run = recent_runs(db, project.config.name, 1)[0]  # type: ignore[attr-defined]
    finally:
        db.close()
    return wall, wall - (run.finished_at - run.started_at).total_seconds()


def _server_rss_mb() -> float:
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def bench_size(signups: int, runs: int, workdir: Path) -> dict[str, object]:
    from headwater.config import load_project
    from headwater.orchestrate import supervise

    root = workdir / f"demo-{signups}"
    subprocess.run([BIN / "headwater", "demo", str(root), "--no-serve", "--signups", str(signups)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    project = load_project(root)
    started = time.perf_counter()
    supervise.start_warm_attempts()
    first = _attempt(project)[0]  # waits for the server's imports
    server_ready = time.perf_counter() - started
    supervise.stop_warm_attempts()
    samples: dict[str, list[tuple[float, float]]] = {"fresh": [], "warm": []}
    for _ in range(runs):
        samples["fresh"].append(_attempt(project))
        supervise.start_warm_attempts()
        samples["warm"].append(_attempt(project))
        supervise.stop_warm_attempts()
    result: dict[str, object] = {"signups": signups, "first warm": first, "server ready": server_ready, "server MB": _server_rss_mb()}
    for name, values in samples.items():
        result[name] = (statistics.median(w for w, _ in values), statistics.median(o for _, o in values))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signups", type=int, nargs="+", default=[2_000, 200_000])
    parser.add_argument("--runs", type=int, default=5, help="timed attempts of each kind (medians are reported)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hw-bench-attempts-"))
    print(f"Machine: {machine()}\n")
    print("| sign-ups | fresh (anchor) | of which outside the run | warm | of which outside the run | fresh / warm | warm server RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for signups in args.signups:
        r = bench_size(signups, args.runs, workdir)
        (fresh, fresh_out), (warm, warm_out) = r["fresh"], r["warm"]  # type: ignore[misc]
        print(f"| {signups:,} | {fresh:.2f} s | {fresh_out:.2f} s | {warm:.2f} s | {warm_out:.2f} s | {fresh / warm:.2f}× | {r['server MB']:.0f} MB |", flush=True)
        print(f"  (server started and first warm attempt done in {r['server ready']:.1f} s; that attempt {r['first warm']:.2f} s)", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark: chart-data latency for many viewers, while a pipeline run is in progress.

    python bench/web_load.py --signups 5000000 --viewers 100 --duration 30
    python bench/web_load.py --signups 200000 --warehouse postgresql://user@host/empty_db   # both warehouses

Builds the flake-rate demo (once per --workdir), starts `headwater serve` (one uvicorn process),
logs in N viewers, and has each one request the dashboard's chart data with a random region filter,
pausing --think seconds between requests (a person reading a dashboard, not a load generator
hammering one URL). Two phases of the same load, in the same run:

  anchor   the server idle: no pipeline running
  run      the same load while `headwater run` rebuilds and publishes the project

With --warehouse, the same two phases on the same demo built on a PostgreSQL warehouse follow, and
the p95s are compared with the DuckDB warehouse's (the anchor). Prints requests, errors, p50/p95/p99/max latency of each phase and the ratio of the p95s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
EMAIL, PASSWORD = "viewer@example.org", "bench-viewer-password"


def headwater(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "headwater"), *args], input=stdin, capture_output=True, text=True, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(workdir: Path, signups: int, warehouse: str | None = None) -> Path:
    project = workdir / (f"demo-{signups}" + ("-postgres" if warehouse else ""))
    if not (project / "headwater.yml").exists():
        headwater("demo", str(project), "--no-serve", "--signups", str(signups), *(["--warehouse", warehouse] if warehouse else []))
    try:
        headwater("user", "add", EMAIL, "--role", "viewer", "--password-stdin", "-p", str(project), stdin=PASSWORD + "\n")
    except subprocess.CalledProcessError as exc:
        if "already" not in (exc.stderr + exc.stdout):
            raise
    return project


async def log_in(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    response = await client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1) if token else ""})
    if response.status_code >= 400 or "headwater_session" not in client.cookies:
        raise SystemExit(f"login failed: {response.status_code} {response.text[:300]}")


async def viewer(client: httpx.AsyncClient, charts: list[str], regions: list[str], think: float, stop: float, latencies: list[float], errors: list[str]) -> None:
    await asyncio.sleep(random.random() * think)  # viewers do not all start in the same instant
    while time.monotonic() < stop:
        url = random.choice(charts)
        params = {"region": random.choice(regions)} if random.random() < 0.7 else {}
        started = time.perf_counter()
        try:
            response = await client.get(url, params=params)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {url}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__} {url}")
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(think * (0.5 + random.random()))


async def phase(clients: list[httpx.AsyncClient], charts: list[str], regions: list[str], think: float, duration: float) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + duration
    await asyncio.gather(*(viewer(client, charts, regions, think, stop, latencies, errors) for client in clients))
    return latencies, errors


async def signed_in_viewers(base: str, count: int) -> list[httpx.AsyncClient]:
    """Each viewer logs in once, before any timing: logging in (argon2) is not what is measured."""
    clients = [httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=1)) for _ in range(count)]
    for client in clients:
        await log_in(client)
    return clients


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def row(name: str, latencies: list[float], errors: list[str], seconds: float) -> str:
    ms = [v * 1000 for v in latencies]
    return (
        f"| {name} | {len(ms):,} | {len(ms) / seconds:.0f}/s | {len(errors)} | {statistics.median(ms):.1f} ms | "
        f"{percentile(ms, 95):.1f} ms | {percentile(ms, 99):.1f} ms | {max(ms):.1f} ms |"
    )


async def measure(project: Path, args: argparse.Namespace, label: str) -> tuple[float, float]:
    """Serve ``project`` and put the load on it idle, then during `headwater run`; prints a row per
    phase and returns the two p95s."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(BIN / "headwater"), "serve", "-p", str(project), "--port", str(port), "--no-scheduler"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as probe:
            for _ in range(100):
                try:
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
            await log_in(probe)
            page = await probe.get("/dashboards/flake_rate")
        count = len(set(re.findall(r"/dashboards/flake_rate/charts/(\d+)\.csv", page.text)))
        charts = [f"/api/dashboards/flake_rate/charts/{i}" for i in range(count)]
        regions = sorted(set(re.findall(r'<option value="([^"]+)"', page.text.split('name="organizer"')[0])))[:20] or ["North Metro"]
        clients = await signed_in_viewers(base, args.viewers)
        idle, idle_errors = await phase(clients, charts, regions, args.think, args.duration)
        print(row(f"{label}: idle server", idle, idle_errors, args.duration), flush=True)
        run = subprocess.Popen([str(BIN / "headwater"), "run", "-p", str(project)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        busy, busy_errors = await phase(clients, charts, regions, args.think, args.duration)
        still_running = run.poll() is None
        run_code = run.wait()
        print(row(f"{label}: during `headwater run`" + (" (ran throughout)" if still_running else " (ended within the phase)") + f", exit {run_code}", busy, busy_errors, args.duration), flush=True)
        for error in sorted(set(idle_errors + busy_errors))[:10]:
            print("error:", error)
        for client in clients:
            await client.aclose()
        return percentile(idle, 95), percentile(busy, 95)
    finally:
        server.terminate()
        server.wait(timeout=30)


async def main_async(args: argparse.Namespace) -> None:
    print(f"{args.viewers} viewers, think time ~{args.think}s, {args.duration:.0f}s per phase, {args.signups:,} sign-ups\n")
    print("| phase | requests | rate | errors | p50 | p95 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    idle, busy = await measure(prepare(args.workdir, args.signups), args, "DuckDB warehouse")
    print(f"\np95 during the run / p95 idle: {busy / idle:.2f}")
    if args.warehouse:
        pg_idle, pg_busy = await measure(prepare(args.workdir, args.signups, args.warehouse), args, "PostgreSQL warehouse")
        print(f"PostgreSQL warehouse / DuckDB warehouse, p95: idle {pg_idle / idle:.2f}, during a run {pg_busy / busy:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signups", type=int, default=5_000_000)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--think", type=float, default=1.0, help="seconds a viewer pauses between requests (randomised ±50%%)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hw-web-bench")
    parser.add_argument("--warehouse", metavar="URL", help="also measure the same demo on this PostgreSQL warehouse (an empty database), against the DuckDB one")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

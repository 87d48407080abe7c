"""Benchmark: 50 organisations on one install against a single-organisation install, same load.

    python bench/orgs.py --orgs 50 --signups 20000 --viewers 100 --duration 30 --repeats 2

Builds (once per --workdir) an install with N organisations, each with the flake-rate demo project
(`headwater org create orgNN --demo`, then `headwater run` for each), and, as the anchor, one demo
project with the same data served on its own (`headwater serve -p`). Each server is then given the
load of bench/web_load.py — the same viewer loop, imported from it: V signed-in viewers requesting
the dashboard's chart data with a random region filter, pausing ~--think s between requests. On
the install the viewers are spread evenly over the organisations, each requesting its own
organisation's charts (/o/orgNN/api/...); on the anchor all request the one organisation's.

Per server and repeat, two phases:

  cold   the server just started: every organisation's chart cache is empty, so the first viewer
         of each (organisation, chart, filter) pays the DuckDB query
  warm   after one request per (organisation, chart, filter) has filled the caches: what viewers
         see once an install has been up for a while (the target: p95 within 10% of the anchor)

Prints p50/p95/p99, errors, the server's CPU time per request (from /proc: what the server itself
spent, whatever else the machine runs) and its peak memory per phase, the medians over the
repeats, and the ratios install / anchor of the p95s and of the CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import web_load

BIN = Path(sys.executable).parent
PASSWORD = "bench-viewer-password"


def headwater(*args: str) -> None:
    subprocess.run([str(BIN / "headwater"), *args], capture_output=True, text=True, check=True)


def prepare(workdir: Path, orgs: int, signups: int) -> tuple[Path, Path]:
    """The install (N organisations, each run once) and the anchor project; reused when present."""
    install, anchor = workdir / f"install-{orgs}x{signups}", workdir / f"anchor-{signups}"
    if not (anchor / "headwater.yml").exists():
        headwater("demo", str(anchor), "--no-serve", "--signups", str(signups))
    slugs = [f"org{n:02d}" for n in range(1, orgs + 1)]
    missing = [s for s in slugs if not (install / "orgs" / s / ".headwater" / "warehouse" / "published" / "CURRENT").exists()]
    for slug in missing:
        if not (install / "orgs" / slug / "headwater.yml").exists():
            headwater("org", "create", slug, "--install", str(install), "--demo", "--signups", str(signups))
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: two runs at a time
        list(pool.map(lambda slug: headwater("run", "-p", str(install / "orgs" / slug)), missing))
    _viewers(install, anchor, slugs)
    return install, anchor


def _viewers(install: Path, anchor: Path, slugs: list[str]) -> None:
    from headwater.config import load_project
    from headwater.system import open_system_db
    from headwater.system.accounts import Accounts
    from headwater.system.orgs import Install

    for db, orgs in ((Install.load(install).open_db(), slugs), (open_system_db(load_project(anchor)), ["default"])):
        try:
            accounts = Accounts(db)
            for slug in orgs:
                email = f"viewer@{slug}.example.org"
                if not accounts.exists(email):
                    accounts.create_user(email, PASSWORD, "viewer", org=slug)
        finally:
            db.close()


async def log_in(client: httpx.AsyncClient, email: str) -> None:
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    response = await client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1) if token else ""})
    if response.status_code >= 400 or "headwater_session" not in client.cookies:
        raise SystemExit(f"login failed for {email}: {response.status_code} {response.text[:300]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (the server's cost, whatever else the machine runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(server: subprocess.Popen[bytes], log: Path) -> float:
    if server.poll() is not None:
        raise SystemExit(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
    status = Path(f"/proc/{server.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


Result = tuple[list[float], list[str], float, float]  # latencies, errors, peak RSS (MB), server CPU per request (ms)


async def serve_and_measure(command: list[str], people: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, Result]:
    """Start the server, sign the viewers in, run the cold phase, warm every cache, run the warm phase.
    ``people``: (e-mail, URL prefix of their organisation)."""
    port = web_load.free_port()
    base = f"http://127.0.0.1:{port}"
    log = args.workdir / "server.log"
    server = subprocess.Popen([*command, "--port", str(port), "--no-scheduler"], stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as probe:
            for _ in range(200):
                try:
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            await log_in(probe, people[0][0])
            page = await probe.get(f"{people[0][1]}/dashboards/flake_rate")
        count = len(set(re.findall(r"/dashboards/flake_rate/charts/(\d+)\.csv", page.text)))  # as web_load.py finds them
        regions = sorted(set(re.findall(r'<option value="([^"]+)"', page.text.split('name="organizer"')[0])))[:20]
        clients = []
        for email, prefix in people:
            client = httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=1))
            await log_in(client, email)
            clients.append((client, [f"{prefix}/api/dashboards/flake_rate/charts/{i}" for i in range(count)]))
        results = {}
        for phase_name in ("cold", "warm"):
            if phase_name == "warm":
                await _warm(clients, regions)
            cpu = cpu_seconds(server.pid)
            latencies, errors = await _phase(clients, regions, args)
            cpu_ms = (cpu_seconds(server.pid) - cpu) * 1000 / max(1, len(latencies))
            results[phase_name] = (latencies, errors, peak_rss_mb(server, log), cpu_ms)
        for client, _charts in clients:
            await client.aclose()
        return results
    finally:
        server.terminate()
        server.wait(timeout=60)


async def _phase(clients: list[tuple[httpx.AsyncClient, list[str]]], regions: list[str], args: argparse.Namespace) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + args.duration
    await asyncio.gather(*(web_load.viewer(client, charts, regions, args.think, stop, latencies, errors) for client, charts in clients))
    return latencies, errors


async def _warm(clients: list[tuple[httpx.AsyncClient, list[str]]], regions: list[str]) -> None:
    """One request per (organisation, chart, filter) the viewers can make."""
    seen: set[str] = set()
    for client, charts in clients:
        for url in charts:
            if url in seen:
                continue
            seen.add(url)
            for params in [{}, *({"region": r} for r in regions)]:
                await client.get(url, params=params)


def summary(name: str, runs: list[Result], seconds: float) -> tuple[str, float, float]:
    ms = [[v * 1000 for v in latencies] for latencies, _e, _m, _c in runs]
    p50 = statistics.median(statistics.median(m) for m in ms)
    p95 = statistics.median(web_load.percentile(m, 95) for m in ms)
    p99 = statistics.median(web_load.percentile(m, 99) for m in ms)
    rate = statistics.median(len(m) / seconds for m in ms)
    errors = sum(len(e) for _l, e, _m, _c in runs)
    memory = max(m for _l, _e, m, _c in runs)
    cpu = statistics.median(c for _l, _e, _m, c in runs)
    return f"| {name} | {rate:.0f}/s | {errors} | {p50:.1f} ms | {p95:.1f} ms | {p99:.1f} ms | {cpu:.2f} ms | {memory:.0f} MB |", p95, cpu


async def main_async(args: argparse.Namespace) -> None:
    started = time.monotonic()
    install, anchor = prepare(args.workdir, args.orgs, args.signups)
    print(f"setup: {time.monotonic() - started:.0f}s; {args.orgs} organisations, {args.signups:,} sign-ups each; {args.viewers} viewers, think ~{args.think}s, {args.duration:.0f}s per phase, {args.repeats} repeats\n", flush=True)
    slugs = [f"org{n:02d}" for n in range(1, args.orgs + 1)]
    setups = {
        "anchor: one organisation (serve -p)": ([str(BIN / "headwater"), "serve", "-p", str(anchor)], [("viewer@default.example.org", "")] * args.viewers),
        f"install: {args.orgs} organisations (serve --install)": (
            [str(BIN / "headwater"), "serve", "--install", str(install)],
            [(f"viewer@{slugs[i % len(slugs)]}.example.org", f"/o/{slugs[i % len(slugs)]}") for i in range(args.viewers)],
        ),
    }
    measured: dict[str, dict[str, list[Result]]] = {name: {"cold": [], "warm": []} for name in setups}
    for _repeat in range(args.repeats):
        for name, (command, people) in setups.items():  # alternated, so drift hits both alike
            for phase_name, result in (await serve_and_measure(command, people, args)).items():
                measured[name][phase_name].append(result)
    print("| server, phase | rate | errors | p50 | p95 | p99 | server CPU per request | server peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    p95s: dict[tuple[str, str], tuple[float, float]] = {}
    for name in setups:
        for phase_name in ("cold", "warm"):
            line, *p95s[(name, phase_name)] = summary(f"{name}, {phase_name}", measured[name][phase_name], args.duration)
            print(line)
    anchor_name, install_name = list(setups)
    print()
    for phase_name in ("warm", "cold"):
        (p95, cpu), (anchor_p95, anchor_cpu) = p95s[(install_name, phase_name)], p95s[(anchor_name, phase_name)]
        print(f"{phase_name}: install / anchor: p95 {p95 / anchor_p95:.2f}, server CPU per request {cpu / anchor_cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--signups", type=int, default=20_000)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--think", type=float, default=1.0, help="seconds a viewer pauses between requests (randomised ±50%%)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hw-orgs-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.pop("HEADWATER_INSTALL", None)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

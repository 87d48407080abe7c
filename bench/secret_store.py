"""Benchmark: what secrets cost, against what the same code path costs anyway.

  1. Redaction of a run-log line (dbt's typical output, 0 to 1,000 registered secrets) against
     the anchor: recording that line in the SQLite system database, which `RunRecorder.log` does
     for every line anyway. Ratio = redact / insert.
  2. Loading a project whose headwater.yml uses ${secret:...} (opens the system database, decrypts)
     against the anchor: loading the same project with the values written in. Ratio = with / without.

    python bench/secret_store.py --lines 20000 --loads 30
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert

from headwater import redact as redaction
from headwater.scaffold import init_project
from headwater.system import Run, RunLog, SystemDB
from headwater.system.orgs import load_with_secrets
from headwater.system.secrets import KEY_FILE_ENV, open_store

LINE = "1 of 14 OK created sql table model marts.flake_rate_weekly [OK in 0.42s] (postgresql://etl:***@db/crm, 1,312 rows)"


def per_call(function: object, repeat: int) -> float:
    """Median microseconds per call over 5 batches of ``repeat`` calls."""
    batches = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            function()  # type: ignore[operator]
        batches.append((time.perf_counter() - started) / repeat * 1e6)
    return statistics.median(batches)


def bench_redaction(lines: int, workdir: Path) -> list[tuple[str, float]]:
    db = SystemDB(f"sqlite:///{workdir / 'system.db'}")
    with db.session() as session:
        run = Run(project="bench", pipeline="p", status="running", trigger="cli", started_at=dt.datetime.now(dt.UTC))
        session.add(run)
        session.commit()
        run_id = run.id

    def record() -> None:
        with db.engine.begin() as connection:
            connection.execute(insert(RunLog), {"run_id": run_id, "at": dt.datetime.now(dt.UTC), "level": "info", "message": LINE})

    results = [("insert one log line (anchor)", per_call(record, max(lines // 20, 50)))]
    registered = 0
    for count in (0, 10, 100, 1000):
        while registered < count:
            redaction.register(f"secret-{uuid.uuid4().hex}")
            registered += 1
        results.append((f"redact one line, {count:,} secrets registered", per_call(lambda: redaction.redact(LINE), lines)))
    db.close()
    return results


def bench_loading(loads: int, workdir: Path) -> list[tuple[str, float]]:
    env = {KEY_FILE_ENV: str(workdir / "secret.key")}
    channels = "alerts:\n  - type: email\n    to: [a@example.org]\n    smtp: {{host: smtp.example.org, password: {pw}, from: hw@example.org}}\n  - type: webhook\n    url: {hook}\n"
    plain, secret = workdir / "plain", workdir / "secret"
    for root, pw, hook in ((plain, "literal-password", "https://hooks.example.org/T0/B0/x"), (secret, '"${secret:SMTP_PASSWORD}"', '"${secret:HOOK_URL}"')):
        init_project(root, "bench")
        with open(root / "headwater.yml", "a") as handle:
            handle.write(channels.format(pw=pw, hook=hook))
    with open_store("sqlite:///.headwater/system.db", secret, env) as store:
        store.set("default", "SMTP_PASSWORD", "literal-password", "bench")
        store.set("default", "HOOK_URL", "https://hooks.example.org/T0/B0/x", "bench")
    load_with_secrets(secret, env)  # the first load migrates nothing more, but warms imports
    return [
        ("load_project, values in the file (anchor)", per_call(lambda: load_with_secrets(plain, env), loads) / 1000),
        ("load_project, two ${secret:...}", per_call(lambda: load_with_secrets(secret, env), loads) / 1000),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20000, help="redact() calls per batch")
    parser.add_argument("--loads", type=int, default=30, help="project loads per batch")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="hw-bench-secrets-") as folder:
        workdir = Path(folder)
        redact_rows = bench_redaction(args.lines, workdir)
        load_rows = bench_loading(args.loads, workdir)
    anchor = redact_rows[0][1]
    print("\n| per run-log line | µs | ratio to the insert |\n|---|---:|---:|")
    for label, micros in redact_rows:
        print(f"| {label} | {micros:,.1f} | {micros / anchor:.3f} |")
    print("\n| per project load | ms | ratio to values in the file |\n|---|---:|---:|")
    for label, millis in load_rows:
        print(f"| {label} | {millis:,.1f} | {millis / load_rows[0][1]:.2f} |")


if __name__ == "__main__":
    main()

"""The demo as a user runs it: the `headwater` command in a subprocess, exports read back."""

from __future__ import annotations

import csv
import datetime as dt
import http.cookiejar
import io
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from cli_process import HEADWATER, cli_env, run_cli
from demo_project import assert_matches_reference
from loopback import free_port
from reference import flake_rate_weekly

from headwater.demo import demo_timezone


def headwater(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, timeout=timeout, env=cli_env(COLUMNS="200"))


def _typed(row: dict[str, str]) -> tuple[tuple, dict]:
    def number(v: str) -> int | None:
        return int(v) if v != "" else None

    key = (dt.date.fromisoformat(row["week_start"]), row["region"], row["organizer"])
    counts = ("completed", "no_show", "cancelled", "total_flakes", "total_signups", "scheduled")
    values: dict[str, object] = {c: number(row[c]) for c in counts}
    values["flake_rate"] = float(row["flake_rate"]) if row["flake_rate"] else None
    values["is_current_week"] = row["is_current_week"].lower() == "true"
    return key, values


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli") / "flake-demo"
    result = headwater("demo", str(directory), "--no-serve", "--signups", "5000")
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout and "flake_rate_weekly" in result.stdout
    return directory


def _reference(directory: Path) -> dict:
    zone = demo_timezone()
    return flake_rate_weekly(directory / "data" / "campaign.db", timezone=zone, today=dt.datetime.now(ZoneInfo(zone)).date())


def test_demo_then_export_csv_gives_the_report(demo_dir):
    result = headwater("export", "flake_rate_weekly", "--project", str(demo_dir))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "week_start", "region", "organizer", "completed", "no_show", "cancelled",
        "total_flakes", "total_signups", "flake_rate", "is_current_week", "scheduled",
    ]  # fmt: skip
    assert_matches_reference(dict(_typed(r) for r in rows), _reference(demo_dir))


def test_export_xlsx_matches_csv(demo_dir, tmp_path):
    target = tmp_path / "report.xlsx"
    result = headwater("export", "flake_rate_weekly", "-f", "xlsx", "-o", str(target), cwd=demo_dir)
    assert result.returncode == 0, result.stderr
    sheet = openpyxl.load_workbook(target, read_only=True).active
    values = list(sheet.iter_rows(values_only=True))
    header, body = values[0], values[1:]
    csv_rows = list(csv.DictReader(io.StringIO(headwater("export", "flake_rate_weekly", cwd=demo_dir).stdout)))
    assert len(body) == len(csv_rows) and f"Wrote {len(body):,} rows" in result.stderr
    first = dict(zip(header, body[0], strict=True))
    assert first["week_start"].date().isoformat() == csv_rows[0]["week_start"]
    assert first["total_signups"] == int(csv_rows[0]["total_signups"])


def test_runs_json_lists_the_demo_run(demo_dir):
    result = headwater("runs", "--json", cwd=demo_dir)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [r["status"] for r in runs] == ["success"]
    assert runs[0]["pipeline"] == "flake_rate" and runs[0]["trigger"] == "demo"
    assert runs[0]["rows_synced"] > 5000


def _log_in(base: str, email: str, password: str) -> urllib.request.OpenerDirector:
    """A browser-like opener (cookies) logged in through the login form."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base}/login", timeout=10) as response:
        token = re.search(r'name="csrf_token" value="([^"]+)"', response.read().decode()).group(1)
    form = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    with opener.open(f"{base}/login", data=form, timeout=10) as response:
        assert response.url == f"{base}/dashboards/flake_rate"  # the one dashboard, after logging in
    return opener


def test_demo_serves_the_dashboard(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([*HEADWATER, "demo", str(tmp_path / "served"), "--signups", "1000", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(COLUMNS="200"))
    try:
        deadline = time.monotonic() + 180
        for line in process.stdout:  # the demo prints how to log in, then serves
            if found := re.search(r"Log in at (\S+) as (\S+) with the password (\S+) ", line):
                break
            assert time.monotonic() < deadline, "the demo printed no login instructions within 180 s"
        else:
            raise AssertionError(f"the demo ended without login instructions: {process.communicate()}")
        assert found.group(1) == f"{base}/login"
        while True:
            assert process.poll() is None, process.communicate()
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not start serving within 180 s"
                time.sleep(0.5)
        assert health["published"].startswith("run-")
        with urllib.request.urlopen(f"{base}/dashboards/flake_rate", timeout=10) as response:
            assert response.url.startswith(f"{base}/login")  # nothing without logging in
        opener = _log_in(base, found.group(2), found.group(3))
        with opener.open(f"{base}/dashboards/flake_rate", timeout=10) as response:
            page = response.read().decode()
        assert "Volunteer flake rate" in page and "Weekly totals" in page
    finally:
        process.terminate()
        process.communicate(timeout=30)

"""Failures that explain themselves: a full disk, a read-only or damaged system database, a lost
snapshot pointer, a killed `headwater run`, stale download files, files other users can read.
Real faults only: a full disk is a real tmpfs filled to the brim (ENOSPC from the kernel), a
read-only database sits on a file system remounted read-only."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from demo_project import make_project, recent_runs_of

from headwater.config import load_project
from headwater.system import open_system_db
from headwater.warehouse import Warehouse


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB file system of its own, unmounted after the test."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "64m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path, leave_kb: int) -> Path:
    """Take all the disk's free space but ``leave_kb``: the next writes past that get ENOSPC."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave_kb * 1024))
    return filler


def headwater(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headwater.cli.main", *args], check=False, capture_output=True, text=True, timeout=timeout)


def _published(project) -> tuple[str, str]:
    snapshot = Warehouse(project.root, project.config.warehouse).current_snapshot()
    assert snapshot is not None
    return snapshot.name, hashlib.sha256(snapshot.read_bytes()).hexdigest()


def _set_system_url(project, url: str):
    path = project.root / "headwater.yml"
    data = yaml.safe_load(path.read_text())
    data["system"] = {"url": url}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_project(project.root)


# --- a full disk --------------------------------------------------------------------------------


@pytest.mark.parametrize("leave_kb", [300, 2500], ids=["full-in-sync", "full-in-publish"])
def test_a_full_disk_under_the_warehouse_fails_the_run_once_clearly(small_disk, tmp_path, leave_kb):
    """The system database elsewhere: the run is recorded as failed, with the folder and its free space.
    With 2.5 MB left the sync and dbt fit and the snapshot does not: DuckDB's DETACH then failed
    silently, leaving the tables in a .wal beside the snapshot, which was published empty."""
    project = make_project(small_disk / "demo", 2_000)
    project = _set_system_url(project, f"sqlite:///{tmp_path / 'system.db'}")
    assert headwater("run", "-p", str(project.root)).returncode == 0
    before = _published(project)

    _fill(small_disk, leave_kb=leave_kb)
    result = headwater("run", "-p", str(project.root))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "could not record" not in result.stderr, result.stderr
    warehouse = str(Warehouse(project.root, project.config.warehouse).folder)
    assert f"No space left on device at {warehouse}" in result.stderr and " MB free" in result.stderr
    assert "Fix the model" not in result.stderr
    assert result.stderr.count("No space left on device at") == 1, result.stderr  # printed once, by the live log; the summary points at it
    run = recent_runs_of(project)[0]
    assert run.status == "failed" and run.error.startswith(f"No space left on device at {warehouse}")
    assert _published(project) == before
    published = Warehouse(project.root, project.config.warehouse).published_dir
    assert sorted(p.name for p in published.iterdir()) == ["CURRENT", before[0]]  # nothing half-written left taking space


def test_a_read_only_warehouse_folder_is_named_with_its_fix_and_published_data_still_reads(small_disk, tmp_path):
    """The warehouse's folder on a file system mounted read-only (the system database elsewhere): a run
    and a sync cannot take the writer's lock there — said as such, exit 2, no traceback — and what was
    published still exports."""
    project = make_project(small_disk / "demo", 500)
    project = _set_system_url(project, f"sqlite:///{tmp_path / 'system.db'}")
    assert headwater("run", "-p", str(project.root)).returncode == 0
    exported = headwater("export", "flake_rate_weekly", "-p", str(project.root), "-o", "-").stdout
    folder = Warehouse(project.root, project.config.warehouse).folder
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        for command in (["run"], ["sync"]):
            result = headwater(*command, "-p", str(project.root))
            assert result.returncode == 2, (command, result.stderr)
            said = " ".join(result.stderr.split())
            assert f"The warehouse folder {folder} cannot be written" in said and "mounted read-only" in said, said
            assert "Fix:" in said and "Traceback" not in said and "bug" not in said, said
            assert said.count("cannot be written") == 1, said
        assert headwater("export", "flake_rate_weekly", "-p", str(project.root), "-o", "-").stdout == exported
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


def test_a_full_disk_under_everything_says_the_failure_could_not_be_recorded(small_disk):
    project = make_project(small_disk / "demo", 2_000)
    assert headwater("run", "-p", str(project.root)).returncode == 0
    before = _published(project)

    filler = _fill(small_disk, leave_kb=300)
    result = headwater("run", "-p", str(project.root))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "No space left on device at " in result.stderr and " MB free" in result.stderr
    assert "could not be recorded" in result.stderr  # said, since `headwater runs` cannot say it
    assert _published(project) == before

    filler.unlink()
    assert headwater("run", "-p", str(project.root)).returncode == 0
    latest, failed = recent_runs_of(project)[:2]
    assert latest.status == "success" and failed.status == "abandoned"


# --- a damaged snapshot pointer --------------------------------------------------------------------

from conftest_web import html_table, logged_in_client, publish_rows, synthetic_rows  # noqa: E402
from conftest_web import make_project as make_web_project  # noqa: E402


@pytest.fixture
def two_snapshots(tmp_path):
    """A project that published twice: run-000001 (scale 1), then run-000002 (scale 2, current)."""
    project = make_web_project(tmp_path / "project")
    publish_rows(project, synthetic_rows(1), "run-000001")
    publish_rows(project, synthetic_rows(2), "run-000002")
    return project


def _completed_total(project, *extra: str) -> tuple[subprocess.CompletedProcess[str], int | None]:
    result = headwater("export", "flake_rate_weekly", "-p", str(project.root), *extra, timeout=120)
    if result.returncode != 0:
        return result, None
    rows = csv.DictReader(io.StringIO(result.stdout.lstrip("\ufeff")))
    return result, sum(int(row["completed"]) for row in rows)


@pytest.mark.parametrize("damage", ["truncated", "emptied", "deleted"])
def test_a_damaged_pointer_falls_back_to_the_newest_intact_snapshot_and_says_so(two_snapshots, damage, caplog):
    project = two_snapshots
    warehouse = Warehouse(project.root, project.config.warehouse)
    current = warehouse.current_snapshot()
    _, expected = _completed_total(project)
    assert current.name == "run-000002" + ".duckdb" and warehouse.fallback is None
    {"truncated": lambda: warehouse.pointer.write_text("run-0000"), "emptied": lambda: warehouse.pointer.write_text(""), "deleted": warehouse.pointer.unlink}[damage]()

    fresh = Warehouse(project.root, project.config.warehouse)
    with caplog.at_level("WARNING", logger="headwater.warehouse"):
        assert fresh.current_snapshot() == current  # the current snapshot itself is intact: nothing is lost
    assert "newest intact published snapshot" in fresh.fallback and str(fresh.pointer) in fresh.fallback
    assert [r.getMessage() for r in caplog.records] == [fresh.fallback]
    fresh.current_snapshot()
    assert len(caplog.records) == 1  # logged once per state of the folder, not per request

    result, total = _completed_total(project)
    assert result.returncode == 0 and total == expected
    assert "Warning:" in result.stderr and "run-000002.duckdb" in result.stderr
    assert result.stderr.count("newest intact published snapshot") == 1, result.stderr  # said once


def test_a_deleted_current_snapshot_falls_back_to_the_previous_one_on_every_page(two_snapshots):
    project = two_snapshots
    warehouse = Warehouse(project.root, project.config.warehouse)
    (warehouse.published_dir / "run-000002.duckdb").unlink()
    truncated = warehouse.published_dir / "run-000003.duckdb"  # a newer file that is not a whole snapshot: skipped
    truncated.write_bytes((warehouse.published_dir / "run-000001.duckdb").read_bytes()[:5000])

    assert warehouse.current_snapshot().name == "run-000001.duckdb"
    result, total = _completed_total(project)
    assert result.returncode == 0 and total == sum(r["completed"] for r in synthetic_rows(1))
    assert "names 'run-000002.duckdb', which is not there" in result.stderr

    with logged_in_client(project) as client:
        page = client.get("/dashboards/flake_rate")
        assert page.status_code == 200 and "Nothing has been published" not in page.text
        assert 'id="published-fallback"' in page.text and "run-000001.duckdb" in page.text
        assert len(html_table(page.text, "chart-2")) > 1
        runs = client.get("/runs")
        assert 'id="published-fallback"' in runs.text

        publish_rows(project, synthetic_rows(3), "run-000004")  # the next successful run publishes afresh
        page = client.get("/dashboards/flake_rate")
        assert 'id="published-fallback"' not in page.text


# --- a read-only or damaged system database -----------------------------------------------------

from conftest_web import account  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from headwater.web import create_app  # noqa: E402


@pytest.fixture
def project_on_small_disk(small_disk):
    """A web project with an account, on a file system of its own (remounted read-write at the end,
    so the fixture can unmount it)."""
    project = make_web_project(small_disk / "project")
    publish_rows(project, synthetic_rows(), "run-000001")
    account(project)
    yield project
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


def test_a_read_only_system_database_is_named_with_its_fix(project_on_small_disk, small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    database = project_on_small_disk.root / ".headwater" / "system.db"
    for command in (["runs"], ["user", "list"], ["run"]):
        result = headwater(*command, "-p", str(project_on_small_disk.root))
        assert result.returncode == 2, (command, result.stderr)
        assert f"The system database {database} cannot be written" in result.stderr and "mounted read-only" in result.stderr
        assert "Fix: Remount it read-write" in result.stderr and "Traceback" not in result.stderr and "bug" not in result.stderr


def test_a_web_server_on_a_read_only_system_database_shows_an_error_page(project_on_small_disk, small_disk):
    """(Remounting read-only under a live server is refused while it holds the file open for writing;
    the app opens the database at its first request, as after a restart.)"""
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    database = project_on_small_disk.root / ".headwater" / "system.db"
    with TestClient(create_app(project_on_small_disk)) as client:
        for path in ("/login", "/"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 503, response.text
            assert f"The system database {database} cannot be written" in response.text and "Remount it read-write" in response.text
            assert "Something went wrong" not in response.text and "Traceback" not in response.text


def _damage_runs_table(database: Path) -> None:
    """Overwrite the root page of the runs table with garbage, as a bad sector or a torn copy would."""
    con = sqlite3.connect(database)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    finally:
        con.close()
    with open(database, "r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(os.urandom(page_size))


def _add_runs(project, count: int) -> None:
    open_system_db(project).close()  # created, schema and all
    con = sqlite3.connect(project.root / ".headwater" / "system.db")
    with con:
        con.executemany(
            "INSERT INTO runs (project, pipeline, status, trigger, started_at, finished_at, attempt, pid, error) VALUES (?, 'flake_rate', 'failed', 'schedule', '2026-01-01 00:00:00', '2026-01-01 00:01:00', 1, 1, ?)",
            [(project.config.name, "x" * 300) for _ in range(count)],
        )
    con.close()


def test_a_damaged_system_database_is_found_at_start_and_restored_from_a_backup(tmp_path):
    project = make_web_project(tmp_path / "project")
    account(project)
    _add_runs(project, 500)
    database = project.root / ".headwater" / "system.db"
    made = headwater("backup", "-p", str(project.root))
    assert made.returncode == 0, made.stderr
    copy = next((database.parent / "backups").glob("system-*.db"))
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and f"Backed up the system database to {copy}" in made.stderr

    _damage_runs_table(database)
    database.with_name("system.db.checked").unlink()  # found intact less than an hour ago: not checked again until then
    result = headwater("runs", "-p", str(project.root))
    assert result.returncode == 2, result.stderr
    assert f"The system database {database} is damaged" in result.stderr and "headwater backup" in result.stderr
    assert "Traceback" not in result.stderr

    for leftover in database.parent.glob("system.db-*"):
        leftover.unlink()
    shutil.copy(copy, database)
    restored = headwater("runs", "-p", str(project.root), "--json", "--limit", "1000")
    assert restored.returncode == 0, restored.stderr
    assert len(json.loads(restored.stdout)) == 500


def test_damage_found_while_serving_is_an_error_page_not_a_crash(tmp_path):
    project = make_web_project(tmp_path / "project")
    publish_rows(project, synthetic_rows(), "run-000001")
    _add_runs(project, 500)
    with logged_in_client(project, raise_server_exceptions=False) as client:
        assert client.get("/runs").status_code == 200
        _damage_runs_table(project.root / ".headwater" / "system.db")
        response = client.get("/runs")
        assert response.status_code == 503, response.text
        assert "is damaged" in response.text and "headwater backup" in response.text and "Something went wrong" not in response.text


def test_backup_refuses_to_overwrite_and_copies_while_a_run_writes(tmp_path):
    project = make_web_project(tmp_path / "project")
    account(project)
    target = tmp_path / "copies" / "system.db"
    assert headwater("backup", "-o", str(target), "-p", str(project.root)).returncode == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    again = headwater("backup", "-o", str(target), "-p", str(project.root))
    assert again.returncode == 2 and "exists already" in again.stderr
    con = sqlite3.connect(target)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM users").fetchone()[0] == 1
        assert not target.with_name("system.db-wal").exists()
    finally:
        con.close()


# --- XLSX scratch folders left by a killed process ----------------------------------------------

XLSX_WRITER = """
import sys
import duckdb
from headwater.publish.export import write_xlsx

reader = duckdb.connect().execute("SELECT range AS i, 'row ' || range AS s FROM range(100000000)").fetch_record_batch(32768)
write_xlsx(reader, sys.argv[1])
"""


def _writing_xlsx(tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A process writing a big XLSX, once its scratch folder exists."""
    script = tmp_path / "writer.py"
    script.write_text(XLSX_WRITER)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / name)], env={**os.environ, "TMPDIR": str(tmp_path)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(tmp_path.glob(f"headwater-xlsx-{process.pid}-*"))
        if found and any(found[0].iterdir()):
            return process, found[0]
        assert process.poll() is None, "the writer ended early"
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the writer never started its scratch folder")


def test_a_server_starting_removes_the_xlsx_scratch_of_killed_processes_only(tmp_path, monkeypatch):
    killed, left = _writing_xlsx(tmp_path, "killed.xlsx")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    live, kept = _writing_xlsx(tmp_path, "live.xlsx")  # another server's download in progress
    try:
        legacy = tmp_path / "headwater-xlsx-abcd1234"  # an older version's name: whose it is cannot be known
        legacy.mkdir()
        assert left.exists()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        create_app(make_web_project(tmp_path / "project"))
        assert not left.exists()
        assert kept.exists() and live.poll() is None and legacy.exists()
    finally:
        live.kill()
        live.wait()


# --- file modes ---------------------------------------------------------------------------------


def test_what_a_run_creates_only_its_owner_can_read(tmp_path):
    """Under the common umask 022: the system database and its WAL, the key, the warehouse, its
    snapshots and pointer, dbt's logs and the locks are 0600, their folders 0700."""
    project = make_project(tmp_path / "demo", 2_000)
    assert not (project.root / ".headwater").exists()
    loose = lambda: os.umask(0o022)  # noqa: E731 - what most systems start a login shell with
    secret = subprocess.run(
        [sys.executable, "-m", "headwater.cli.main", "secrets", "set", "api_token", "--value-stdin", "-p", str(project.root)],
        input="s3cret", check=False, capture_output=True, text=True, preexec_fn=loose, timeout=120,
    )
    assert secret.returncode == 0, secret.stderr
    run = subprocess.run([sys.executable, "-m", "headwater.cli.main", "run", "-p", str(project.root)], check=False, capture_output=True, text=True, preexec_fn=loose, timeout=600)
    assert run.returncode == 0, run.stderr

    private = project.root / ".headwater"
    seen = {p.relative_to(private).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [private, *private.rglob("*")]}
    for must in ("system.db", "secret.key", "warehouse/build.duckdb", "warehouse/published/CURRENT", "warehouse/.lock"):
        assert must in seen, sorted(seen)
    assert any(name.startswith("warehouse/published/run-") for name in seen) and any(name.startswith("dbt/") and name.endswith(".log") for name in seen)
    loose_ones = {name: oct(mode) for name, mode in seen.items() if mode & 0o077}
    assert loose_ones == {}, loose_ones
    folders = {name: oct(mode) for name, mode in seen.items() if (private / name).is_dir() and mode != 0o700}
    assert folders == {}, folders

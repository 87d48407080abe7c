"""The `headwater` command, run as a real subprocess: help, init, and clean user errors.

No pipeline runs here (test_pipeline.py does that); every command below returns in well under a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from cli_process import HEADWATER, cli_env, run_cli

from headwater.errors import ExitCode

COMMAND = HEADWATER

# Each command and words from its help text that say what it is for.
COMMANDS = {
    "init": "Create a project that runs at once",
    "demo": "flake-rate example",
    "run": "Run a pipeline",
    "runs": "Recent runs",
    "export": "Export a published table",
    "serve": "Serve the web app",
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return cli_env(env, NO_COLOR="1", PYTHONIOENCODING="utf-8", **extra)


def hw(*args: str | Path, cwd: Path, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run `headwater ARGS` in ``cwd``; ``columns`` widens the terminal (help text is boxed and wrapped)."""
    env = _env(COLUMNS=str(columns)) if columns else _env()
    return subprocess.run([*COMMAND, *map(str, args)], cwd=cwd, env=env, check=False, capture_output=True, text=True, encoding="utf-8", timeout=60)


def unwrapped(text: str) -> str:
    """Output with line breaks removed: the console wraps long lines at its width."""
    return text.replace("\n", "")


def assert_user_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == ExitCode.USER_ERROR, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "Error:" in result.stderr
    assert "Fix:" in result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A freshly initialised project (in-process: `init` itself is tested through the CLI below)."""
    from headwater.scaffold import init_project

    init_project(tmp_path / "proj", "proj")
    return tmp_path / "proj"


# --- help --------------------------------------------------------------------------------------


def test_app_help_lists_every_command(tmp_path: Path) -> None:
    result = hw("--help", cwd=tmp_path, columns=200)
    assert result.returncode == 0, result.stderr
    assert "Sync sources into a warehouse" in result.stdout
    for name in COMMANDS:
        assert f" {name} " in result.stdout, name


def test_no_arguments_shows_help_and_does_not_crash(tmp_path: Path) -> None:
    result = hw(cwd=tmp_path, columns=200)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Usage:" in result.stdout + result.stderr
    assert result.returncode in (0, ExitCode.USER_ERROR)


@pytest.mark.parametrize(("command", "purpose"), sorted(COMMANDS.items()))
def test_command_help(tmp_path: Path, command: str, purpose: str) -> None:
    result = hw(command, "--help", cwd=tmp_path, columns=200)
    assert result.returncode == 0, result.stderr
    assert purpose in result.stdout
    assert "Usage:" in result.stdout


def test_short_help_option(tmp_path: Path) -> None:
    result = hw("runs", "-h", cwd=tmp_path, columns=200)
    assert result.returncode == 0 and COMMANDS["runs"] in result.stdout


def test_version(tmp_path: Path) -> None:
    from headwater import __version__

    result = hw("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"headwater {__version__}"


def test_the_command_leaves_its_objects_to_the_os_at_exit(tmp_path: Path) -> None:
    """main() freezes the garbage collector's objects on the way out, so interpreter shutdown does
    not walk everything the imports made (~0.09 s of each command; docs/benchmarks.md)."""
    script = "import atexit, gc, sys\natexit.register(lambda: print('frozen', gc.get_freeze_count(), file=sys.stderr))\n"
    script += "sys.argv = ['headwater', '--version']\nfrom headwater.cli.main import main\nmain()\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    frozen = int(result.stderr.split("frozen")[-1].split()[0])
    assert frozen > 10_000  # the imported modules' objects


def test_installed_console_script_runs() -> None:
    """The ``headwater`` entry point is installed with the package (venv locally, pip install in CI)."""
    name = "headwater.exe" if os.name == "nt" else "headwater"
    schemes = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent), sysconfig.get_path("scripts", f"{os.name}_user")]
    candidates = [Path(folder) / name for folder in schemes]
    script = next((c for c in candidates if c.exists()), None)
    assert script is not None, f"no {name} script in {candidates}: is the package installed (pip install -e '.[test]')?"
    result = subprocess.run([str(script), "--version"], env=_env(), check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("headwater ")


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        pytest.param(["frobnicate"], "frobnicate", id="unknown-command"),
        pytest.param(["export"], "table", id="missing-argument"),
        pytest.param(["runs", "--limit", "0"], "limit", id="out-of-range-option"),
        pytest.param(["runs", "--limit", "many"], "limit", id="non-integer-option"),
        pytest.param(["export", "t", "--format", "pdf"], "pdf", id="bad-choice"),
        pytest.param(["runs", "--no-such-flag"], "--no-such-flag", id="unknown-option"),
    ],
)
def test_usage_errors_are_clean(tmp_path: Path, args: list[str], mentions: str) -> None:
    """Bad arguments are the user's mistake: exit 2 and a usage message, never a traceback."""
    result = hw(*args, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == ExitCode.USER_ERROR, (result.returncode, result.stderr)
    assert mentions in result.stderr


HUGE = "100000000000000000000000"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["runs", "--limit", HUGE], id="runs-limit"),
        pytest.param(["runs", "--limit", "1e23"], id="runs-limit-float"),
        pytest.param(["logs", HUGE], id="logs-run"),
        pytest.param(["logs", "1e23"], id="logs-run-float"),
        pytest.param(["logs", "0"], id="logs-run-zero"),
        pytest.param(["serve", "--port", "99999"], id="serve-port"),
        pytest.param(["serve", "--port", "-1"], id="serve-port-negative"),
        pytest.param(["demo", "--port", "70000", "--no-serve"], id="demo-port"),
        pytest.param(["demo", "--signups", HUGE, "--no-serve"], id="demo-signups"),
        pytest.param(["demo", "--seed", HUGE, "--no-serve"], id="demo-seed"),
        pytest.param(["org", "create", "x", "--demo", "--signups", HUGE], id="org-signups"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(project: Path, args: list[str]) -> None:
    """Every integer the command line takes has a range: past it is exit 2 naming the option, before
    anything runs (was 70: SQLite's and bind()'s overflow errors)."""
    result = hw(*args, cwd=project)
    assert result.returncode == ExitCode.USER_ERROR, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Invalid value for" in result.stderr, result.stderr
    assert not (project / "flake-demo").exists()


# --- init --------------------------------------------------------------------------------------


def test_init_creates_the_project_skeleton(tmp_path: Path) -> None:
    result = hw("init", "my_proj", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "my_proj"
    assert (root / "headwater.yml").is_file()
    assert (root / "dbt_project.yml").is_file()
    for layer in ("staging", "intermediate", "marts"):
        assert (root / "models" / layer).is_dir(), layer
    assert (root / "macros" / "generate_schema_name.sql").is_file()
    assert "name: my_proj" in (root / "headwater.yml").read_text()
    assert "{{name}}" not in (root / "headwater.yml").read_text()
    assert "my_proj" in result.stdout


def test_init_with_explicit_name_into_an_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = hw("init", "empty", "--name", "analytics", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "name: analytics" in (tmp_path / "empty" / "headwater.yml").read_text()


def test_init_derives_a_valid_name_from_the_folder(tmp_path: Path) -> None:
    result = hw("init", "my-data.platform", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = hw("runs", "--json", cwd=tmp_path / "my-data.platform")
    assert runs.returncode == 0, runs.stderr  # the generated name validates


def test_init_into_a_non_empty_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = hw("init", "busy", cwd=tmp_path)
    assert_user_error(result)
    assert "not empty" in result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # nothing was written


def test_init_over_an_existing_project_is_refused(project: Path) -> None:
    before = (project / "headwater.yml").read_text()
    result = hw("init", project, cwd=project.parent)
    assert_user_error(result)
    assert "exists already" in result.stderr
    assert (project / "headwater.yml").read_text() == before


def test_init_with_an_invalid_name_is_refused(tmp_path: Path) -> None:
    result = hw("init", "x", "--name", "bad-name", cwd=tmp_path)
    assert_user_error(result)
    assert "'bad-name' is not a valid project name" in result.stderr
    assert not (tmp_path / "x" / "headwater.yml").exists()


def test_init_with_a_warehouse_url_keeps_its_password_out_of_every_file(tmp_path: Path) -> None:
    password = "pw-Kq2x-warehouse"
    url = f"postgresql://hw:{password}@db.example:5432/acme?sslmode=require"
    result = hw("init", "wh", "--warehouse", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "wh"
    text = (root / "headwater.yml").read_text()
    assert "  type: postgres\n  url: ${secret:WAREHOUSE_URL}" in text and text.count("\nwarehouse:") == 1
    assert not [p for p in root.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]  # the system database holds it encrypted
    listed = hw("secrets", "list", "--json", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == ["WAREHOUSE_URL"]
    from headwater.system.orgs import open_project

    assert open_project(root).config.warehouse.url == url  # type: ignore[union-attr]


def test_init_with_a_warehouse_url_without_password_writes_it_as_is(tmp_path: Path) -> None:
    result = hw("init", "wh", "--warehouse", "postgresql://hw@db.example/acme", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  type: postgres\n  url: postgresql://hw@db.example/acme\n" in (tmp_path / "wh" / "headwater.yml").read_text()


def test_init_with_a_bigquery_url_writes_the_block_and_loads(tmp_path: Path) -> None:
    result = hw("init", "wh", "--warehouse", "bigquery://acme-data?location=EU&dataset_prefix=acme_&maximum_bytes_billed=1000000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from headwater.config import load_project

    settings = load_project(tmp_path / "wh").config.warehouse
    assert (settings.type, settings.project, settings.location, settings.dataset_prefix, settings.maximum_bytes_billed, settings.credentials) == (  # type: ignore[union-attr]
        "bigquery", "acme-data", "EU", "acme_", 1000000, None,
    )
    assert "# credentials: ${secret:BQ_SA_KEY}" in (tmp_path / "wh" / "headwater.yml").read_text()  # where a key goes, said in the file


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "not a warehouse URL Headwater knows"),
        ("postgresql://u@h", "the URL names no database"),
        ("bigquery://acme-data?dataset=x", "unknown option(s) dataset"),
        ("bigquery://user:key@acme-data", "not a BigQuery URL"),
    ],
)
def test_init_with_a_bad_warehouse_url_creates_nothing(tmp_path: Path, url: str, message: str) -> None:
    result = hw("init", "wh", "--warehouse", url, cwd=tmp_path)
    assert_user_error(result)
    assert message in result.stderr
    assert not (tmp_path / "wh").exists()


# --- outside a project, invalid projects --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["runs"], id="runs"),
        pytest.param(["runs", "--json"], id="runs-json"),
        pytest.param(["run"], id="run"),
        pytest.param(["export", "some_table"], id="export"),
        pytest.param(["serve", "--port", "1"], id="serve"),
    ],
)
def test_commands_outside_a_project_explain_the_fix(tmp_path: Path, args: list[str]) -> None:
    result = hw(*args, cwd=tmp_path)
    assert_user_error(result)
    err = unwrapped(result.stderr)
    assert "No headwater.yml" in err
    assert "headwater init" in err and "--project" in err
    assert result.stdout == ""


def test_invalid_project_file_names_file_and_line(project: Path) -> None:
    file = project / "headwater.yml"
    file.write_text("name: broken\nwarehouse:\n  type: duckdb\n  treads: 4\n")
    result = hw("runs", cwd=project)
    assert_user_error(result)
    err = unwrapped(result.stderr)
    assert f"{file.resolve()}:4:" in err
    assert "did you mean 'threads'?" in err


def test_invalid_yaml_names_file_and_line(project: Path) -> None:
    file = project / "headwater.yml"
    file.write_text("name: broken\nsources: [\n  a: b\n")
    result = hw("run", cwd=project)
    assert_user_error(result)
    assert "invalid YAML" in result.stderr
    assert f"{file.resolve()}:" in unwrapped(result.stderr)


def test_missing_env_var_is_a_clean_error(project: Path) -> None:
    file = project / "headwater.yml"
    file.write_text("name: p\nsystem:\n  url: postgresql+psycopg://u:${HW_CLI_TEST_UNSET_PW}@h/db\n")
    env = _env()
    env.pop("HW_CLI_TEST_UNSET_PW", None)
    result = subprocess.run([*COMMAND, "runs"], cwd=project, env=env, check=False, capture_output=True, text=True, timeout=60)
    assert_user_error(result)
    assert "HW_CLI_TEST_UNSET_PW" in result.stderr
    assert f"{file.resolve()}:3:" in unwrapped(result.stderr)


def test_error_locations_are_not_broken_across_lines(tmp_path: Path) -> None:
    """``FILE:LINE`` must stay on one line whatever the console width, so it can be clicked, copied
    and grepped from CI logs. Here the path is longer than the 80-column default of a non-terminal."""
    root = tmp_path / ("a_project_folder_with_a_long_name_" * 2) / "proj"
    root.mkdir(parents=True)
    file = root / "headwater.yml"
    file.write_text("name: p\nwarehouse:\n  treads: 4\n")
    result = hw("runs", "-p", root, cwd=tmp_path)
    assert_user_error(result)
    assert f"{file}:3: warehouse.treads" in result.stderr


# --- commands on a fresh project ----------------------------------------------------------------


def test_runs_json_on_a_fresh_project_is_an_empty_list(project: Path) -> None:
    result = hw("runs", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert (project / ".headwater" / "system.db").is_file()  # relative to the project, not the cwd


def test_runs_on_a_fresh_project_says_so(project: Path) -> None:
    result = hw("runs", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "No runs yet" in result.stdout


def test_runs_from_a_nested_folder_finds_the_project(project: Path) -> None:
    result = hw("runs", "--json", cwd=project / "models" / "staging")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert not (project / "models" / "staging" / ".headwater").exists()


def test_export_of_unknown_table_explains(project: Path) -> None:
    result = hw("export", "nosuchtable", cwd=project)
    assert_user_error(result)
    err = unwrapped(result.stderr)
    assert "Nothing has been published yet" in err or "nosuchtable" in err
    assert result.stdout == ""


def test_xlsx_export_without_output_file_is_refused(project: Path) -> None:
    result = hw("export", "t", "--format", "xlsx", cwd=project)
    assert_user_error(result)
    assert "-o FILE.xlsx" in result.stderr


def test_project_option_works_from_another_folder(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for flag in ("--project", "-p"):
        result = hw("runs", "--json", flag, project, cwd=elsewhere)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == []
    assert not (elsewhere / ".headwater").exists()
    export = hw("export", "nosuchtable", "--project", project, cwd=elsewhere)
    assert_user_error(export)
    assert "Nothing has been published yet" in unwrapped(export.stderr)


def test_project_option_with_a_relative_path(project: Path) -> None:
    sibling = project.parent / "sibling"
    sibling.mkdir()
    result = hw("runs", "--json", "-p", f"../{project.name}", cwd=sibling)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert (project / ".headwater" / "system.db").is_file()


def test_project_option_naming_a_missing_folder_is_an_error(project: Path) -> None:
    """``-p typo`` run from inside a project must not quietly use the enclosing project."""
    result = hw("runs", "--json", "--project", "no_such_folder", cwd=project)
    assert_user_error(result)
    assert "no_such_folder" in unwrapped(result.stderr)


def test_a_failed_runs_error_is_printed_once(project: Path) -> None:
    """The run's live log shows the error as it happens (dbt's, then the run's what and fix, without a
    Why that repeats dbt's); the closing summary points at it instead of printing it again."""
    (project / "models" / "marts" / "broken.sql").write_text("select no_such_column from (select 1 as x)\n")
    result = hw("run", cwd=project)
    assert result.returncode == ExitCode.RUN_FAILED, (result.returncode, result.stderr)
    output = unwrapped(result.stderr)
    assert output.count('Referenced column "no_such_column" not found') == 1 and output.count("Fix:") == 1, result.stderr
    assert "Run 1 failed" in output and output.count("headwater logs 1") == 1


def test_run_with_unknown_pipeline_name_is_a_user_error(project: Path) -> None:
    result = hw("run", "nightly", cwd=project)
    assert result.returncode == ExitCode.USER_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    assert "nightly" in result.stderr


def test_logs_redacts_a_password_in_a_log_line(project: Path) -> None:
    """`headwater logs` prints lines through the same redacting formatter as the run page: a line
    that reached the system database with a password in it (written before the value was known as
    a secret, or by an older Headwater) must not leak it on the terminal."""
    import datetime as dt

    from headwater.config.loader import load_project
    from headwater.system import Run, RunLog, open_system_db

    loaded = load_project(project)
    db = open_system_db(loaded)
    try:
        with db.session() as session:
            now = dt.datetime.now(dt.UTC)
            run = Run(project=loaded.config.name, pipeline="default", status="failed", trigger="cli", started_at=now, finished_at=now)
            session.add(run)
            session.flush()
            session.add(RunLog(run_id=run.id, at=now, level="error", message="could not connect to postgresql://etl:Hunter2Secret@db/crm (password=Hunter2Secret)"))
            session.commit()
            run_id = run.id
    finally:
        db.close()
    result = hw("logs", str(run_id), cwd=project, columns=300)
    assert result.returncode == 0, result.stderr
    assert "Hunter2Secret" not in result.stdout + result.stderr
    assert "postgresql://etl:***@db/crm" in result.stdout
    assert " error could not connect to" in result.stdout  # the line's time, level and text, as the run page prints it
def test_cli_children_run_the_code_under_test(tmp_path: Path) -> None:
    """tests/cli_process.py: a child started from an environment built from scratch imports the
    `headwater` these tests imported (a worktree's), not the one installed in the venv."""
    import headwater

    probe = [sys.executable, "-c", "import headwater; print(headwater.__file__)"]
    child = subprocess.run(probe, env=cli_env({"PATH": "/usr/bin:/bin"}), capture_output=True, text=True, timeout=60, check=True)
    assert Path(child.stdout.strip()).resolve() == Path(headwater.__file__).resolve()
    assert run_cli("--version", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}).stdout.strip() == f"headwater {headwater.__version__}"

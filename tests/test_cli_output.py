"""Output a person can read (issue #20), through the real `headwater` command: each message once,
full-width tables and lines into pipes and files, grouped `--help` with no `<bool>` and no breaks
mid-sentence, dbt SQL errors that point at the model's own file and line, progress as plain lines
when the output is not a terminal and as Rich progress on one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
from cli_process import HEADWATER, cli_env
from demo_project import make_project

from headwater.cli.helptext import PANELS
from headwater.cli.main import app
from headwater.errors import ExitCode

SIGNUPS = 300


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that sets a width or a terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TERMINAL_WIDTH", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return cli_env(env, NO_COLOR="1", PYTHONIOENCODING="utf-8", **extra)


def hw(*args: str | Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`headwater ARGS` with standard output and error both pipes (not a terminal)."""
    return subprocess.run([*HEADWATER, *map(str, args)], cwd=cwd, env=_env(**extra), check=False, capture_output=True, text=True, encoding="utf-8", timeout=180)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project with a few hundred sign-ups, not run yet (each test copies it)."""
    root = tmp_path_factory.mktemp("output") / "demo"
    make_project(root, SIGNUPS)
    return root


def copy_of(demo: Path, where: Path) -> Path:
    target = where / "project"
    shutil.copytree(demo, target)
    return target


# --- 2. full width into pipes and files ---------------------------------------------------------------


def test_a_long_line_into_a_pipe_is_not_broken(tmp_path: Path) -> None:
    result = hw("init", "fresh", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^Next: .*then `headwater run`\.$", result.stdout, re.MULTILINE), result.stdout


def test_a_table_into_a_file_has_every_header_in_full(demo: Path, tmp_path: Path) -> None:
    project = copy_of(demo, tmp_path)
    result = hw("sync", "campaign", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout, result.stdout
    header = next(line for line in result.stdout.splitlines() if " table " in line and " mode " in line)
    for column in ("read", "written", "deleted", "quarantined", "rows in raw", "rows/s", "seconds"):
        assert f" {column} " in header, (column, header)
    assert "signup_statuses" in result.stdout  # the longest table name, not cut to `signu…`


def test_columns_still_sets_the_width_of_a_pipe(demo: Path, tmp_path: Path) -> None:
    project = copy_of(demo, tmp_path)
    result = hw("sync", "campaign", cwd=project, COLUMNS="60")
    assert result.returncode == 0, result.stderr
    assert max(len(line.rstrip()) for line in result.stdout.splitlines()) <= 60, result.stdout


# --- 3. --help -----------------------------------------------------------------------------------------------


def every_command(command: object = None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    command = command or typer.main.get_command(app)
    found = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            found += every_command(sub, (*prefix, name))
    return found


def test_help_groups_every_command_in_four_panels(tmp_path: Path) -> None:
    result = hw("--help", cwd=tmp_path, COLUMNS="200")
    assert result.returncode == 0, result.stderr
    titles = re.findall(r"╭─ (\w+) ─", result.stdout)
    assert titles == ["Options", *PANELS], titles
    panel_of: dict[str, str] = {}
    current = ""
    for line in result.stdout.splitlines():
        if title := re.match(r"╭─ (\w+) ─", line):
            current = title.group(1)
        elif command := re.match(r"│ (\w[\w-]*) ", line):
            panel_of[command.group(1)] = current
    expected = {
        "Project": {"init", "demo"}, "Data": {"sync", "run", "export"}, "Operate": {"serve", "worker", "daemon", "logs", "runs", "backup"},
        "Admin": {"user", "org", "invite", "secrets", "warehouse"},
    }  # fmt: skip
    for panel, commands in expected.items():
        for name in commands:
            assert panel_of.get(name) == panel, (name, panel_of.get(name), panel)
    top = {c[0] for c in every_command() if len(c) == 1}
    assert not top - set(panel_of), f"commands outside the panels: {top - set(panel_of)}"
    assert set(panel_of.values()) <= set(PANELS), panel_of


def test_no_help_shows_bool_or_breaks_a_sentence(tmp_path: Path) -> None:
    """Every command's help, wide enough that no paragraph needs wrapping: no `<bool>`, and each
    paragraph of the command's docstring on one line."""
    root = typer.main.get_command(app)

    def docstring_of(path: tuple[str, ...]) -> str:
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        return command.help or ""

    commands = every_command()
    # One process runs `main()` (the `headwater` entry point) once per command: 34 processes took 20 s.
    script = (
        "import sys\nfrom headwater.cli.main import main\n"
        f"for path in {commands!r}:\n"
        "    print('\\x00', flush=True)\n"
        "    sys.argv = ['headwater', *path, '--help']\n"
        "    try:\n        main()\n    except SystemExit as exc:\n        print(f'\\x01{exc.code or 0}', flush=True)\n"
    )
    shown = subprocess.run([HEADWATER[0], "-c", script], cwd=tmp_path, env=_env(COLUMNS="1000"), check=False, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert shown.returncode == 0, shown.stderr
    chunks = shown.stdout.split("\x00\n")[1:]
    assert len(chunks) == len(commands), shown.stdout[-2000:]
    for path, chunk in zip(commands, chunks, strict=True):
        text, _, code = chunk.rpartition("\x01")
        assert code.strip() == "0", (path, chunk)
        result = subprocess.CompletedProcess([], 0, text, "")
        assert "<bool>" not in result.stdout, (path, result.stdout)
        lines = [" ".join(line.strip("│ ").split()) for line in result.stdout.splitlines()]
        for paragraph in re.split(r"\n\s*\n", docstring_of(path).split("\f")[0].strip()):
            if paragraph.lstrip().startswith(("-", "*", "\b")) or "\n " in paragraph:
                continue  # lists and examples keep their lines
            flat = " ".join(paragraph.split())
            assert any(flat in line for line in lines), (path, flat, result.stdout)


# --- 1 and 4. each message once; a model's SQL error at the model's own line -------------------------------

# Line 6 of the model's own file holds the bad column; dbt runs it 4 lines further down (its DDL and query comment).
PLAIN_BROKEN = """-- regions, cleaned

select
    cast(region_id as integer) as region_id,
    trim(name) as region_name,
    no_such_region_column
from {{ source('campaign', 'regions') }}
"""
# The bad column is written by Jinja: only the compiled file has that line.
JINJA_BROKEN = """{% set wanted = ['location_id',
                  'name'] %}
select
    cast(location_id as integer) as location_id,
    {{ 'no_such_location_' ~ 'column' }}
from {{ source('campaign', 'locations') }}
"""


def combined(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def test_a_failing_run_says_each_thing_once(demo: Path, tmp_path: Path) -> None:
    project = copy_of(demo, tmp_path)
    (project / "models" / "staging" / "stg_campaign__regions.sql").write_text(PLAIN_BROKEN)
    (project / "models" / "staging" / "stg_campaign__locations.sql").write_text(JINJA_BROKEN)
    with open(project / "dbt_project.yml", "a") as handle:  # a config path matching no model: dbt warns
        handle.write("    no_such_folder:\n      +materialized: view\n")
    result = hw("run", cwd=project)
    text = combined(result)
    assert result.returncode == ExitCode.RUN_FAILED, text
    run_id = re.search(r"Run (\d+) failed", text).group(1)  # type: ignore[union-attr]

    assert "ERROR:" not in text and "WARNING:" not in text, text  # no Python logging format
    assert "[WARNING]" not in text, text
    assert text.count("Configuration paths exist") == 1, text
    assert re.search(r"^ warn dbt: Configuration paths exist", result.stderr, re.MULTILINE), text  # labelled as dbt's
    for said in ('Referenced column "no_such_region_column" not found', '"no_such_location_column" not found'):
        assert text.count(said) == 1, (said, text)
    assert text.count("In the model's file: models/staging/stg_campaign__regions.sql, line 6 ") == 1, text
    compiled = ".headwater/dbt/target/compiled/flake_demo/models/staging/stg_campaign__locations.sql"
    line = [s.strip() for s in (project / compiled).read_text().splitlines()].index("no_such_location_column") + 1
    assert text.count(f"In the compiled SQL: {compiled}, line {line} (Jinja in the model models/staging/stg_campaign__locations.sql") == 1, text
    assert text.lower().count("published data was left as it was") == 1, text
    assert text.count(f"headwater logs {run_id}") == 1, text
    assert "`headwater runs`" not in text, text

    # The run's record keeps the whole error (the run page and alerts quote it), with the model's line.
    runs = hw("runs", "--json", cwd=project)
    assert "line 6 (the database's LINE" in runs.stdout and "no_such_region_column" in runs.stdout, runs.stdout


def test_a_bad_project_file_is_said_once(demo: Path, tmp_path: Path) -> None:
    project = copy_of(demo, tmp_path)
    config = project / "headwater.yml"
    config.write_text(config.read_text().replace("    type: sqlite\n", "    type: sqlitee\n", 1))
    for command in (["run"], ["sync"], ["runs"]):
        result = hw(*command, cwd=project)
        text = combined(result)
        assert result.returncode == ExitCode.USER_ERROR, (command, text)
        assert text.count("unknown type 'sqlitee'") == 1, (command, text)
        assert text.count("Error:") == 1 and text.count("Fix:") == 1, (command, text)


def test_a_failed_table_is_said_once(demo: Path, tmp_path: Path) -> None:
    project = copy_of(demo, tmp_path)
    config = project / "headwater.yml"
    config.write_text(config.read_text().replace("path: data/organizers.xlsx", "path: data/gone.xlsx"))
    result = hw("sync", "roster", cwd=project)
    text = combined(result)
    assert result.returncode == ExitCode.USER_ERROR, text
    assert text.count("gone.xlsx does not exist") == 1, text
    assert "table organizers: failed" in text, text  # the table's line says it failed; the error once, at the end

"""Output a person can read (issue #20), through the real `headwater` command: each message once,
full-width tables and lines into pipes and files, grouped `--help` with no `<bool>` and no breaks
mid-sentence, dbt SQL errors that point at the model's own file and line, progress as plain lines
when the output is not a terminal and as Rich progress on one."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import string
import struct
import subprocess
import tempfile
import termios
import time
from pathlib import Path

import pytest
import typer
from cli_process import HEADWATER, cli_env
from demo_project import make_project
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.cli.helptext import PANELS, reflow
from headwater.cli.main import app
from headwater.errors import ExitCode
from headwater.orchestrate.recorder import said_before
from headwater.transform.locate import locate

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
    assert re.search(r"^Next: cd fresh && headwater run, then .*`headwater serve`\.$", result.stdout, re.MULTILINE), result.stdout


def test_a_table_into_a_file_has_every_header_in_full(demo: Path, tmp_path: Path) -> None:
    project = copy_of(demo, tmp_path)
    result = hw("sync", "campaign", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout, result.stdout
    header = next(line for line in result.stdout.splitlines() if " table " in line and " mode " in line)
    for column in ("read", "written", "deleted", "quarantined", "rows in raw", "rows/s", "seconds"):
        assert f" {column} " in header, (column, header)
    assert "signup_statuses" in result.stdout  # the longest table name, not cut to `signu…`
    # 5. Not a terminal: each table's progress is a plain line, with no bar or escape code.
    assert re.search(r"^source campaign: table signup_statuses: .* rows read", result.stdout, re.MULTILINE), result.stdout
    assert "\x1b[" not in combined(result) and "0:00:0" not in combined(result), combined(result)


def test_columns_still_sets_the_width_of_a_pipe(tmp_path: Path) -> None:
    result = hw("init", "--help", cwd=tmp_path, COLUMNS="40")
    assert result.returncode == 0, result.stderr
    assert max(len(line.rstrip()) for line in result.stdout.splitlines()) <= 40, result.stdout
    words = " ".join(w for w in result.stdout.replace("│", " ").split())
    assert "Create a project that runs at once" in words, result.stdout  # wrapped, not cut


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

    # 5. Not a terminal: dbt's progress as plain lines, no progress bar or escape code.
    assert re.search(r"^ info \d+ of 39 OK created sql table model intermediate\.", result.stderr, re.MULTILINE), text
    assert "\x1b[" not in text and "0:00:0" not in text and " nodes" not in text, text  # no escape code, no bar's elapsed time

    # The run's record keeps the whole error (the run page and alerts quote it), with the model's line.
    runs = hw("runs", "--json", cwd=project)
    assert "line 6 (the database's LINE" in runs.stdout and "no_such_region_column" in runs.stdout, runs.stdout


def test_a_bad_project_file_is_said_once(demo: Path, tmp_path: Path) -> None:
    project = copy_of(demo, tmp_path)
    config = project / "headwater.yml"
    config.write_text(config.read_text().replace("    type: sqlite\n", "    type: sqlitee\n", 1))
    for command in (["run"], ["sync"]):
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


# --- 5. progress on a terminal ---------------------------------------------------------------------------


def on_terminal(*args: str, cwd: Path, seconds: float = 180) -> tuple[int, str]:
    """`headwater ARGS` with a pseudo-terminal (160 columns) as its standard input, output and error:
    its exit code and everything it wrote, escape codes and all."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in _env().items() if k != "NO_COLOR"} | {"TERM": "xterm-256color"}
    process = subprocess.Popen([*HEADWATER, *args], cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    written = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 1 << 16)
                except OSError:  # the last writer closed the terminal
                    break
                if not chunk:
                    break
                written += chunk
            elif process.poll() is not None:
                break
        else:
            raise AssertionError(f"`headwater {' '.join(args)}` did not end within {seconds:.0f}s:\n{written.decode(errors='replace')[-3000:]}")
        return process.wait(timeout=30), written.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def test_progress_on_a_terminal(demo: Path, tmp_path: Path) -> None:
    project = copy_of(demo, tmp_path)
    code, shown = on_terminal("run", cwd=project)
    assert code == 0, shown[-3000:]
    assert "━" in shown and "\x1b[" in shown, shown[-3000:]  # a Rich progress bar was drawn
    for step in ("sync:campaign", "sync:roster", "dbt:build", "publish"):
        assert step in shown, (step, shown[-3000:])
    assert "39/39 nodes" in shown, shown[-3000:]  # dbt's nodes done of all
    assert "succeeded" in shown

    target = tmp_path / "export.csv"
    code, shown = on_terminal("export", "flake_rate_weekly", "-o", str(target), cwd=project)
    assert code == 0, shown
    rows = len(target.read_text().splitlines()) - 1
    assert rows > 0 and re.search(rf"export flake_rate_weekly\s+{rows:,} rows", shown), (rows, shown)


# --- the pieces, over many inputs ----------------------------------------------------------------------------

WORD = st.text(alphabet=string.ascii_letters + string.digits + "`'(),.:;<>=_", min_size=1, max_size=12)
LINE = st.lists(WORD, min_size=1, max_size=8).map(" ".join)


@given(st.lists(st.lists(LINE, min_size=1, max_size=4), min_size=1, max_size=4))
def test_reflow_puts_each_paragraph_on_one_line(paragraphs: list[list[str]]) -> None:
    wrapped = "\n\n".join("\n".join(lines) for lines in paragraphs)
    assert reflow(wrapped) == "\n\n".join(" ".join(lines) for lines in paragraphs)


@given(st.lists(LINE, min_size=1, max_size=4), LINE)
def test_reflow_keeps_a_list_as_it_is(items: list[str], lead: str) -> None:
    text = f"{lead}\n\n" + "\n".join(f"- {item}" for item in items)
    assert reflow(text) == text


MESSAGE = st.lists(st.text(alphabet=string.ascii_lowercase, min_size=3, max_size=10), min_size=4, max_size=8).map(" ".join)  # 15+ characters: said_before trusts no shorter part


@given(st.lists(MESSAGE, min_size=1, max_size=4, unique=True), st.sampled_from([" ", "\n  ", "   "]))
def test_a_why_is_said_before_only_when_every_part_was_logged(messages: list[str], space: str) -> None:
    why = "; ".join(f"model m{i}: {m}" for i, m in enumerate(messages))
    logged = [f"Runtime Error in model m{i}\n  {m.replace(' ', space)}" for i, m in enumerate(messages)]
    assert said_before(why, " ".join(" ".join(line.split()) for line in logged))
    for left_out in range(len(messages)):
        if any(messages[left_out] in m for j, m in enumerate(messages) if j != left_out):
            continue  # said anyway, inside another message
        rest = [line for j, line in enumerate(logged) if j != left_out]
        assert not said_before(why, " ".join(" ".join(line.split()) for line in rest))


COLUMN = st.text(alphabet=string.ascii_lowercase + "_", min_size=4, max_size=12)


@given(st.lists(COLUMN, min_size=2, max_size=8, unique=True), st.data())
@settings(max_examples=50)
def test_locate_names_the_models_own_line(columns: list[str], data: st.DataObject) -> None:
    """A model whose Jinja above the bad line takes up lines of its own (removed when compiled): the
    database's LINE counts the SQL dbt ran; the note names the model's own line, found by its text."""
    bad = data.draw(st.integers(0, len(columns) - 1))
    jinja_lines = data.draw(st.integers(0, 3))
    raw = [*(["{% set unused = 1 %}"] * jinja_lines), "select", *(f"    {c}," for c in columns[:-1]), f"    {columns[-1]}", "from {{ ref('x') }}"]
    compiled = ["select", *(f"    {c}," for c in columns[:-1]), f"    {columns[-1]}", 'from "db"."main"."x"']
    preamble = data.draw(st.integers(0, 5))  # dbt's DDL and query comment before the compiled SQL
    quoted = compiled[1 + bad].strip()
    message = f"Runtime Error in model m (models/m.sql)\n  Binder Error: no such column\n\n  LINE {preamble + 2 + bad}:     {quoted}\n   ^"
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "models").mkdir()
        (root / "models" / "m.sql").write_text("\n".join(raw) + "\n")
        (root / "target" / "compiled" / "pkg" / "models").mkdir(parents=True)
        (root / "target" / "compiled" / "pkg" / "models" / "m.sql").write_text("\n".join(compiled) + "\n")
        note = locate(message, root, root / "target", root)
    assert note is not None and f"In the model's file: models/m.sql, line {jinja_lines + 2 + bad} " in note, (note, raw)

"""The docs, run: README.md's tour walked command by command on a fresh demo, and every example of
docs/dashboards.md loaded by the real loader and queried on the demo's published data (datasette's
documentation tests are the model: docs and code cannot drift apart).

The tour is every fenced ``bash`` block of README.md preceded by an HTML comment ``<!-- tour ... -->``.
Its commands run in order, as a reader types them after the Quickstart's ``headwater demo
./flake-demo`` (here with a few hundred sign-ups and without serving), each through the real CLI in
a process of its own: ``cd`` moves the walk, ``# ...`` is a comment, ``| reader`` sends the command's
output to a reader of the reader's own (the output must then not be empty), ``< FILE`` reads a file
the reader is presumed to have (`presume`). A command must exit 0 and print something; ``-o FILE``
must leave a file with rows beyond its header, ``--json`` must print JSON. Servers (`SERVERS`) are
started, waited for (a deadline, never a fixed sleep) and stopped with SIGTERM; commands that ask at a
terminal (`PROMPTED`) run in a pseudo-terminal and get their answers typed.

A line added to a tour block is tested from then on; a command that cannot run as printed fails
here, naming the line.
"""

from __future__ import annotations

import functools
import json
import os
import pty
import re
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pytest
import typer
import yaml
from cli_process import HEADWATER, cli_env, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import free_port

from headwater import dashboards
from headwater.cli.main import app as cli_app
from headwater.config import load_project
from headwater.config.charts import CHART_KINDS
from headwater.config.model import Dashboard, Filter
from headwater.publish import PublishedData
from headwater.warehouse import open_warehouse

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TOUR_BLOCK = re.compile(r"^<!-- tour\b.*?-->\s*\n```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
DEMO = "flake-demo"  # where the Quickstart's `headwater demo ./flake-demo` puts the demo
COMMAND_SECONDS = 180.0
SERVER_SECONDS = 60.0
ANSWER = "tour-answer-7f3c9e1d"  # typed at every prompt: a password, a secret's value


# --- the tour, as printed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    line: str  # as printed, without its comment
    words: tuple[str, ...]  # after `headwater` (or after `cd`)
    cd: bool = False
    piped: bool = False  # `| reader`: the command's standard output is what the reader gets
    stdin: str | None = None  # `< FILE`
    error: str | None = None  # why the line cannot be run as it is written

    @property
    def option_values(self) -> dict[str, str]:
        """``-o FILE`` and the like: each option's value (the word after it)."""
        return {word: value for word, value in zip(self.words, self.words[1:], strict=False) if word.startswith("-")}


def tour_lines(text: str) -> list[str]:
    """The command lines of the tour blocks, in order: continuation lines joined, blank and
    comment-only lines left out."""
    blocks = TOUR_BLOCK.findall(text)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


OPERATORS = "|<>;&"


def shell_words(line: str) -> tuple[list[tuple[str, bool]], str]:
    """The line as sh reads it: its words (quotes and backslashes resolved) and operators, each
    with whether it is an operator (a quoted ``"|"`` is a word), and the line without its comment."""
    tokens: list[tuple[str, bool]] = []
    word: list[str] = []
    quoted = False  # the word has quotes: '' is a word
    state, at = "", 0

    def end_word() -> None:
        nonlocal word, quoted
        if word or quoted:
            tokens.append(("".join(word), False))
        word, quoted = [], False

    while at < len(line):
        ch = line[at]
        if state == "'":
            if ch == "'":
                state = ""
            else:
                word.append(ch)
        elif state == '"':
            if ch == '"':
                state = ""
            elif ch == "\\" and line[at + 1 : at + 2] in ('"', "\\", "$", "`"):
                word.append(line[at + 1])
                at += 1
            else:
                word.append(ch)
        elif ch in "'\"":
            state, quoted = ch, True
        elif ch == "\\" and at + 1 < len(line):
            word.append(line[at + 1])
            at += 1
        elif ch.isspace():
            end_word()
        elif ch == "#" and not word and not quoted:
            return tokens, line[:at].strip()
        elif ch in OPERATORS:
            end_word()
            run = len(line[at:]) - len(line[at:].lstrip(OPERATORS))
            tokens.append((line[at : at + run], True))
            at += run - 1
        else:
            word.append(ch)
        at += 1
    if state:
        raise ValueError(f"the tour's line {line!r} has a quote that is not closed")
    end_word()
    return tokens, line.strip()


def parse(line: str) -> Step:
    tokens, text = shell_words(line)
    operators = [word for word, operator in tokens if operator]
    piped = operators[:1] == ["|"]
    command = tokens[: tokens.index(("|", True))] if piped else tokens
    stdin = None
    if ("<", True) in command:
        at = command.index(("<", True))
        if at + 1 >= len(command) or command[at + 1][1]:
            raise ValueError(f"the tour's line {line!r} has < without a file")
        stdin, command = command[at + 1][0], command[:at] + command[at + 2 :]
    unsupported = [word for word, operator in command if operator]
    if unsupported:
        raise ValueError(f"the tour's line {line!r} uses {unsupported[0]}, which tests/test_docs_run.py does not run: write one command per line")
    words = [word for word, _ in command]
    if words[:1] == ["cd"] and len(words) == 2:
        return Step(text, tuple(words[1:]), cd=True)
    if words[:1] != ["headwater"]:
        raise ValueError(f"the tour's line {line!r} is not a headwater command or cd: the tour runs only those")
    return Step(text, tuple(words[1:]), piped=piped, stdin=stdin)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=12), max_size=6), st.sampled_from(["", "  # a comment | with < operators"]))
def test_tour_lines_read_as_sh_reads_them(words: list[str], comment: str) -> None:
    """Whatever the words (quotes, spaces, '#', operators inside them), a line written with sh's
    quoting gives them back; an unquoted | or < is a pipe or a redirection."""
    line = shlex.join(["headwater", *words])
    assert parse(line + comment) == Step(line, tuple(words))
    assert parse(f"{line} | reader{comment}") == Step(f"{line} | reader", tuple(words), piped=True)
    assert parse(f"{line} < 'my file'{comment}") == Step(f"{line} < 'my file'", tuple(words), stdin="my file")
    for operator in (">", ">>", ";", "&&", "&"):
        with pytest.raises(ValueError, match="one command per line"):
            parse(f"{line} {operator} other")


def step(line: str) -> Step:
    """The line's step, or one that fails with the reason it cannot run (the other lines still do)."""
    try:
        return parse(line)
    except ValueError as exc:
        return Step(line, (), error=str(exc))


STEPS = [step(line) for line in tour_lines(README.read_text())]


def test_the_readme_has_a_tour() -> None:
    """The walk below is only as good as its markers: a block that loses its comment is no longer run."""
    text = README.read_text()
    assert len(TOUR_BLOCK.findall(text)) >= 2, "README.md's tour blocks lost their <!-- tour --> comments"
    commands = {s.words[0] for s in STEPS if s.words and not s.cd}
    assert {"run", "runs", "logs", "export", "serve", "sync", "secrets"} <= commands, sorted(commands)


# --- walking it -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    step: Step
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def report(self) -> str:
        return f"`{self.step.line}` (exit code {self.code}, {self.seconds:.1f}s):\n  " + "\n  ".join(self.problems) + f"\n--- stdout:\n{self.stdout[-2000:]}\n--- stderr:\n{self.stderr[-2000:]}"


def presume(demo: Path) -> None:
    """What the tour's reader is presumed to have besides the demo: a dbt project of their own next
    to it (`--dbt-project ../analytics`, here the demo's own) and a service account's key file."""
    analytics = demo.parent / "analytics"
    analytics.mkdir()
    for name in ("dbt_project.yml", "models", "macros", "snapshots", "tests"):
        source = demo / name
        if source.is_dir():
            shutil.copytree(source, analytics / name)
        elif source.exists():
            shutil.copy(source, analytics / name)
    (demo / "key.json").write_text(json.dumps({"type": "service_account", "project_id": "tour", "private_key": "not-a-real-key-but-long-enough"}))


def run_plain(argv: list[str], cwd: Path, env: dict[str, str], stdin: Path | None) -> tuple[int | None, str, str]:
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as source:
        try:
            done = subprocess.run(argv, cwd=cwd, env=env, stdin=source, capture_output=True, timeout=COMMAND_SECONDS, check=False)
        except subprocess.TimeoutExpired as exc:
            return None, _text(exc.stdout), _text(exc.stderr) + f"\n(still running after {COMMAND_SECONDS:.0f}s: a server? add it to SERVERS)"
    return done.returncode, _text(done.stdout), _text(done.stderr)


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def run_in_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int | None, str, str]:
    """The command with a pseudo-terminal for its input and output (and no controlling terminal, so
    it never reaches the one pytest runs in), typing `ANSWER` at each prompt (output ending in ': ')."""
    main, other = pty.openpty()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=other, stdout=other, stderr=other, start_new_session=True)
    os.close(other)
    output, answered = b"", 0
    deadline = time.monotonic() + COMMAND_SECONDS
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the command closed the terminal (it exited)
                break
            if not chunk:
                break
            output += chunk
            if output[answered:].rstrip(b"\r\n").endswith(b": "):
                os.write(main, ANSWER.encode() + b"\n")
                answered = len(output)
        else:
            process.kill()
            return None, "", output.decode(errors="replace") + f"\n(no end after {COMMAND_SECONDS:.0f}s)"
        return process.wait(timeout=30), "", output.decode(errors="replace")
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
            process.wait()


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def serve_ready(argv: list[str]) -> tuple[list[str], Callable[[str], bool]]:
    """`headwater serve` on a free port (the README's 8080 may be taken on a test machine): ready
    when its /healthz answers."""
    words = list(argv)
    if "--port" in words:
        words[words.index("--port") + 1] = str(port := free_port())
    else:
        words += ["--port", str(port := free_port())]
    return words, lambda _output: healthz(port)


def worker_ready(argv: list[str]) -> tuple[list[str], Callable[[str], bool]]:
    """`headwater worker`: ready once it has said what it schedules."""
    return argv, lambda output: "Schedule:" in output or "No pipeline has a schedule" in output


# Commands that run until stopped: how each is started and known to be ready. They are then stopped
# with SIGTERM, as a service manager does, and must stop cleanly (see `problems`).
SERVERS: dict[str, Callable[[list[str]], tuple[list[str], Callable[[str], bool]]]] = {"serve": serve_ready, "worker": worker_ready}
# Commands that ask at a terminal unless told to read standard input (their flag for it).
# `headwater shell` reads statements from standard input when it is not a terminal: one a person would type.
TYPED = {"shell": "select count(*) as signups from raw_campaign.signups;\n"}
PROMPTED = {"user add": "--password-stdin", "secrets set": "--value-stdin"}


def run_server(argv: list[str], cwd: Path, env: dict[str, str], ready: Callable[[str], bool]) -> tuple[int | None, str, str]:
    """Start the server, wait until ``ready`` says so from its output, stop it with SIGTERM."""
    with tempfile.TemporaryFile() as sink:

        def output() -> str:
            return os.pread(sink.fileno(), os.fstat(sink.fileno()).st_size, 0).decode(errors="replace")

        process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_SECONDS
            while not ready(output()):
                if process.poll() is not None:
                    return process.returncode, output(), f"(exited with {process.returncode} before it was ready)"
                if time.monotonic() > deadline:
                    return None, output(), f"(not ready within {SERVER_SECONDS:.0f}s)"
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=SERVER_SECONDS)
            except subprocess.TimeoutExpired:
                return None, output(), f"(did not stop within {SERVER_SECONDS:.0f}s of SIGTERM)"
            return code, output(), ""
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_step(step: Step, cwd: Path, env: dict[str, str]) -> Outcome:
    argv = [*HEADWATER, *step.words]
    outcome = Outcome(step)
    if step.error:
        outcome.problems = [step.error]
        return outcome
    name = step.words[0] if step.words else ""
    prompted = PROMPTED.get(" ".join(step.words[:2]))
    if name in SERVERS:
        argv, ready = SERVERS[name](argv)
        outcome.code, outcome.stdout, outcome.stderr = run_server(argv, cwd, env, ready)
    elif prompted and prompted not in step.words:
        outcome.code, outcome.stdout, outcome.stderr = run_in_terminal(argv, cwd, env)
    elif name in TYPED and not step.stdin:  # a prompt: what a person would type, fed on standard input
        typed = cwd / f".tour-{name}.sql"
        typed.write_text(TYPED[name])
        outcome.code, outcome.stdout, outcome.stderr = run_plain(argv, cwd, env, typed)
    else:
        outcome.code, outcome.stdout, outcome.stderr = run_plain(argv, cwd, env, cwd / step.stdin if step.stdin else None)
    outcome.problems = list(problems(step, outcome, cwd))
    return outcome


def problems(step: Step, outcome: Outcome, cwd: Path) -> Iterator[str]:
    # A server stopped by SIGTERM may exit 0 or die of the signal it was sent, which service managers
    # count as a clean stop too: uvicorn (>= 0.29) raises the signal again after its graceful shutdown.
    stopped = {0, -signal.SIGTERM} if step.words[:1] and step.words[0] in SERVERS else {0}
    if outcome.code not in stopped:
        yield f"exit code {outcome.code}, not 0"
        return
    if not (outcome.stdout + outcome.stderr).strip():
        yield "printed nothing"
    if step.piped and not outcome.stdout.strip():
        yield "sends nothing to the reader it is piped to"
    if "--json" in step.words:
        try:
            json.loads(outcome.stdout)
        except ValueError as exc:
            yield f"--json printed no JSON: {exc}"
    if re.search(r"\bWrote 0 rows\b", outcome.stdout + outcome.stderr):
        yield "wrote no rows: an example that shows nothing teaches nothing"
    target = step.option_values.get("-o") or step.option_values.get("--output")
    if target == "-":
        if len(outcome.stdout.splitlines()) < 2:
            yield "-o - wrote no row beyond the header to standard output"
    elif target:
        yield from file_problems(cwd / target)


def file_problems(path: Path) -> Iterator[str]:
    if not path.is_file() or path.stat().st_size == 0:
        yield f"left no file {path.name}"
    elif path.suffix == ".xlsx":
        rows = sum(sheet.max_row for sheet in openpyxl.load_workbook(path, read_only=True).worksheets)
        if rows < 2:
            yield f"{path.name} has no row beyond the header"
    elif len(path.read_text(errors="replace").splitlines()) < 2:
        yield f"{path.name} has no row beyond the header"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Quickstart's demo (`headwater demo ./flake-demo`), small and not served."""
    root = tmp_path_factory.mktemp("tour")
    built = run_cli("demo", f"./{DEMO}", "--no-serve", "--signups", "300", cwd=root, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    return root / DEMO


@pytest.fixture(scope="module")
def walk(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    """Every step of the tour, run in order from where the Quickstart leaves the reader."""
    presume(demo)
    runtime = tmp_path_factory.mktemp("runtime")  # `headwater daemon start`'s socket: this walk's own
    runtime.chmod(0o700)
    env = cli_env(HEADWATER_RUNTIME_DIR=str(runtime))
    env.pop("HEADWATER_SECRET_KEY", None)
    cwd, outcomes = demo.parent, []
    try:
        for step in STEPS:
            if step.cd:
                cwd = (cwd / step.words[0]).resolve()
                outcomes.append(Outcome(step, 0, problems=[] if cwd.is_dir() else [f"no folder {cwd}"]))
                continue
            started = time.monotonic()
            outcomes.append(run_step(step, cwd, env))
            outcomes[-1].seconds = time.monotonic() - started
    finally:
        subprocess.run([*HEADWATER, "daemon", "stop"], cwd=demo, env=env, capture_output=True, timeout=60, check=False)
    return outcomes


@pytest.mark.parametrize("index", range(len(STEPS)), ids=[s.line for s in STEPS])
def test_the_tour_runs_as_printed(walk: list[Outcome], index: int) -> None:
    outcome = walk[index]
    assert not outcome.problems, outcome.report()


# --- docs/dashboards.md -----------------------------------------------------------------------------

DASHBOARDS_DOC = ROOT / "docs" / "dashboards.md"
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
# The README's own dashboard example is the part of a file below its title and table.
README_DASHBOARD_HEAD = "title: README.md's example\ntable: flake_rate_weekly\n"
EXAMPLES = {
    **{f"docs-dashboards.md block {n}": text for n, text in enumerate(YAML_BLOCK.findall(DASHBOARDS_DOC.read_text()), start=1)},
    **{f"README.md block {n}": README_DASHBOARD_HEAD + text for n, text in enumerate(YAML_BLOCK.findall(README.read_text()), start=1) if re.search(r"^charts:", text, re.MULTILINE)},
}


def load_example(root: Path, text: str) -> Dashboard:
    """``text`` as ``dashboards/example.yml`` of a project of its own, through the loader every
    command uses (line-accurate errors and all)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "headwater.yml").write_text("name: docs_example\n")
    (root / "dashboards").mkdir(exist_ok=True)
    (root / "dashboards" / "example.yml").write_text(text)
    return load_project(root).config.dashboards["example"]


def test_docs_dashboards_has_examples() -> None:
    assert any(name.startswith("README") for name in EXAMPLES), "README.md's dashboard example is gone"
    kinds = {chart.get("type") for text in EXAMPLES.values() for chart in yaml.safe_load(text)["charts"]}
    assert kinds == set(CHART_KINDS), f"docs/dashboards.md shows no example of {sorted(set(CHART_KINDS) - kinds)}"
    filters = {f.get("type", "multi") for text in EXAMPLES.values() for f in yaml.safe_load(text).get("filters", [])}
    assert filters == set(typing.get_args(Filter.model_fields["type"].annotation)), filters


@pytest.mark.parametrize("example", EXAMPLES)
def test_docs_dashboards_examples_load(example: str, tmp_path: Path) -> None:
    load_example(tmp_path, EXAMPLES[example])  # raises ConfigError naming the line when one does not validate


@pytest.mark.parametrize("example", EXAMPLES)
def test_docs_dashboards_examples_run_on_the_demo(example: str, demo: Path, tmp_path: Path) -> None:
    """Each example's charts, queried on the demo's published data as a page does: with no filter
    picked (every chart shows rows), then with a value picked for every filter."""
    dashboard = load_example(tmp_path, EXAMPLES[example])
    loaded = load_project(demo)
    data = PublishedData(open_warehouse(demo, loaded.config.warehouse))
    try:
        picked: dict[str, list[str]] = {}
        for spec in dashboard.filters:
            if spec.type == "date_range":
                low, high = dashboards.date_bounds(data, dashboard, spec.key)
                assert low is not None and high is not None, spec
                picked |= {f"{spec.key}_from": [low.isoformat()], f"{spec.key}_to": [high.isoformat()]}
            else:
                options = dashboards.filter_options(data, dashboard, spec.key)
                assert options, f"filter {spec.key} offers nothing"
                picked[spec.key] = options[:1]
        for selections in ({}, picked):
            for chart in dashboard.charts:
                result = dashboards.fetch(data, chart, dashboards.chart_query(data, dashboard, chart, selections), 10_000)
                assert result.rows or selections, f"chart {chart.title!r} shows no rows with no filter picked"
                if not selections and chart.kind.headline:
                    assert result.rows[0][0] is not None or chart.where, f"KPI {chart.title!r} has no value over every row"
    finally:
        data.close()


# --- every command the docs show --------------------------------------------------------------------

SHOWN = re.compile(r"(?:`|^\s*)(headwater [^`\n#|;&<>]*)", re.MULTILINE)
PLACEHOLDERS = re.compile(r"^(?:[A-Z][A-Z_]*|\.\.\.|…)$")  # headwater COMMAND --help, headwater user ...


def shown_commands() -> Iterator[tuple[str, str]]:
    """Each `headwater ...` the README and docs/*.md show (in code spans and code blocks), with its file."""
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for match in SHOWN.finditer(path.read_text()):
            yield path.name, match.group(1).strip()


@functools.cache
def cli_tree() -> typing.Any:
    """The CLI's click commands (building them takes ~50 ms: once)."""
    return typer.main.get_command(cli_app)


def command_problem(text: str) -> str | None:
    """Why ``text`` would not run: a command or an option that does not exist (None: both do)."""
    try:
        words = shlex.split(text)[1:]
    except ValueError:
        return None  # a span cut at a quote: not a whole command
    command = cli_tree()
    at = 0
    while hasattr(command, "commands") and at < len(words) and words[at] in command.commands:
        command, at = command.commands[words[at]], at + 1
    if hasattr(command, "commands") and at < len(words) and not words[at].startswith("-") and not PLACEHOLDERS.match(words[at]):
        return f"there is no command {' '.join(['headwater', *words[: at + 1]])!r}"
    if (getattr(command, "context_settings", None) or {}).get("ignore_unknown_options"):  # `headwater dbt ARGS...`: the rest is dbt's
        return None
    options = {"--help", *(o for p in command.params for o in (*p.opts, *p.secondary_opts))}
    unknown = [w.split("=", 1)[0] for w in words[at:] if w.startswith("-") and w != "-" and w.split("=", 1)[0] not in options]
    return f"{' '.join(['headwater', *words[:at]])} has no option {', '.join(unknown)}" if unknown else None


def test_every_command_the_docs_show_exists() -> None:
    """The docs' commands outside the tour cannot all be run here (servers, other machines), but each
    names a real command and only options it has."""
    shown = list(shown_commands())
    assert len(shown) > 50, "the pattern for commands in the docs no longer finds them"
    wrong = [f"{name}: `{text}`: {problem}" for name, text in shown if (problem := command_problem(text))]
    assert not wrong, "\n".join(wrong)

"""`headwater init`: a new project runs green at once, `--from-demo` gives the full example, and the
mistakes a newcomer makes in headwater.yml (a `{}` left above the example, a source type that does
not read its file) get one message saying what to change. Through the real CLI, as a user types it."""

from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest
from cli_process import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warehouses import KINDS

from headwater.config import load_project
from headwater.config.filetypes import SUFFIXES
from headwater.errors import ConfigError, ExitCode, HeadwaterError
from headwater.scaffold import BARE, TEMPLATE, init_project

MART = "hours_by_region"


def hw(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, env=_plain_env(), timeout=timeout)


def _plain_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return env | {"NO_COLOR": "1", "PYTHONIOENCODING": "utf-8", "COLUMNS": "400"}


def expected_mart(root: Path) -> dict[str, tuple[int, int, float]]:
    """hours_by_region computed from the project's own CSV in Python, as its rules and models say:
    regions trimmed and in title case; per region the distinct volunteers, the shifts and the hours."""
    volunteers: dict[str, set[str]] = defaultdict(set)
    shifts: dict[str, int] = defaultdict(int)
    hours: dict[str, float] = defaultdict(float)
    with open(root / "data" / "shifts.csv", newline="") as file:
        for row in csv.DictReader(file):
            region = " ".join(row["Region"].split()).title()
            volunteers[region].add(row["Volunteer"].strip())
            shifts[region] += 1
            hours[region] += float(row["Hours"])
    return {region: (len(volunteers[region]), shifts[region], hours[region]) for region in volunteers}


def exported(text: str) -> dict[str, tuple[int, int, float]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and list(rows[0]) == ["region", "volunteers", "shifts", "hours"], text
    return {row["region"]: (int(row["volunteers"]), int(row["shifts"]), float(row["hours"])) for row in rows}


# --- a new project runs at once ------------------------------------------------------------------


def test_init_then_run_publishes_the_example_mart_and_export_prints_it(tmp_path: Path) -> None:
    created = hw("init", "first", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    root = tmp_path / "first"
    assert "cd first && headwater run" in created.stdout
    for layer in ("staging", "intermediate", "marts"):
        assert list((root / "models" / layer).glob("*.sql")), layer  # a model in each folder dbt_project.yml configures

    ran = hw("run", cwd=root)
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    assert f"published {MART}" in ran.stdout
    said = ran.stdout + ran.stderr
    assert "Configuration paths exist" not in said and "unused configuration paths" not in said.lower()
    assert " warn " not in said  # nothing to warn about in a new project

    export = hw("export", MART, cwd=root)
    assert export.returncode == 0, export.stderr
    want = expected_mart(root)
    assert exported(export.stdout) == want

    # The dashboard is over the mart: its filter works on the published table, as its downloads do.
    region = sorted(want)[0]
    filtered = hw("export", MART, "-d", MART, "--filter", f"region={region}", cwd=root)
    assert filtered.returncode == 0, filtered.stderr
    assert exported(filtered.stdout) == {region: want[region]}
    # And the web app shows the dashboard: its table chart (the fourth) holds the mart's numbers.
    from conftest_web import html_table, logged_in_client

    project = load_project(root)
    with logged_in_client(project, "viewer") as client:
        page = client.get(f"/dashboards/{MART}")
    assert page.status_code == 200, page.text[-2000:]
    table = html_table(page.text, "chart-3")
    assert table[0] == ["region", "volunteers", "shifts", "hours"]
    assert {row[0]: (int(row[1]), int(row[2]), float(row[3].replace(",", ""))) for row in table[1:]} == want


def test_the_templates_hold_no_hidden_files_and_every_file_explains_itself() -> None:
    """A wheel leaves out hidden files (.gitkeep): what init writes must not depend on one. And every
    file a newcomer opens starts by saying what it is for."""
    for template in (TEMPLATE, BARE):
        files = [p for p in template.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert files
        assert not [p for p in files if any(part.startswith(".") for part in p.relative_to(template).parts)]
        for path in files:
            if path.suffix in (".yml", ".sql"):
                first = path.read_text().lstrip().splitlines()[0]
                assert first.startswith(("#", "--", "{#")), f"{path.relative_to(template)} starts without a comment: {first}"


def test_init_with_an_existing_dbt_project_writes_no_example(tmp_path: Path) -> None:
    (tmp_path / "analytics").mkdir()
    (tmp_path / "analytics" / "dbt_project.yml").write_text("name: analytics\nprofile: analytics\nversion: '1.0'\nconfig-version: 2\n")
    init_project(tmp_path / "platform", dbt_project=tmp_path / "analytics")
    root = tmp_path / "platform"
    assert sorted(p.name for p in root.iterdir()) == [".gitignore", "dashboards", "headwater.yml"]
    config = load_project(root).config
    assert (config.sources, config.pipelines, config.dashboards) == ({}, {}, {})


def test_a_new_organisations_project_is_the_example_too(tmp_path: Path) -> None:
    """`headwater org create` says `headwater run -p FOLDER` next: its project has something to run."""
    created = hw("org", "create", "acme", "--install", tmp_path / "inst", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    folder = tmp_path / "inst" / "orgs" / "acme"
    assert f"headwater run -p {folder.resolve()}" in created.stdout
    config = load_project(folder).config
    assert (list(config.sources), list(config.pipelines), list(config.dashboards)) == (["shifts"], ["daily"], [MART])
    assert config.system.url != "sqlite:///.headwater/system.db"  # its runs go to the install's database


def test_a_project_without_the_example_has_the_folders_and_nothing_to_run(tmp_path: Path) -> None:
    """init_project without ``example`` (what tests build on): the layers and no source."""
    init_project(tmp_path / "empty", "empty")
    root = tmp_path / "empty"
    for folder in ("models/staging", "models/intermediate", "models/marts", "dashboards"):
        assert (root / folder).is_dir() and not any((root / folder).iterdir()), folder
    assert (root / "macros" / "generate_schema_name.sql").is_file()
    config = load_project(root).config
    assert (config.name, config.sources, config.pipelines, config.dashboards) == ("empty", {}, {}, {})


@pytest.mark.parametrize("warehouse_kind", KINDS[1:], indirect=True)  # DuckDB: the command-line test above
def test_the_example_builds_on_the_server_warehouses(tmp_path: Path, warehouse: object) -> None:
    """The example's SQL is the warehouses' common ground (`init --warehouse`): the same mart on
    PostgreSQL and BigQuery as on DuckDB."""
    from headwater.orchestrate import run_pipeline
    from headwater.warehouse import open_warehouse

    init_project(tmp_path / "ex", example=True)
    project = warehouse.apply(load_project(tmp_path / "ex"))  # type: ignore[attr-defined]
    result = run_pipeline(project)
    assert result.published == {MART: 4}
    snapshot = open_warehouse(project.root, project.config.warehouse).current_snapshot()
    assert snapshot is not None
    with duckdb.connect(str(snapshot), read_only=True) as con:
        got = {r[0]: (r[1], r[2], float(r[3])) for r in con.execute(f"SELECT region, volunteers, shifts, hours FROM {MART}").fetchall()}
    assert got == expected_mart(project.root)


# --- init --from-demo ----------------------------------------------------------------------------


def test_init_from_demo_creates_the_demo_without_running_it(tmp_path: Path) -> None:
    from headwater.demo import TEMPLATE as DEMO

    created = hw("init", "--from-demo", "--signups", "300", "campaign", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    root = tmp_path / "campaign"
    assert (root / "headwater.yml").read_text() == (DEMO / "headwater.yml").read_text()
    demo_files = {p.relative_to(DEMO) for p in DEMO.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {p.relative_to(root) for p in root.rglob("*") if p.is_file()} >= {Path(".gitignore") if p.name == "gitignore" else p for p in demo_files}
    with sqlite3.connect(root / "data" / "campaign.db") as con:
        assert con.execute("SELECT count(*) FROM signups").fetchone() == (300,)
    assert (root / "data" / "organizers.xlsx").is_file()
    assert not (root / ".headwater" / "warehouse").exists()  # not run
    assert "cd campaign && headwater run" in created.stdout
    # Complete as `headwater demo` makes it (whose run tests/test_demo_cli.py covers): it loads, with its sources' files.
    config = load_project(root).config
    assert config.name == "flake_demo" and list(config.dashboards) == ["flake_rate"]
    assert all((root / source.path).is_file() for source in config.sources.values())  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from-demo", "--name", "mine"], "--from-demo cannot be used with --name"),
        (["--from-demo", "--dbt-project", "."], "--from-demo cannot be used with --dbt-project"),
        (["--signups", "300"], "--signups is for --from-demo"),
    ],
)
def test_init_refuses_options_that_do_not_go_together(tmp_path: Path, args: list[str], says: str) -> None:
    result = hw("init", "p", *args, cwd=tmp_path)
    assert result.returncode == ExitCode.USER_ERROR, (result.stdout, result.stderr)
    assert result.stderr.count(says) == 1 and "Fix:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "p").exists()


def test_init_from_demo_into_a_project_is_refused(tmp_path: Path) -> None:
    init_project(tmp_path / "mine", example=True)
    before = (tmp_path / "mine" / "headwater.yml").read_text()
    result = hw("init", "--from-demo", "--signups", "100", "mine", cwd=tmp_path)
    assert result.returncode == ExitCode.USER_ERROR and "exists already" in result.stderr
    assert (tmp_path / "mine" / "headwater.yml").read_text() == before
    assert not (tmp_path / "mine" / "data" / "campaign.db").exists()


# --- `sources: {}` above the example, uncommented --------------------------------------------------

# headwater.yml as `headwater init` wrote it before its example ran (and `init --dbt-project` still
# writes), with the example source uncommented as a newcomer does: line 6 keeps its `{}`.
UNCOMMENTED = """\
# Headwater project file. Every key is checked: a typo is an error naming the line.
# Secrets come from the environment: write ${NAME} (or ${NAME:-default}) instead of the value.
name: first

# Where data comes from. Each source lands in the warehouse schema raw_<source name>.
sources: {}
  campaign:
    type: sqlite
    path: data/campaign.db     # relative to this folder
    tables: "*"                # or a list of table names

# What runs together: sync these sources, build the dbt project, publish what passed its tests.
pipelines: {}
#  daily:
#    sources: [campaign]
#    select: null               # a dbt selection; default: every model
#    publish: [marts]           # readers see only these model folders (or model names)

# The dbt project Headwater builds: the folder holding dbt_project.yml, relative to this one.
dbt:
  project_dir: .
"""


def test_an_inline_empty_mapping_above_indented_keys_is_named_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "headwater.yml").write_text(UNCOMMENTED)
    result = hw("run", cwd=tmp_path)
    assert result.returncode == ExitCode.USER_ERROR, (result.stdout, result.stderr)
    said = result.stdout + result.stderr
    assert "headwater.yml:6: invalid YAML: line 6 holds `sources: {}`, an empty mapping written inline" in said
    assert "from line 7" in said and "Delete `{}` from line 6, leaving `sources:`" in said
    assert said.count("line 6 holds") == 1 and "Traceback" not in said


def test_the_bare_template_with_its_example_uncommented_gets_the_same_hint(tmp_path: Path) -> None:
    """What `init --dbt-project` writes today, its commented example uncommented by removing '#'."""
    text = (BARE / "headwater.yml").read_text().replace("{{name}}", "p").replace("{{dbt_project_dir}}", ".")
    lines = text.splitlines()
    at = lines.index("sources: {}")
    example = at + 1
    while lines[example].startswith("#  "):
        lines[example] = lines[example][1:]
        example += 1
    assert example > at + 1  # the template still has its commented example
    (tmp_path / "headwater.yml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert caught.value.what.startswith(f"{tmp_path / 'headwater.yml'}:{at + 1}: invalid YAML: line {at + 1} holds `sources: {{}}`")


KEYS = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lead=st.lists(KEYS, max_size=3, unique=True),
    key=KEYS,
    value=st.sampled_from(["{}", "[]", "{ }", "plain text", "{a: 1}", "[1, 2]"]),
    comments=st.lists(st.sampled_from(["", "  # the example:", "# note"]), max_size=2),
    indent=st.integers(1, 6),
    child=st.sampled_from(["inner: 1", "- item"]),
)
def test_a_value_followed_by_indented_lines_names_the_value_line(tmp_path: Path, lead: list[str], key: str, value: str, comments: list[str], indent: int, child: str) -> None:
    """Wherever the finished value is, the error names its line (numbered from the file's own
    lines), its key and its value, never the following line PyYAML stopped at as the one to edit."""
    from headwater.config.yamlfile import load_yaml

    top = [f"{name}_x: 1" for name in lead]
    lines = [*top, f"{key}: {value}", *comments, " " * indent + child]
    file = tmp_path / "h.yml"
    file.write_text("\n".join(lines) + "\n")
    value_line = len(top) + 1
    child_line = len(lines)
    try:
        load_yaml(file)
    except ConfigError as exc:
        message = exc.render()
    else:
        assert value == "plain text" and child == "- item"  # a plain scalar simply continues over the next line: valid YAML
        return
    if value.replace(" ", "") in ("{}", "[]"):
        assert f"h.yml:{value_line}: invalid YAML: line {value_line} holds `{key}: {value}`" in message
        assert f"from line {child_line}" in message and "Delete" in message
    elif value.startswith(("{", "[")):
        assert f"line {value_line} holds `{key}: {value}`, a " in message
    else:
        assert f"h.yml:{child_line}: invalid YAML: line {child_line} is indented under `{key}: {value}` (line {value_line})" in message


def test_other_yaml_errors_keep_the_plain_message(tmp_path: Path) -> None:
    from headwater.config.yamlfile import load_yaml

    (tmp_path / "h.yml").write_text("sources: {}\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(tmp_path / "h.yml")
    assert "holds" not in caught.value.what and "invalid YAML: expected ',' or ']'" in caught.value.what


# --- a source type that does not read its file -----------------------------------------------------


def _file_project(root: Path, source: str, files: dict[str, bytes]) -> Path:
    root.mkdir()
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "headwater.yml").write_text(f"name: p\nsources:\n{source}pipelines:\n  daily: {{sources: [people]}}\ndbt:\n  project_dir: .\n")
    (root / "dbt_project.yml").write_text("name: p\nprofile: p\nversion: '1.0'\nconfig-version: 2\n")
    return root


CSV_TEXT = b"name,hours\nAna,3\nBen,2.5\n"


MISMATCHES = [
    ("  people: {type: excel, path: data/people.csv}\n", "data/people.csv", "csv"),
    ("  people: {type: excel, path: data/people.tsv, sheet: 1}\n", "data/people.tsv", "csv"),
    ("  people: {type: csv, path: data/people.xlsx}\n", "data/people.xlsx", "excel"),
    ("  people: {type: csv, path: data/people.ods}\n", "data/people.ods", "excel"),
    ("  people:\n    type: csv\n    tables:\n      people: {path: data/people.XLS}\n", "data/people.XLS", "excel"),
    ("  people: {type: csv, path: 'https://example.org/export/people.xlsx?v=2'}\n", "data/unused", "excel"),
    ("  people: {type: csv, path: data/people.db}\n", "data/people.db", "sqlite"),
    ("  people: {type: sqlite, path: data/people.csv}\n", "data/people.csv", "csv"),
    ("  people: {type: sqlite, path: data/people.xlsx}\n", "data/people.xlsx", "excel"),
]


@pytest.mark.parametrize(("source", "file", "right"), [MISMATCHES[0], MISMATCHES[2], MISMATCHES[4]])
def test_a_source_type_that_cannot_read_its_file_says_so_once_on_the_command_line(tmp_path: Path, source: str, file: str, right: str) -> None:
    root = _file_project(tmp_path / "p", source, {file: CSV_TEXT})
    for command in (["run"], ["sync", "people"]):
        result = hw(*command, cwd=root)
        assert result.returncode == ExitCode.USER_ERROR, (command, result.stdout, result.stderr)
        said = result.stdout + result.stderr
        assert said.count(f"write type: {right}") == 1, said  # one message, not repeated
        assert said.count("does not read") == 1 and "headwater.yml:" in said and "Traceback" not in said


@pytest.mark.parametrize(("source", "file", "right"), MISMATCHES)
def test_a_source_type_that_cannot_read_its_file_suggests_the_one_that_can(tmp_path: Path, source: str, file: str, right: str) -> None:
    root = _file_project(tmp_path / "p", source, {file: CSV_TEXT})
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    line = source.count("\n")  # the path: line, numbered in the file (two lines above the sources)
    assert f"headwater.yml:{line + 2}: " in caught.value.what and "does not read " in caught.value.what
    assert caught.value.what.count("write type: ") == 1 and f"write type: {right} " in caught.value.what + " "


@settings(max_examples=80, deadline=None)
@given(
    stem=st.from_regex(r"[A-Za-z0-9_ -]{1,12}", fullmatch=True),
    folder=st.sampled_from(["", "data/", "data/2024-*/", "https://example.org/files/"]),
    suffix=st.sampled_from([s for suffixes in SUFFIXES.values() for s in suffixes] + [".json", ".parquet", ""]),
    upper=st.booleans(),
    query=st.sampled_from(["", "?download=1"]),
    source_type=st.sampled_from(list(SUFFIXES)),
)
def test_a_file_is_refused_exactly_when_its_name_says_another_type_reads_it(stem: str, folder: str, suffix: str, upper: bool, query: str, source_type: str) -> None:
    from pydantic_core import PydanticCustomError

    from headwater.config.filetypes import readable_by

    path = folder + stem + (suffix.upper() if upper else suffix) + (query if folder.startswith("http") else "")
    named = next((kind for kind, suffixes in SUFFIXES.items() if suffix in suffixes), None)
    if named is None or named == source_type:
        assert readable_by(source_type, path) == path
        return
    with pytest.raises(PydanticCustomError) as caught:
        readable_by(source_type, path)
    assert str(caught.value).endswith(f"write type: {named}") and f"type: {source_type} does not read" in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "url", "gives"),
    [
        ("csv", "https://docs.google.com/spreadsheets/d/1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms/edit#gid=0", None),
        ("excel", "https://docs.google.com/spreadsheets/d/1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms/export?format=csv", None),
        ("csv", "https://docs.google.com/spreadsheets/d/1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms/export?format=csv", "ok"),
        ("csv", "https://docs.google.com/spreadsheets/d/e/2PACX-1vQ/pub?output=csv", "ok"),
        ("excel", "https://docs.google.com/spreadsheets/d/1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms/export?format=xlsx", "ok"),
    ],
)
def test_a_google_sheets_page_is_not_taken_for_its_file(tmp_path: Path, kind: str, url: str, gives: str | None) -> None:
    (tmp_path / "headwater.yml").write_text(f"name: p\nsources:\n  people: {{type: {kind}, path: '{url}'}}\n")
    if gives == "ok":
        assert load_project(tmp_path).config.sources["people"].path == url  # type: ignore[union-attr]
        return
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert "type: google_sheets and spreadsheet_id: 1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms" in caught.value.what


def test_a_google_sheets_address_given_as_its_id_names_the_id(tmp_path: Path) -> None:
    sheet = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"
    source = f"{{type: google_sheets, spreadsheet_id: 'https://docs.google.com/spreadsheets/d/{sheet}/edit#gid=0', credentials: key.json}}"
    (tmp_path / "headwater.yml").write_text(f"name: p\nsources:\n  people: {source}\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert f"headwater.yml:3: sources.people.spreadsheet_id: spreadsheet_id is the id in the sheet's address, not the address: write spreadsheet_id: {sheet} " in caught.value.what
    (tmp_path / "headwater.yml").write_text(f"name: p\nsources:\n  people: {source.replace(f'https://docs.google.com/spreadsheets/d/{sheet}/edit#gid=0', sheet)}\n")
    assert load_project(tmp_path).config.sources["people"].spreadsheet_id == sheet  # type: ignore[union-attr]


XLSX_HEAD = b"PK\x03\x04" + bytes(60)


@pytest.mark.parametrize(
    ("source", "data", "says"),
    [
        ("people: {type: excel, path: data/people}", CSV_TEXT, "data/people holds text, not a workbook"),
        ("people: {type: csv, path: data/people}", XLSX_HEAD, "data/people is a spreadsheet workbook, not CSV text"),
        ("people: {type: csv, path: data/people}", b"SQLite format 3\x00" + bytes(100), "data/people is a SQLite database, not CSV text"),
        ("people: {type: csv, path: data/people}", b"<!DOCTYPE html><html><body>Sign in</body></html>\n", "data/people is a web page, not CSV text"),
        ("people: {type: excel, path: data/people}", b"\n<html><body>Sign in</body></html>\n", "data/people is a web page, not a workbook"),
    ],
)
def test_a_file_whose_name_does_not_say_is_told_by_its_bytes(tmp_path: Path, source: str, data: bytes, says: str) -> None:
    """A misnamed file (or a URL without a suffix) gets to the reader, which tells from its first
    bytes what it is: never loaded as garbage rows, never a codec's complaint about byte 22."""
    import files_project

    (tmp_path / "p" / "data").mkdir(parents=True)
    (tmp_path / "p" / "data" / "people").write_bytes(data)
    project = files_project.make_project(tmp_path / "p", source)
    with pytest.raises(HeadwaterError) as caught:
        files_project.sync(project, "people")
    assert says in caught.value.render()
    assert caught.value.exit_code == ExitCode.USER_ERROR


def test_a_misnamed_workbook_is_one_message_on_the_command_line(tmp_path: Path) -> None:
    root = _file_project(tmp_path / "p", "  people: {type: excel, path: data/people}\n", {"data/people": CSV_TEXT})
    result = hw("sync", "people", cwd=root)
    assert result.returncode == ExitCode.USER_ERROR, (result.stdout, result.stderr)
    assert "data/people holds text, not a workbook" in result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("Write type: csv") == 1

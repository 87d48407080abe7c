"""The project file: finding it, validating it, and naming FILE:LINE for every mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from headwater.config import PROJECT_FILE, find_project_root, load_project
from headwater.config.model import DuckDBWarehouse, SQLiteSettings
from headwater.config.yamlfile import load_yaml
from headwater.errors import ConfigError, ExitCode, HeadwaterError, NotFound

MINIMAL = "name: tiny\n"

FULL = """\
name: flake_demo
warehouse:
  type: duckdb
  path: .hw/wh
  threads: 2
sources:
  campaign:
    type: sqlite
    path: data/campaign.db
    tables: [signups, events]
pipelines:
  daily:
    sources: [campaign]
    publish: [marts]
dashboards:
  inline_one:
    title: Inline
    table: flake_rate_weekly
    charts:
      - title: Rate
        type: line
        x: week_start
        measures: {rate: avg(flake_rate)}
"""

DASHBOARD_FILE = """\
title: From a file
table: flake_rate_weekly
filters:
  - column: region
charts:
  - title: By region
    type: bar
    x: region
    measures:
      flakes: sum(total_flakes)
"""


def write(root: Path, text: str, name: str = PROJECT_FILE) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(root: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_project(root, env=env if env is not None else {})
    return info.value


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


# --- valid projects ---------------------------------------------------------------------------


def test_minimal_project_gets_the_documented_defaults(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    loaded = load_project(tmp_path, env={})
    assert loaded.root == tmp_path.resolve()
    assert loaded.file == tmp_path.resolve() / PROJECT_FILE
    assert loaded.config.name == "tiny"
    assert loaded.config.warehouse == DuckDBWarehouse()
    assert loaded.config.system.url == "sqlite:///.headwater/system.db"
    assert loaded.config.sources == {} and loaded.config.pipelines == {} and loaded.config.dashboards == {}
    assert loaded.path("x/y.db") == tmp_path.resolve() / "x" / "y.db"


def test_full_project_parses_into_typed_models(tmp_path: Path) -> None:
    write(tmp_path, FULL)
    config = load_project(tmp_path, env={}).config
    assert config.warehouse.path == ".hw/wh" and config.warehouse.threads == 2
    source = config.sources["campaign"]
    assert isinstance(source, SQLiteSettings)
    assert source.path == "data/campaign.db" and source.tables == ["signups", "events"]
    assert config.pipelines["daily"].sources == ["campaign"]
    assert config.pipelines["daily"].select is None
    assert config.dashboards["inline_one"].charts[0].measures == {"rate": "avg(flake_rate)"}


def test_scaffolded_project_file_is_valid(tmp_path: Path) -> None:
    from headwater.scaffold import init_project

    init_project(tmp_path / "fresh", "fresh")
    assert load_project(tmp_path / "fresh", env={}).config.name == "fresh"


def test_empty_project_file_is_an_error_naming_the_missing_name(tmp_path: Path) -> None:
    write(tmp_path, "# nothing here yet\n")
    error = config_error(tmp_path)
    assert "name" in error.what and str(tmp_path / PROJECT_FILE) in error.what


def test_a_project_file_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "- just\n- a list\n")
    error = config_error(tmp_path)
    assert f"{tmp_path / PROJECT_FILE}:1" in error.what and "mapping" in error.what


# --- finding the project ------------------------------------------------------------------------


def test_find_project_root_walks_up_from_a_nested_folder(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    nested = tmp_path / "models" / "staging" / "deeper"
    nested.mkdir(parents=True)
    assert find_project_root(nested) == tmp_path.resolve()
    assert find_project_root(tmp_path) == tmp_path.resolve()
    assert load_project(nested, env={}).root == tmp_path.resolve()


def test_find_project_root_uses_the_nearest_project(tmp_path: Path) -> None:
    write(tmp_path, "name: outer\n")
    write(tmp_path / "inner", "name: inner\n")
    (tmp_path / "inner" / "sub").mkdir()
    assert find_project_root(tmp_path / "inner" / "sub") == (tmp_path / "inner").resolve()


def test_find_project_root_defaults_to_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert find_project_root() == tmp_path.resolve()


def test_no_project_file_is_not_found_naming_the_fix(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    # A folder called headwater.yml does not count as a project file.
    (tmp_path / "a" / PROJECT_FILE).mkdir()
    with pytest.raises(NotFound) as info:
        find_project_root(tmp_path / "a" / "b")
    error = info.value
    assert error.exit_code == ExitCode.USER_ERROR
    assert str((tmp_path / "a" / "b").resolve()) in error.what
    assert error.fix and "headwater init" in error.fix and "--project" in error.fix
    assert "Fix: " in error.render()


# --- unknown keys: FILE:LINE and did-you-mean ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "typo", "suggestion", "dotted"),
    [
        pytest.param("name: x\nwarehuose:\n  path: w\n", "warehuose", "warehouse", "warehuose", id="top-level"),
        pytest.param("name: x\nwarehouse:\n  type: duckdb\n  thread: 4\n", "thread", "threads", "warehouse.thread", id="warehouse"),
        pytest.param(
            "name: x\nsources:\n  campaign:\n    type: sqlite\n    path: c.db\n    tabels: '*'\n", "tabels", "tables", "sources.campaign.tabels", id="source"
        ),
        pytest.param("name: x\npipelines:\n  daily:\n    publish: [marts]\n    selct: stg+\n", "selct", "select", "pipelines.daily.selct", id="pipeline"),
        pytest.param("name: x\nsystem:\n  ulr: sqlite:///x.db\n", "ulr", "url", "system.ulr", id="system"),
        pytest.param(
            "name: x\ndashboards:\n  d:\n    title: T\n    table: t\n    charts:\n      - title: c\n        type: line\n        measure: {n: count(*)}\n        measures: {n: count(*)}\n",
            "measure",
            "measures",
            "dashboards.d.charts.0.measure",
            id="inline-chart",
        ),
    ],
)
def test_unknown_key_names_file_line_and_suggests(tmp_path: Path, text: str, typo: str, suggestion: str, dotted: str) -> None:
    file = write(tmp_path, text)
    error = config_error(tmp_path)
    line = line_of(file, f"{typo}:")
    assert f"{file}:{line}: {dotted}: unknown key '{typo}'" in error.what
    assert f"did you mean '{suggestion}'?" in error.what
    assert error.fix


def test_unknown_key_in_a_dashboard_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    dash = write(tmp_path, DASHBOARD_FILE.replace("filters:", "descripton: oops\nfilters:"), "dashboards/flakes.yml")
    error = config_error(tmp_path)
    assert f"{dash}:{line_of(dash, 'descripton:')}: descripton: unknown key 'descripton'" in error.what
    assert "did you mean 'description'?" in error.what


def test_unknown_key_deep_in_a_dashboard_file(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    dash = write(tmp_path, DASHBOARD_FILE.replace("  - column: region", "  - column: region\n    lable: Region"), "dashboards/flakes.yml")
    error = config_error(tmp_path)
    assert f"{dash}:{line_of(dash, 'lable:')}: filters.0.lable: unknown key 'lable'" in error.what
    assert "did you mean 'label'?" in error.what


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nwarehouse:\n  zzzzzz: 1\n")
    error = config_error(tmp_path)
    assert f"{file}:3: warehouse.zzzzzz: unknown key 'zzzzzz'" in error.what
    assert "allowed:" in error.what and "path" in error.what and "threads" in error.what


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nwarehouse:\n  pathh: w\npipelines:\n  daily:\n    selct: a\n")
    error = config_error(tmp_path)
    assert f"{file}:3: warehouse.pathh" in error.what
    assert f"{file}:6: pipelines.daily.selct" in error.what


# --- source types -------------------------------------------------------------------------------


def test_unknown_source_type_suggests_the_known_one(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nsources:\n  campaign:\n    type: sqlit\n    path: c.db\n")
    error = config_error(tmp_path)
    assert f"{file}:4: sources.campaign: unknown type 'sqlit'" in error.what
    assert "did you mean 'sqlite'?" in error.what


def test_unrelated_source_type_lists_the_known_types(tmp_path: Path) -> None:
    write(tmp_path, "name: x\nsources:\n  campaign:\n    type: oracle\n    path: c.db\n")
    error = config_error(tmp_path)
    assert "unknown type 'oracle'" in error.what and "sqlite" in error.what


def test_missing_required_source_setting_names_the_source(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nsources:\n  campaign:\n    type: sqlite\n")
    error = config_error(tmp_path)
    assert f"{file}:3: sources.campaign.path: Field required" in error.what


def test_source_without_a_type_names_the_source_and_the_missing_key(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nsources:\n  campaign:\n    path: c.db\n")
    error = config_error(tmp_path)
    assert f"{file}:3: sources.campaign" in error.what and "'type'" in error.what


def test_invalid_source_name_names_the_line(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nsources:\n  ok:\n    type: sqlite\n    path: a.db\n  bad-name:\n    type: sqlite\n    path: c.db\n")
    error = config_error(tmp_path)
    assert f"{file}:6: sources.bad-name" in error.what and "'bad-name'" in error.what


# --- wrong value types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle", "dotted", "shown"),
    [
        pytest.param("name: x\nwarehouse:\n  threads: many\n", "threads:", "warehouse.threads", "'many'", id="int"),
        pytest.param("name: x\nwarehouse:\n  keep_snapshots: 0\n", "keep_snapshots:", "warehouse.keep_snapshots", "0", id="range"),
        pytest.param("name: x\ndbt:\n  threads: [1, 2]\n", "threads:", "dbt.threads", "", id="list-for-int"),
        pytest.param("name: 9lives\n", "name:", "name", "'9lives'", id="identifier"),
        pytest.param("name: x\nsources:\n  campaign:\n    type: sqlite\n    path: c.db\n    tables: signups\n", "tables:", "sources.campaign.tables", "", id="str-for-list"),
        pytest.param("name: x\npipelines:\n  daily:\n    publish: marts\n", "publish:", "pipelines.daily.publish", "'marts'", id="pipeline-publish"),
    ],
)
def test_wrong_value_type_names_the_line(tmp_path: Path, text: str, needle: str, dotted: str, shown: str) -> None:
    file = write(tmp_path, text)
    error = config_error(tmp_path)
    assert f"{file}:{line_of(file, needle)}: {dotted}" in error.what
    assert shown in error.what


def test_errors_inside_a_union_point_at_the_yaml_path_and_line(tmp_path: Path) -> None:
    """``tables`` is ``'*' | list[Name]``: pydantic tags its errors with the union member it tried
    (``literal['*']``, ``list[constrained-str]``). Those are not in the YAML, so they must not show up
    in the key, and the line must be the bad item's, not the ``tables:`` line."""
    file = write(tmp_path, "name: x\nsources:\n  c:\n    type: sqlite\n    path: c.db\n    tables:\n      - signups\n      - \"bad\\0name\"\n")  # NUL: the one character no database allows in a name
    error = config_error(tmp_path)
    assert f"{file}:8: sources.c.tables.1:" in error.what
    assert "literal[" not in error.what and "constrained-str" not in error.what


def test_errors_inside_dbt_vars_name_the_var_not_the_union_member(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\ndbt:\n  vars:\n    ok: 1\n    start:\n      nested: no\n")
    error = config_error(tmp_path)
    assert f"{file}:5: dbt.vars.start:" in error.what
    assert "dbt.vars.start.str" not in error.what and "dbt.vars.start.int" not in error.what


def test_bad_order_by_in_a_dashboard_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    dash = write(tmp_path, DASHBOARD_FILE + "    order_by: [region; drop table x]\n", "dashboards/d.yml")
    error = config_error(tmp_path)
    assert f"{dash}:{line_of(dash, 'order_by')}: charts.0.order_by" in error.what


# --- YAML-level errors --------------------------------------------------------------------------


def test_duplicate_key_is_an_error_naming_the_line(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nsources:\n  a:\n    type: sqlite\n    path: one.db\n  a:\n    type: sqlite\n    path: two.db\n")
    error = config_error(tmp_path)
    assert f"{file}:6:" in error.what and "'a' appears twice" in error.what


def test_duplicate_top_level_key_is_an_error(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nwarehouse: {}\nname: y\n")
    error = config_error(tmp_path)
    assert f"{file}:3:" in error.what and "'name' appears twice" in error.what


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("name: x\nwarehouse:\n  path: [a\n  threads: 2\n", 4, id="unclosed-flow"),
        pytest.param("name: x\nwarehouse:\n  path: x\n   threads: 2\n", 4, id="bad-indent"),
        pytest.param("name: x\nsystem:\n  url: \"sqlite:///x\n", 4, id="unclosed-quote"),
        pytest.param("name: x\n\tfoo: 1\n", 2, id="tab"),
    ],
)
def test_invalid_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    file = write(tmp_path, text)
    error = config_error(tmp_path)
    assert error.what.startswith(f"{file}:{line}: invalid YAML")
    assert error.fix


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / PROJECT_FILE).write_bytes(b"name: caf\xe9\n")
    error = config_error(tmp_path)
    assert "UTF-8" in error.what and "UTF-8" in (error.fix or "")


def test_load_yaml_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_yaml(tmp_path / "nope.yml", {})


# --- environment interpolation ------------------------------------------------------------------


def test_env_var_is_interpolated(tmp_path: Path) -> None:
    write(tmp_path, "name: x\nsystem:\n  url: postgresql+psycopg://app:${DB_PASSWORD}@db.internal/hw\n")
    config = load_project(tmp_path, env={"DB_PASSWORD": "p@ss"}).config
    assert config.system.url == "postgresql+psycopg://app:p@ss@db.internal/hw"


def test_env_default_is_used_only_when_unset(tmp_path: Path) -> None:
    write(tmp_path, "name: x\nwarehouse:\n  path: ${WH:-.headwater/default}\n  threads: ${THREADS:-3}\n")
    unset = load_project(tmp_path, env={}).config.warehouse
    assert unset.path == ".headwater/default" and unset.threads == 3
    setv = load_project(tmp_path, env={"WH": "/data/wh", "THREADS": "8"}).config.warehouse
    assert setv.path == "/data/wh" and setv.threads == 8
    # Set but empty is still set (as in the shell's ${VAR-default}, not ${VAR:-default}).
    assert load_project(tmp_path, env={"WH": ""}).config.warehouse.path == ""


def test_empty_default_is_allowed(tmp_path: Path) -> None:
    write(tmp_path, "name: x\ndbt:\n  vars:\n    suffix: \"${SUFFIX:-}\"\n")
    assert load_project(tmp_path, env={}).config.dbt.vars == {"suffix": ""}


def test_double_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    write(tmp_path, "name: x\ndbt:\n  vars:\n    a: \"$$HOME\"\n    b: \"$${HOME}\"\n    c: \"cost: $$5 and $$$$\"\n    d: \"lone $ stays\"\n")
    config = load_project(tmp_path, env={"HOME": "/root"}).config
    assert config.dbt.vars == {"a": "$HOME", "b": "${HOME}", "c": "cost: $5 and $$", "d": "lone $ stays"}


def test_real_process_environment_is_used_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "name: x\nwarehouse:\n  path: ${HW_TEST_WAREHOUSE_PATH}\n")
    monkeypatch.setenv("HW_TEST_WAREHOUSE_PATH", "/from/env")
    assert load_project(tmp_path).config.warehouse.path == "/from/env"


def test_missing_env_var_names_file_line_and_variable(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nwarehouse:\n  path: w\nsystem:\n  url: postgresql+psycopg://app:${HW_SECRET_PW}@db/hw\n")
    error = config_error(tmp_path)
    assert error.what.startswith(f"{file}:5:")
    assert "HW_SECRET_PW" in error.what
    assert error.fix and "export HW_SECRET_PW=" in error.fix and "${HW_SECRET_PW:-" in error.fix


def test_missing_env_var_in_a_dashboard_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    dash = write(tmp_path, DASHBOARD_FILE.replace("title: From a file", "title: ${DASH_TITLE}"), "dashboards/d.yml")
    error = config_error(tmp_path)
    assert error.what.startswith(f"{dash}:1:") and "DASH_TITLE" in error.what


@pytest.mark.parametrize("evil", ["w\n  threads: 99", "w\nevil: 1", "{threads: 99}", "[a, b]", "w # comment", "'quoted'", "&anchor w", "!!int 5"])
def test_interpolated_values_cannot_inject_yaml(tmp_path: Path, evil: str) -> None:
    write(tmp_path, "name: x\nwarehouse:\n  path: ${WH}\nsystem:\n  url: \"${WH}\"\n")
    config = load_project(tmp_path, env={"WH": evil}).config
    assert config.warehouse.path == evil
    assert config.warehouse.threads is None
    assert config.system.url == evil


def test_injected_unknown_key_is_not_parsed_as_a_key(tmp_path: Path) -> None:
    write(tmp_path, "name: x\nsystem:\n  url: ${URL}\n")
    config = load_project(tmp_path, env={"URL": "sqlite:///x.db\n  evil: 1"}).config
    assert config.system.url == "sqlite:///x.db\n  evil: 1"


def test_interpolation_is_not_recursive(tmp_path: Path) -> None:
    write(tmp_path, "name: x\nsystem:\n  url: ${A}\n")
    assert load_project(tmp_path, env={"A": "${B}", "B": "nope"}).config.system.url == "${B}"


def test_keys_and_non_string_scalars_are_not_interpolated(tmp_path: Path) -> None:
    located = load_yaml(write(tmp_path, "${K}: 1\nn: 5\nflag: true\n", "plain.yml"), {"K": "key"})
    assert located.data == {"${K}": 1, "n": 5, "flag": True}


# --- property-based: values from the environment arrive exactly -------------------------------

TEMPLATES = {
    "plain": "name: x\nsystem:\n  url: ${X}\n",
    "double-quoted": 'name: x\nsystem:\n  url: "${X}"\n',
    "single-quoted": "name: x\nsystem:\n  url: '${X}'\n",
    "block": "name: x\nsystem:\n  url: >-\n    ${X}\n",
    "embedded": "name: x\nsystem:\n  url: 'pre-${X}-post'\n",
}


@pytest.fixture(scope="module")
def env_projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    roots = {}
    for key, template in TEMPLATES.items():
        root = tmp_path_factory.mktemp(f"env-{key}")
        write(root, template)
        roots[key] = root
    return roots


# Favour the characters interpolation and YAML care about, but allow any text.
TRICKY = st.text(alphabet=st.sampled_from(list("${}:-_ \n\t#'\"\\&*!|>%@`,[]?aZ09")), max_size=200)
TOKENS = st.lists(st.sampled_from(["$", "$$", "${X}", "${X:-d}", "${", "{", "}", "X", ":-", " ", "\n", "é", "\\1"]), max_size=60).map("".join)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
VALUES = st.one_of(TRICKY, TOKENS, ANY_TEXT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES, template=st.sampled_from(sorted(TEMPLATES)))
@example(value="a\n  evil: 1", template="plain")
@example(value="${Y}", template="plain")
@example(value="$$", template="double-quoted")
@example(value="\\1 \\g<0>", template="plain")
@example(value="", template="plain")
def test_env_value_arrives_exactly(env_projects: dict[str, Path], value: str, template: str) -> None:
    url = load_project(env_projects[template], env={"X": value}).config.system.url
    expected = f"pre-{value}-post" if template == "embedded" else value
    assert url == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
@example(value="${X}")
@example(value="$${X}")
@example(value="$")
@example(value="${X:-default}")
@example(value="a long value, well over forty characters: $5, ${X} and $$ at the end")
def test_double_dollar_escaping_round_trips(tmp_path: Path, value: str) -> None:
    """Escape every ``$`` as ``$$``, write the value with a YAML serializer: it loads back unchanged,
    whatever ``${...}`` it contains and whatever the environment holds."""
    document = yaml.safe_dump({"title": value.replace("$", "$$")}, allow_unicode=True)
    assume(yaml.safe_load(document) == {"title": value.replace("$", "$$")})  # skip what YAML itself cannot carry
    file = tmp_path / "roundtrip.yml"
    file.write_text(document, encoding="utf-8")
    assert load_yaml(file, {"X": "SHOULD-NOT-APPEAR"}).data == {"title": value}


# --- dashboards/*.yml --------------------------------------------------------------------------


def test_dashboard_files_merge_with_inline_dashboards(tmp_path: Path) -> None:
    write(tmp_path, FULL)
    write(tmp_path, DASHBOARD_FILE, "dashboards/by_region.yml")
    write(tmp_path, DASHBOARD_FILE.replace("From a file", "Second"), "dashboards/second.yml")
    write(tmp_path, "not: a dashboard\n", "dashboards/notes.txt")  # only *.yml are dashboards
    dashboards = load_project(tmp_path, env={}).config.dashboards
    assert set(dashboards) == {"inline_one", "by_region", "second"}
    assert dashboards["inline_one"].title == "Inline"
    assert dashboards["by_region"].title == "From a file"
    assert dashboards["by_region"].filters[0].column == "region"
    assert dashboards["second"].title == "Second"


def test_dashboard_defined_inline_and_in_a_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, FULL)
    dash = write(tmp_path, DASHBOARD_FILE, "dashboards/inline_one.yml")
    error = config_error(tmp_path)
    assert str(dash) in error.what and "inline_one" in error.what
    assert str(tmp_path / PROJECT_FILE) in error.what
    assert error.fix


def test_invalid_dashboard_file_is_an_error_naming_it(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    dash = write(tmp_path, "title: No charts\ntable: t\ncharts: []\n", "dashboards/empty.yml")
    error = config_error(tmp_path)
    assert f"{dash}:3: charts" in error.what


def test_dashboard_file_names_follow_the_inline_name_rules(tmp_path: Path) -> None:
    """Inline dashboard names must be identifiers (``dict[Name, Dashboard]``); a file name is the
    dashboard's name too, so ``my dashboard.yml`` must not sneak in a name the model forbids."""
    write(tmp_path, MINIMAL)
    write(tmp_path, DASHBOARD_FILE, "dashboards/flake rate-2.yml")
    error = config_error(tmp_path)
    assert "flake rate-2" in error.what


def test_configerror_is_a_headwater_error_with_user_exit_code(tmp_path: Path) -> None:
    write(tmp_path, "name: x\nbogus: 1\n")
    error = config_error(tmp_path)
    assert isinstance(error, HeadwaterError) and error.exit_code == ExitCode.USER_ERROR
    rendered = error.render()
    assert rendered.startswith(error.what) and "\nFix: " in rendered


# --- hostile YAML: aliases that expand without end, nesting without end -------------------------------

ALIAS_BOMB = """\
name: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


@pytest.mark.parametrize("name", [PROJECT_FILE, "dashboards/board.yml"])
def test_an_alias_bomb_is_refused_quickly_naming_file_and_line(tmp_path: Path, name: str) -> None:
    import time

    if name != PROJECT_FILE:
        write(tmp_path, MINIMAL)
    file = write(tmp_path, ALIAS_BOMB, name)
    started = time.perf_counter()
    error = config_error(tmp_path)
    assert time.perf_counter() - started < 2  # was 40 s and 1.3 GB
    assert error.what.startswith(f"{file}:") and "alias" in error.what
    assert 3 <= int(error.what.split(":")[1]) <= 8  # the line of the alias that went over
    assert "anchor" in (error.fix or "")


def test_modest_aliases_still_work(tmp_path: Path) -> None:
    write(tmp_path, """\
        name: aliased
        sources:
          a: &sqlite {type: sqlite, path: a.db, tables: [t1, t2]}
          b: *sqlite
          c: *sqlite
        """)
    project = load_project(tmp_path, env={})
    assert project.config.sources["c"].tables == project.config.sources["a"].tables == ["t1", "t2"]


@pytest.mark.parametrize("text", ["name: x\nv: " + "[" * 10_000 + "]" * 10_000 + "\n", "name: x\nv: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "name: x\n" + "".join(" " * i + f"k{i}:\n" for i in range(3000)) + " " * 3000 + "v: 1\n"])
def test_deep_nesting_is_a_config_error_not_a_crash(tmp_path: Path, text: str) -> None:
    file = write(tmp_path, text)
    error = config_error(tmp_path)
    assert error.what.startswith(f"{file}:") and "nested" in error.what


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nv: &a [1, *a]\n")
    error = config_error(tmp_path)
    assert error.what.startswith(f"{file}:2:") and "inside its own anchor" in error.what


# --- numbers and references a user can get wrong are config errors, never crashes -------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("timeout", "99999999999999999999d"),
        ("timeout", "3651d"),
        ("timeout", "1e400"),
        ("timeout", ".inf"),
        ("timeout", ".nan"),
        ("timeout", "-5"),
        ("retry", "{backoff: 99999999999999999999d}"),
        ("retry", "{max_backoff: 99999999999999999999999999999999999999s}"),
    ],
)
def test_durations_out_of_range_are_config_errors(tmp_path: Path, setting: str, value: str) -> None:
    file = write(tmp_path, f"name: x\npipelines:\n  daily:\n    {setting}: {value}\n")
    error = config_error(tmp_path)
    assert f"{file}:4:" in error.what and "duration" in error.what, error.what


def test_the_longest_duration_is_ten_years(tmp_path: Path) -> None:
    write(tmp_path, "name: x\npipelines:\n  daily:\n    timeout: 3650d\n")
    assert load_project(tmp_path, env={}).config.pipelines["daily"].timeout.days == 3650


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("warehouse: {threads: 100000000000000000000}", 2),
        ("dbt: {threads: 100000000000000000000}", 2),
    ],
)
def test_integers_out_of_range_are_config_errors(tmp_path: Path, text: str, line: int) -> None:
    file = write(tmp_path, f"name: x\n{text}\n")
    assert f"{file}:{line}:" in config_error(tmp_path).what


@pytest.mark.parametrize("text", ["${CAMPAIGN_DB", "data/${CAMPAIGN_DB.db", "${secret:PASSWORD", "x ${ y", "${1ABC}"])
def test_an_unfinished_or_malformed_reference_is_a_config_error(tmp_path: Path, text: str) -> None:
    file = write(tmp_path, f"name: x\nsources:\n  campaign: {{type: sqlite, path: '{text}'}}\n")
    error = config_error(tmp_path, env={"CAMPAIGN_DB": "db"})
    assert error.what.startswith(f"{file}:3:") and "${" in error.what and "$$" in (error.fix or "")


def test_a_literal_dollar_brace_is_written_with_two_dollars(tmp_path: Path) -> None:
    write(tmp_path, "name: x\nsources:\n  campaign: {type: sqlite, path: 'a$${b.db'}\n")
    assert str(load_project(tmp_path, env={}).config.sources["campaign"].path) == "a${b.db"


def test_a_memory_limit_duckdb_cannot_read_is_a_config_error(tmp_path: Path) -> None:
    file = write(tmp_path, "name: x\nwarehouse:\n  memory_limit: lots\n")
    error = config_error(tmp_path)
    assert f"{file}:3:" in error.what and "memory limit" in error.what
    write(tmp_path, "name: x\nwarehouse:\n  memory_limit: 512MB\n")
    assert load_project(tmp_path, env={}).config.warehouse.memory_limit == "512MB"

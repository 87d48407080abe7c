"""dbt projects as people write them, run for real: unit tests, every kind of node `dbt build`
yields, packages, seeds read through source(), projects without a marts folder.

Each project is declared as a dict of files (the shape of dbt's own functional tests) on top of
`headwater init`'s scaffold, and runs the whole pipeline in-process against a real dbt and DuckDB.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from headwater.config import LoadedProject, load_project
from headwater.errors import RunFailed
from headwater.orchestrate import run_pipeline
from headwater.scaffold import init_project
from headwater.services.runs import get_run, recent_runs
from headwater.system import open_system_db
from headwater.warehouse import Warehouse


def make_project(root: Path, files: dict[str, str]) -> LoadedProject:
    """`headwater init`'s project (named shop) with ``files`` written over it, dedented."""
    init_project(root, "shop")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return load_project(root)


def set_dbt(project: LoadedProject, *settings: str) -> None:
    """Set keys under headwater.yml's dbt: (the scaffold writes ``project_dir: .`` there)."""
    path = project.root / "headwater.yml"
    text = path.read_text()
    start = text.index("dbt:\n  project_dir: .\n") + len("dbt:\n  project_dir: .\n")
    end = text.index("\n\n", start - 1)
    path.write_text(text[:start] + "".join(f"  {line}\n" for line in settings) + text[end + 1 :])


def last_run(project: LoadedProject):
    db = open_system_db(project)
    try:
        latest = recent_runs(db, project.config.name, 1)[0]
        return get_run(db, project.config.name, latest.id)
    finally:
        db.close()


def build_nodes(run) -> dict[str, dict]:
    step = next(s for s in run.steps if s.name == "dbt:build")
    return {n["name"]: n for n in json.loads(step.detail)["nodes"]}


def snapshot_name(project: LoadedProject) -> str | None:
    snapshot = Warehouse(project.root, project.config.warehouse).current_snapshot()
    return snapshot.name if snapshot else None


# --- unit tests ----------------------------------------------------------------------------------

ORDERS = {
    "seeds/orders.csv": """
        order_id,amount
        1,10
        2,25
        3,40
        """,
    "models/staging/stg_orders.sql": """
        select order_id, amount from {{ ref('orders') }}
        """,
    "models/marts/order_sizes.sql": """
        select order_id, case when amount >= 25 then 'large' else 'small' end as size
        from {{ ref('stg_orders') }}
        """,
    "models/marts/_marts.yml": """
        unit_tests:
          - name: sizes_split_at_25
            model: order_sizes
            given:
              - input: ref('stg_orders')
                rows: [{order_id: 1, amount: 24}, {order_id: 2, amount: 25}]
            expect:
              rows: [{order_id: 1, size: small}, {order_id: 2, size: large}]
        """,
}


@pytest.fixture
def orders(tmp_path: Path) -> LoadedProject:
    return make_project(tmp_path / "shop", ORDERS)


def test_passing_failing_and_skipped_unit_tests(orders: LoadedProject) -> None:
    project = orders
    outcome = run_pipeline(project)
    assert outcome.published == {"order_sizes": 3}
    run = last_run(project)
    assert [(c.name, c.kind, c.status, c.severity) for c in run.checks] == [("sizes_split_at_25", "dbt_test", "pass", "error")]
    assert build_nodes(run)["sizes_split_at_25"]["resource_type"] == "unit_test"
    published = snapshot_name(project)

    # the model changes its rule: the unit test fails with dbt's diff, the run fails, nothing is published
    model = project.root / "models" / "marts" / "order_sizes.sql"
    model.write_text(model.read_text().replace("amount >= 25", "amount > 25"))
    with pytest.raises(RunFailed) as failure:
        run_pipeline(project)
    assert "unit_test sizes_split_at_25: actual differs from expected" in failure.value.render()
    assert snapshot_name(project) == published
    run = last_run(project)
    [check] = run.checks
    assert (check.status, check.severity) == ("fail", "error")
    assert "differs from the rows the test expects" in check.message and "models/marts/_marts.yml" in check.message
    sample = json.loads(check.sample)
    assert sample["columns"] == ["diff", "order_id", "size"]
    assert sorted(sample["rows"]) == [["changed", "2", "large→small"], ["same", "1", "small"]]
    assert build_nodes(run)["order_sizes"]["status"] == "skipped"  # dbt builds no model whose unit test failed

    # an upstream model breaks: dbt skips the unit test, recorded as an error (unchecked), never a pass
    model.write_text(model.read_text().replace("amount > 25", "amount >= 25"))
    (project.root / "models" / "staging" / "stg_orders.sql").write_text("select order_id, amount from no_such_table")
    with pytest.raises(RunFailed) as failure:
        run_pipeline(project)
    assert "model stg_orders" in failure.value.render()
    assert snapshot_name(project) == published
    run = last_run(project)
    [check] = run.checks
    assert (check.name, check.status, check.severity) == ("sizes_split_at_25", "error", "error")
    assert "skipped" in check.message
    assert build_nodes(run)["sizes_split_at_25"]["status"] == "skipped"


def test_every_kind_of_node_dbt_build_yields(tmp_path: Path) -> None:
    """Seeds, snapshots, data and unit tests, a function (UDF), an exposure, a saved query over a
    semantic model and metric, run hooks, and an analysis (parsed, never built): one successful run."""
    files = {
        "seeds/people.csv": "id,name\n1,ana\n2,bo\n",
        "models/marts/people_mart.sql": "select id, {{ function('double_it') }}(id) as twice, name from {{ ref('people') }}\n",
        "models/marts/time_spine.sql": "select cast(range as date) as date_day from range(date '2026-01-01', date '2026-02-01', interval 1 day)\n",
        "models/marts/_marts.yml": """
            models:
              - name: time_spine
                time_spine: {standard_granularity_column: date_day}
                columns: [{name: date_day, granularity: day}]
              - name: people_mart
                columns: [{name: id, data_tests: [unique]}]
            unit_tests:
              - name: twice_doubles
                model: people_mart
                given: [{input: ref('people'), rows: [{id: 5, name: x}]}]
                expect: {rows: [{id: 5, twice: 10, name: x}]}
            semantic_models:
              - name: people_sm
                model: ref('people_mart')
                defaults: {agg_time_dimension: joined_day}
                entities: [{name: person, type: primary, expr: id}]
                dimensions: [{name: joined_day, type: time, expr: "date '2026-01-05'", type_params: {time_granularity: day}}]
                measures: [{name: people_count, agg: count, expr: id}]
            metrics:
              - {name: people_total, label: People, type: simple, type_params: {measure: people_count}}
            saved_queries:
              - name: people_by_day
                query_params: {metrics: [people_total], group_by: ["TimeDimension('person__joined_day', 'day')"]}
            exposures:
              - {name: board_report, type: dashboard, owner: {email: a@example.org}, depends_on: ["ref('people_mart')"]}
            """,
        "functions/double_it.sql": "x * 2\n",
        "functions/_functions.yml": """
            functions:
              - {name: double_it, arguments: [{name: x, data_type: integer}], returns: {data_type: integer}}
            """,
        # DuckDB has no CREATE FUNCTION ... LANGUAGE SQL: the project makes its functions macros
        "macros/duckdb_functions.sql": """
            {% macro duckdb__scalar_function_sql(target_relation) %}
            create or replace macro {{ target_relation.render() }}({% for a in model.arguments %}{{ a.name }}{{ ", " if not loop.last }}{% endfor %}) as ({{ model.compiled_code }})
            {% endmacro %}
            """,
        "snapshots/people_snap.yml": """
            snapshots:
              - {name: people_snap, relation: ref('people'), config: {unique_key: id, strategy: check, check_cols: all, schema: snapshots}}
            """,
        "analyses/adhoc.sql": "select count(*) from {{ ref('people_mart') }}\n",
    }
    project = make_project(tmp_path / "shop", files)
    with open(project.root / "dbt_project.yml", "a") as handle:  # hooks come back as results of their own
        handle.write("on-run-start: [\"select 1\"]\non-run-end: [\"select 2\"]\n")
    outcome = run_pipeline(project)
    assert outcome.published == {"people_mart": 2, "time_spine": 31}
    nodes = build_nodes(last_run(project))
    kinds = {n["resource_type"]: n["status"] for n in nodes.values()}
    assert kinds == {
        "operation": "success",
        "seed": "success",
        "snapshot": "success",
        "model": "success",
        "test": "pass",
        "unit_test": "pass",
        "function": "success",
        "exposure": "no-op",
        "saved_query": "no-op",
    }
    assert nodes["people"]["rows"] == 2 and nodes["people_snap"]["rows"] == 2
    assert "adhoc" not in nodes
    checks = {c.name: c.status for c in last_run(project).checks}
    assert checks == {"unique_people_mart_id": "pass", "twice_doubles": "pass"}


def test_a_project_dbt_cannot_parse_says_what_dbt_found(tmp_path: Path) -> None:
    """dbt logs the detail before its exception ("Semantic Manifest validation failed"): the run's
    error carries both."""
    files = {
        "models/marts/people.sql": "select 1 as id\n",
        "models/marts/time_spine.sql": "select date '2026-01-01' as date_day\n",
        "models/marts/_marts.yml": """
            models:
              - name: time_spine
                time_spine: {standard_granularity_column: date_day}
                columns: [{name: date_day, granularity: day}]
            semantic_models:
              - name: people_sm
                model: ref('people')
                defaults: {agg_time_dimension: d}
                entities: [{name: person, type: primary, expr: id}]
                dimensions: [{name: d, type: time, expr: "date '2026-01-05'", type_params: {time_granularity: day}}]
                measures: [{name: people_count, agg: count, expr: id}]
            metrics:
              - {name: people_total, label: People, type: simple, type_params: {measure: people_count}}
            """,
    }
    project = make_project(tmp_path / "shop", files)
    with pytest.raises(RunFailed) as failure:
        run_pipeline(project)
    rendered = failure.value.render()
    assert "Semantic Manifest validation failed" in rendered and "Invalid name `d`" in rendered


# --- packages -----------------------------------------------------------------------------------

TINY_PACKAGE = {
    "dbt_project.yml": "name: tiny_utils\nversion: '1.0'\nconfig-version: 2\nmacro-paths: [macros]\n",
    "macros/cents.sql": "{% macro to_cents(column) %}cast(round({{ column }} * 100) as integer){% endmacro %}\n",
}

USES_PACKAGE = {
    "seeds/prices.csv": "item,price\npen,1.25\nbook,12.5\n",
    "models/marts/prices_in_cents.sql": "select item, {{ tiny_utils.to_cents('price') }} as cents from {{ ref('prices') }}\n",
}


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def deps_steps(project: LoadedProject) -> list[dict]:
    return [json.loads(s.detail) for s in last_run(project).steps if s.name == "dbt:deps"]


def test_local_package_is_installed_once_and_again_when_packages_change(tmp_path: Path) -> None:
    write_files(tmp_path / "tiny_utils", TINY_PACKAGE)
    project = make_project(tmp_path / "shop", {**USES_PACKAGE, "packages.yml": "packages:\n  - local: ../tiny_utils\n"})
    outcome = run_pipeline(project)
    assert outcome.published == {"prices_in_cents": 2}
    assert deps_steps(project) == [{"packages": ["../tiny_utils (a local folder)"]}]
    with Warehouse(project.root, project.config.warehouse).open_snapshot(Warehouse(project.root, project.config.warehouse).current_snapshot()) as con:
        assert sorted(con.execute("select * from prices_in_cents").fetchall()) == [("book", 1250), ("pen", 125)]

    run_pipeline(project)
    assert deps_steps(project) == []  # installed, nothing changed: no dbt deps

    # the declared set changes (dependencies.yml takes over): installed again, once
    (project.root / "packages.yml").unlink()
    (project.root / "dependencies.yml").write_text("packages:\n  - local: ../tiny_utils\n")
    run_pipeline(project)
    assert deps_steps(project) == [{"packages": ["../tiny_utils (a local folder)"]}]
    run_pipeline(project)
    assert deps_steps(project) == []

    # the installed folder disappears: installed again
    import shutil

    shutil.rmtree(project.root / "dbt_packages")
    run_pipeline(project)
    assert len(deps_steps(project)) == 1


def test_git_package_from_a_path_on_this_machine_needs_no_network(tmp_path: Path) -> None:
    import subprocess

    repo = write_files(tmp_path / "tiny_utils_repo", TINY_PACKAGE)
    for command in (["init", "-q", "-b", "main"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "tiny"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    project = make_project(tmp_path / "shop", {**USES_PACKAGE, "packages.yml": f"packages:\n  - git: {repo}\n    revision: main\n"})
    assert run_pipeline(project).published == {"prices_in_cents": 2}
    assert deps_steps(project) == [{"packages": [f"{repo} (from git)"]}]


def test_hub_package_without_network_is_a_clear_user_error(tmp_path: Path) -> None:
    """This machine reaches no package hub: the run stops before dbt build with exit 2, naming the
    package and how to vendor it, and keeps packages installed before."""
    import subprocess
    import sys

    write_files(tmp_path / "tiny_utils", TINY_PACKAGE)
    project = make_project(tmp_path / "shop", {**USES_PACKAGE, "packages.yml": "packages:\n  - local: ../tiny_utils\n"})
    run_pipeline(project)
    published = snapshot_name(project)

    (project.root / "packages.yml").write_text(
        "packages:\n  - local: ../tiny_utils\n  - package: dbt-labs/dbt_utils\n    version: [\">=1.0.0\", \"<2.0.0\"]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "headwater.cli.main", "run"], cwd=project.root, check=False, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "NO_COLOR": "1"}
    )
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert "dbt could not install dbt-labs/dbt_utils (from the dbt package hub): it needs the network" in text
    assert "- local: vendor/<name>" in text and "dbt deps" in text
    assert "tiny_utils" in [p.name for p in (project.root / "dbt_packages").iterdir()]  # the working install is kept
    assert snapshot_name(project) == published
    steps = {s.name: s.status for s in last_run(project).steps}
    assert steps == {"dbt:deps": "failed"}


# --- seeds read through source() ------------------------------------------------------------------

SEED_AS_SOURCE = {
    "seeds/countries.csv": "code,name\nde,Germany\nfr,France\nke,Kenya\n",
    "models/staging/_reference__sources.yml": """
        sources:
          - name: reference
            schema: main
            tables: [{name: countries}]
        """,
    "models/marts/country_names.sql": "select code, upper(name) as name from {{ source('reference', 'countries') }}\n",
}


def test_seed_first_loads_seeds_that_models_read_through_source(tmp_path: Path) -> None:
    seed_tests = "seeds:\n  - name: countries\n    columns:\n      - name: code\n        data_tests: [not_null]\n"
    project = make_project(tmp_path / "shop", {**SEED_AS_SOURCE, "seeds/_seeds.yml": seed_tests})
    set_dbt(project, "threads: 1")  # one thread: dbt's order (the model first) is certain
    with pytest.raises(RunFailed) as failure:
        run_pipeline(load_project(project.root))
    rendered = failure.value.render()
    assert "does not exist" in rendered
    assert "A model read the seed countries before dbt loaded it" in rendered and "seed_first: true" in rendered
    assert snapshot_name(project) is None

    set_dbt(project, "threads: 1", "seed_first: true")
    project = load_project(project.root)
    outcome = run_pipeline(project)
    assert outcome.published == {"country_names": 3}
    run = last_run(project)
    assert [(s.name, s.status) for s in run.steps] == [("dbt:seed", "success"), ("dbt:build", "success"), ("publish", "success")]
    seeded = json.loads(run.steps[0].detail)["nodes"]
    assert [(n["name"], n["resource_type"], n["status"], n["rows"]) for n in seeded] == [("countries", "seed", "success", 3)]
    assert run.steps[0].rows == 3

    from conftest_web import html_table, logged_in_client

    with logged_in_client(project) as client:
        page = client.get(f"/runs/{run.id}").text
    assert [row[:3] + row[4:] for row in html_table(page, "dbt-seed-nodes")[1:]] == [["countries", "seed", "success", "3"]]
    # dbt build loads no seed a second time; the seed's own tests still run in it
    assert sorted(row[:3] for row in html_table(page, "dbt-nodes")[1:]) == [["country_names", "model", "success"], ["not_null_countries_code", "test", "pass"]]


def test_a_failing_seed_first_stops_the_run_before_dbt_build(tmp_path: Path) -> None:
    files = {**SEED_AS_SOURCE, "seeds/countries.csv": "code,name\nde,Germany\n", "seeds/_seeds.yml": "seeds:\n  - name: countries\n    config: {column_types: {code: integer}}\n"}
    project = make_project(tmp_path / "shop", files)
    set_dbt(project, "seed_first: true")
    with pytest.raises(RunFailed) as failure:
        run_pipeline(load_project(project.root))
    assert failure.value.what.startswith("dbt seed failed: 1 node(s) failed") and "seed countries" in failure.value.render()
    assert [(s.name, s.status) for s in last_run(project).steps] == [("dbt:seed", "failed")]


# --- publishing a project without marts/ ----------------------------------------------------------


def headwater(*args: str, cwd: Path):
    from cli_process import cli_env, run_cli

    return run_cli(*args, cwd=cwd, timeout=300, env=cli_env(NO_COLOR="1", COLUMNS="200"))


def test_nothing_to_publish_names_the_models_there_are_and_the_lines_to_write(tmp_path: Path) -> None:
    files = {"models/customers.sql": "select 1 as customer_id\n", "models/staging/stg_orders.sql": "select 2 as order_id\n"}
    project = make_project(tmp_path / "shop", files)
    result = headwater("run", cwd=project.root)
    assert result.returncode == 1, result.stderr
    assert "Nothing to publish: no model matches the pipeline's publish list" in result.stderr
    assert "this project has folders staging/; models at the top of models/: customers" in result.stderr
    # the suggestion is printed as written (brackets are not console markup), and it works
    suggestion = "pipelines:\n  default:\n    publish: [staging, customers]"
    assert "Fix: Say what readers may see in headwater.yml" in result.stderr and suggestion in result.stderr
    settings = project.root / "headwater.yml"
    settings.write_text(settings.read_text().replace("pipelines: {}", suggestion))
    assert run_pipeline(load_project(project.root)).published == {"customers": 1, "stg_orders": 1}


def test_nothing_to_publish_in_a_project_without_models(tmp_path: Path) -> None:
    project = make_project(tmp_path / "shop", {})
    with pytest.raises(RunFailed) as failure:
        run_pipeline(project)
    assert failure.value.what == "Nothing to publish: the dbt project has no models"
    assert "Write models" in failure.value.render()


# --- headwater init --dbt-project -------------------------------------------------------------------

EXISTING_DBT = {
    "dbt_project.yml": "name: analytics\nprofile: warehouse\nversion: '1.0'\nconfig-version: 2\n",
    "models/marts/orders.sql": "select 1 as order_id union all select 2\n",
    ".gitignore": "target/\ndbt_packages/",
}


def test_init_points_a_new_project_at_an_existing_dbt_project(tmp_path: Path) -> None:
    write_files(tmp_path / "analytics", EXISTING_DBT)
    result = headwater("init", "platform", "--dbt-project", "analytics", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "building the dbt project in analytics" in result.stdout and "publish:" in result.stdout
    root = tmp_path / "platform"
    assert "dbt:\n  project_dir: ../analytics\n" in (root / "headwater.yml").read_text()
    assert sorted(p.name for p in root.iterdir()) == [".gitignore", "dashboards", "headwater.yml"]  # no dbt scaffold
    assert run_pipeline(load_project(root)).published == {"orders": 2}


def test_init_inside_the_dbt_project_itself(tmp_path: Path) -> None:
    dbt_dir = write_files(tmp_path / "analytics", EXISTING_DBT)
    before = {p.name for p in dbt_dir.iterdir()}
    result = headwater("init", ".", "--dbt-project", ".", cwd=dbt_dir)
    assert result.returncode == 0, result.stderr
    assert "dbt:\n  project_dir: .\n" in (dbt_dir / "headwater.yml").read_text()
    assert "name: analytics" in (dbt_dir / "headwater.yml").read_text()
    assert {p.name for p in dbt_dir.iterdir()} == before | {"headwater.yml", "dashboards"}
    assert (dbt_dir / ".gitignore").read_text() == "target/\ndbt_packages/\n.headwater/\n"  # kept, one entry added
    assert (dbt_dir / "dbt_project.yml").read_text() == EXISTING_DBT["dbt_project.yml"]
    assert run_pipeline(load_project(dbt_dir)).published == {"orders": 2}


@pytest.mark.parametrize(
    ("target", "says"),
    [("missing", "--dbt-project missing: no such folder"), ("not_dbt", "--dbt-project not_dbt: no dbt_project.yml in that folder")],
)
def test_init_refuses_a_folder_that_is_no_dbt_project(tmp_path: Path, target: str, says: str) -> None:
    (tmp_path / "not_dbt").mkdir()
    (tmp_path / "not_dbt" / "README.md").write_text("not a dbt project")
    result = headwater("init", "platform", "--dbt-project", target, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert says in result.stderr and "Fix:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "platform").exists()


def test_dbt_duckdbs_private_environment_is_still_where_headwater_closes_it() -> None:
    """warehouse/duckdb/dbt.py `release_duckdb` relies on dbt-duckdb's private `_ENV` and `_LOCK` (it has no
    public call that closes its DuckDB instance). When this fails, dbt-duckdb changed them: find
    its new way to close the environment and change `release_duckdb`, or publishing after a
    build fails to reopen the build database."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    from headwater.warehouse.duckdb.dbt import release_duckdb

    assert hasattr(DuckDBConnectionManager, "_ENV"), "dbt-duckdb no longer has DuckDBConnectionManager._ENV"
    assert hasattr(DuckDBConnectionManager._LOCK, "__enter__"), "dbt-duckdb's DuckDBConnectionManager._LOCK is no lock"

    class Environment:
        closed = False

        def close(self) -> None:
            self.closed = True

    env, saved = Environment(), DuckDBConnectionManager._ENV
    DuckDBConnectionManager._ENV = env
    try:
        release_duckdb()
        assert env.closed and DuckDBConnectionManager._ENV is None
    finally:
        if DuckDBConnectionManager._ENV is None:
            DuckDBConnectionManager._ENV = saved

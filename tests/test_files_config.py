"""File sources in headwater.yml: mistakes are errors naming their line, before anything is read;
and the byte-level helpers the CSV reader relies on."""

from __future__ import annotations

import pytest
from files_project import make_project
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.clean.headers import column_names, find_header_row, snake_case
from headwater.config.files import TableRules
from headwater.errors import ConfigError
from headwater.sources.files.inspect import _BlankLines


@pytest.mark.parametrize(
    ("yaml", "line", "message"),
    [
        ("r:\n  type: csv\n  path: a.csv\n  colums: {}\n", 6, "unknown key 'colums' — did you mean 'columns'?"),
        ("r:\n  type: csv\n", 3, "path: is missing"),
        ("r:\n  type: csv\n  path: a.csv\n  columns:\n    d: {type: date, format: '%d/%m/%H'}\n", 7, "has a time of day: make the column a datetime"),
        ("r:\n  type: csv\n  path: a.csv\n  columns:\n    d: {type: date, format: '%Q'}\n", 7, "%Q is not a supported directive"),
        ("r:\n  type: csv\n  path: a.csv\n  columns:\n    p: {regex: '(unclosed'}\n", 7, "regex '(unclosed' is not valid"),
        ("r:\n  type: csv\n  path: a.csv\n  columns:\n    p: {min: 3}\n", 7, "min is for numbers and dates, not text columns"),
        ("r:\n  type: csv\n  path: a.csv\n  columns:\n    t: {type: datetime, timezone: Mars/Olympus}\n", 7, "'Mars/Olympus' is not an IANA time zone"),
        ("r:\n  type: csv\n  path: a.csv\n  max_bad_rows: lots\n", 6, "max_bad_rows must be a count (e.g. 10) or a percent"),
        ("r:\n  type: csv\n  path: a.csv\n  columns:\n    b: {type: boolean, true_values: [y], false_values: [Y]}\n", 7, "y cannot be both true and false"),
        ("r:\n  type: csv\n  tables: {a: {path: a.csv}}\n  unique: [id]\n", 3, "with tables:, put unique under each table"),
        ("r:\n  type: excel\n  path: a.xlsx\n  sheet: '*'\n  table: t\n", 3, "sheet: '*' makes one table per sheet"),
        ("r:\n  type: google_sheets\n  spreadsheet_id: 1234567890ab\n", 3, "credentials"),
        ("r:\n  type: csvv\n  path: a.csv\n", 4, "unknown type 'csvv' — did you mean 'csv'?"),
    ],
)
def test_mistakes_name_their_line(tmp_path, yaml, line, message):
    with pytest.raises(ConfigError) as caught:
        make_project(tmp_path, yaml)
    text = caught.value.what
    assert f"headwater.yml:{line}:" in text and message in text, text


def test_a_plain_csv_source_is_valid_with_defaults(tmp_path):
    source = make_project(tmp_path, "r: {type: csv, path: data/r.csv}\n").config.sources["r"]
    assert (source.whitespace, source.drop_empty_rows, source.max_bad_rows, source.encoding, source.header) == ("collapse", True, "50%", "auto", True)  # more than half the rows bad fails a table (docs/files.md)


@pytest.mark.parametrize(
    ("text", "name"),
    [("Phone #", "phone"), ("E-mail Address", "e_mail_address"), ("firstName", "first_name"), ("Région", "region"), ("2024 total", "c_2024_total"), ("  ", ""), ("Active?", "active")],
)
def test_snake_case(text, name):
    assert snake_case(text) == name


def test_column_names_are_unique_and_renamed():
    rules = TableRules(rename={"Phone #": "mobile"})
    assert column_names(["Name", "name", "Phone #", "", "Name_2"], rules, "x") == ["name", "name_3", "mobile", "column_4", "name_2"]
    with pytest.raises(ConfigError, match="rename names the header 'Phon'"):
        column_names(["Phone"], TableRules(rename={"Phon": "p"}), "x")


def test_header_row_is_found_below_titles():
    rows = [["Roster 2024", "", ""], [], ["", "updated by Ana", ""], ["Name", "Region", "Phone"], ["Ana", "North", "1"]]
    assert find_header_row(rows) == 3
    assert find_header_row([["only"], ["a"]]) == 0
    assert find_header_row([]) == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["", "a", "bc", "d,e", '"q"']), max_size=15),
    st.booleans(),
    st.booleans(),
    st.lists(st.integers(0, 200), max_size=6),
)
def test_blank_lines_are_found_across_any_chunking(lines, crlf, trailing, cuts):
    newline = "\r\n" if crlf else "\n"
    data = (newline.join(lines) + (newline if trailing else "")).encode()
    finder = _BlankLines()
    position = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        finder.feed(data[position:cut])
        position = cut
    empty = b"\r" if crlf and b"\r\n" in data else b""
    assert finder.found == [n for n, line in enumerate(data.split(b"\n")[:-1], 1) if line == empty]

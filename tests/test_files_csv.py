"""CSV sources on messy files the tests write: every defect has its expected quarantine row, the
good rows load typed, and a file that did not change is not read twice."""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager

import pytest
from files_project import make_project, quarantine, query, sync, write
from loopback import QuietHandler, http_server

from headwater.clean.load import TooManyBadRows
from headwater.errors import ConfigError, ExitCode, HeadwaterError, NotFound

ROSTER = "roster:\n  type: csv\n  path: data/roster.csv\n"


def test_a_plain_csv_needs_no_rules(tmp_path):
    write(tmp_path / "data/roster.csv", "Full Name,Phone #,PIN Code,Joined On\nAna Smith,0123456789,007,2024-03-05\nBob  Lee , 0987654321 ,110001,\n")
    project = make_project(tmp_path, ROSTER)
    [stats] = sync(project, "roster")
    assert (stats.table, stats.rows, stats.rows_read, stats.quarantined, stats.mode) == ("roster", 2, 2, 0, "full")
    rows = query(project, "SELECT full_name, phone, pin_code, joined_on, _headwater_row FROM raw_roster.roster ORDER BY 1")
    # snake_case names, text kept as written (leading zeros!), whitespace trimmed and collapsed, empty is NULL
    assert rows == [("Ana Smith", "0123456789", "007", "2024-03-05", 2), ("Bob Lee", "0987654321", "110001", None, 3)]
    types = dict(query(project, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'raw_roster' AND table_name = 'roster'"))
    assert types["phone"] == "VARCHAR" and types["_headwater_synced_at"] == "TIMESTAMP WITH TIME ZONE"


RULES = """
roster:
  type: csv
  path: data/roster.csv
  unique: [email]
  max_bad_rows: 100%                      # every row of MESSY breaks a rule: quarantined, not refused
  columns:
    age: {type: integer, min: 0, max: 120}
    gender: {map: {m: male, f: female}, case: lower, allowed_values: [male, female, other]}
    joined: {type: date, format: ['%d/%m/%Y', excel]}
    phone: {regex: '0[0-9]{9}'}
    active: {type: boolean}
    amount: {type: decimal}
    name: {required: true}
"""

MESSY = (
    "Volunteer roster — export of 3 March\n"  # 1: a stray title row
    "\n"  # 2
    "Name,Age,Gender,Joined,Phone,Email,Active,Amount\n"  # 3: the header
    "Ana Smith,34,M,05/03/2024,0123456789,ana@x.org,yes,\"1,234.50\"\n"  # 4: good (value map, date, thousands)
    "Bob,thirty,male ,45356,0123456780,bob@x.org,N,12\n"  # 5: age is not a number
    "Cy,200,Male,2024-01-02,0123456781,cy@x.org,1,3\n"  # 6: age out of range
    "Dee,5,x,01/01/2020,0123456782,dee@x.org,0,4\n"  # 7: gender not allowed
    "Eve,6,f,31/02/2024,0123456783,eve@x.org,true,5\n"  # 8: no 31 February
    "Fay,7,F,01/01/2020,2.02555E+09,fay@x.org,no,6\n"  # 9: a phone number in scientific notation
    "Gus,8,other,01/01/2020,0123456784,ana@x.org,maybe,7\n"  # 10: repeated e-mail and a non-boolean
    ",9,m,01/01/2020,0123456785,hal@x.org,y,8\n"  # 11: name is required
    ",,,,,,,\n"  # 12: an empty row: skipped, not quarantined
    "Ida,10,f,01/01/2020,0123456786,ida@x.org,no,1.2.3\n"  # 13: not a number
)


def test_every_broken_rule_is_quarantined_with_its_reason(tmp_path):
    write(tmp_path / "data/roster.csv", MESSY)
    project = make_project(tmp_path, RULES)
    logged: list[str] = []
    [stats] = sync(project, "roster", log=logged.append)
    assert quarantine(project, "roster", "roster") == [
        (4, "email", "ana@x.org", "unique"),
        (5, "age", "thirty", "type"),
        (6, "age", "200", "range"),
        (7, "gender", "x", "allowed_values"),
        (8, "joined", "31/02/2024", "type"),
        (9, "phone", "2.02555E+09", "regex"),
        (10, "active", "maybe", "type"),
        (10, "email", "ana@x.org", "unique"),
        (11, "name", None, "required"),
        (13, "amount", "1.2.3", "type"),
    ]
    assert (stats.rows_read, stats.rows, stats.quarantined) == (10, 0, 9)
    assert stats.quarantine_by_rule == {
        "unique (email)": 2, "type (age)": 1, "range (age)": 1, "allowed_values (gender)": 1, "type (joined)": 1,
        "regex (phone)": 1, "type (active)": 1, "required (name)": 1, "type (amount)": 1,
    }
    assert stats.notes[0] == "email: 'ana@x.org' x2 (unique)"
    assert "1 empty row skipped" in stats.notes
    messages = {(r, c): m for r, c, m in query(project, "SELECT row_number, column_name, message FROM raw_roster.roster__quarantine")}
    assert messages[(6, "age")] == "above the maximum 120.0"
    assert messages[(8, "joined")].startswith("expected a date as %d/%m/%Y or YYYY-MM-DD or an Excel serial")
    assert messages[(4, "email")] == "the key email = ana@x.org appears in 2 rows"
    assert any("10 rows read, 0 loaded, 9 quarantined" in line for line in logged)


def test_good_rows_load_typed_and_cleaned(tmp_path):
    good = "Name,Age,Gender,Joined,Phone,Email,Active,Amount\n" "  Ana   Smith ,34,M,05/03/2024,0123456789,ana@x.org,yes,\"1,234.50\"\n" "Bob,40,male ,45356,0123456780,bob@x.org,N,12\n"
    write(tmp_path / "data/roster.csv", good)
    project = make_project(tmp_path, RULES)
    sync(project, "roster")
    assert query(project, "SELECT name, age, gender, joined, phone, active, amount FROM raw_roster.roster ORDER BY _headwater_row") == [
        ("Ana Smith", 34, "male", dt.date(2024, 3, 5), "0123456789", True, 1234.5),
        ("Bob", 40, "male", dt.date(2024, 3, 5), "0123456780", False, 12.0),
    ]
    assert query(project, "SELECT count(*) FROM raw_roster.roster__quarantine") == [(0,)]


@pytest.mark.parametrize(
    ("encoding", "declared"),
    [("utf-8", None), ("utf-8-sig", None), ("utf-16", None), ("cp1252", None), ("utf-16-le", "utf-16-le"), ("latin-1", "latin-1")],
)
def test_encodings(tmp_path, encoding, declared):
    text = "name;city;note\r\nJosé;Zürich;“quoted” €5\r\nRenée;Köln;naïve café\r\n"
    if encoding == "latin-1":
        text = text.replace("“", "«").replace("”", "»").replace("€", "EUR")
    write(tmp_path / "data/roster.csv", text, encoding)
    project = make_project(tmp_path, ROSTER + (f"  encoding: {declared}\n" if declared else ""))
    [stats] = sync(project, "roster")
    rows = query(project, "SELECT name, city, note FROM raw_roster.roster ORDER BY _headwater_row")
    assert rows == [tuple(line.split(";")) for line in text.strip().split("\r\n")[1:]]
    detected = [n for n in stats.notes if "not UTF-8" in n]
    assert bool(detected) == (encoding in ("utf-16", "cp1252")), stats.notes


def test_undecodable_bytes_give_a_clear_error(tmp_path):
    write(tmp_path / "data/roster.csv", "name\nok\n").write_bytes(b"name\nab\x81\x8d\n")  # bytes cp1252 leaves undefined
    project = make_project(tmp_path, ROSTER + "  encoding: windows-1252\n")
    with pytest.raises(HeadwaterError) as caught:
        sync(project, "roster")
    assert "not readable as cp1252" in caught.value.what and "encoding:" in caught.value.fix


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_and_quotes_are_sniffed(tmp_path, delimiter):
    d = delimiter
    text = f'id{d}name{d}comment\n1{d}"Smith{d} Ana"{d}"said ""hi""\nthen left"\n2{d}Bob{d}plain\n'
    write(tmp_path / "data/roster.csv", text)
    project = make_project(tmp_path, ROSTER)
    sync(project, "roster")
    assert query(project, "SELECT id, name, comment, _headwater_row FROM raw_roster.roster ORDER BY id") == [
        ("1", "Smith Ana" if d == "\t" else f"Smith{d} Ana", 'said "hi" then left', 2),  # whitespace runs (a line break, a tab) collapse
        ("2", "Bob", "plain", 3),
    ]


def test_ragged_rows_and_row_numbers_after_blank_lines(tmp_path):
    text = (
        "a,b,c\n"  # 1
        "1,x,y\n"  # 2
        "\n"  # 3: a blank line, which the CSV reader skips
        "2,x\n"  # 4: short: padded with NULL
        "3,x,y,,\n"  # 5: long by empty fields only (a trailing delimiter): kept
        "4,x,y,z\n"  # 6: a fourth value with no column: quarantined
        '5,"two\nlines",y\n'  # 7: a line break inside quotes is one row
        "6,x,y\n"  # 8
    )
    write(tmp_path / "data/roster.csv", text)
    project = make_project(tmp_path, ROSTER + "  columns: {a: {type: integer, max: 5}}\n")
    [stats] = sync(project, "roster")
    assert query(project, "SELECT a, b, c, _headwater_row FROM raw_roster.roster ORDER BY a") == [
        (1, "x", "y", 2), (2, "x", None, 4), (3, "x", "y", 5), (5, "two lines", "y", 7),
    ]
    assert quarantine(project, "roster", "roster") == [(6, None, "4,x,y,z", "ragged_row"), (8, "a", "6", "range")]
    assert (stats.rows_read, stats.rows, stats.quarantined) == (6, 4, 2)


def test_header_below_a_title_and_merged_group_labels(tmp_path):
    text = "Chapter list 2024,,,\n,,,\n,Contact,,\nChapter,Phone,E-mail,Phone\nNorth,1,n@x.org,2\n"
    write(tmp_path / "data/roster.csv", text)
    project = make_project(tmp_path, ROSTER + "  header_row: 3\n  header_rows: 2\n")
    sync(project, "roster")
    columns = [r[0] for r in query(project, "SELECT column_name FROM information_schema.columns WHERE table_name = 'roster' ORDER BY ordinal_position")]
    assert columns[:4] == ["chapter", "contact_phone", "contact_e_mail", "contact_phone_2"]
    assert query(project, "SELECT chapter, contact_phone, _headwater_row FROM raw_roster.roster") == [("North", "1", 5)]


def test_found_header_rename_and_no_header(tmp_path):
    write(tmp_path / "data/roster.csv", "Roster\nFirst Name,Region\nAna,North\n")
    project = make_project(tmp_path, ROSTER + "  rename: {First Name: given_name}\n")
    sync(project, "roster")
    assert query(project, "SELECT given_name, region, _headwater_row FROM raw_roster.roster") == [("Ana", "North", 3)]
    write(tmp_path / "data/roster.csv", "Ana,North\nBob,South\n")
    project = make_project(tmp_path, ROSTER + "  header: false\n")
    sync(project, "roster")
    assert query(project, "SELECT column_1, column_2, _headwater_row FROM raw_roster.roster ORDER BY 3") == [("Ana", "North", 1), ("Bob", "South", 2)]


def test_unchanged_file_is_skipped_and_a_change_replaces_the_rows(tmp_path):
    path = write(tmp_path / "data/roster.csv", "id,name\n1,Ana\n2,Bob\n")
    project = make_project(tmp_path, ROSTER + "  columns: {id: {type: integer}}\n")
    assert sync(project, "roster")[0].mode == "full"
    path.touch()  # a new modification time, the same bytes
    [again] = sync(project, "roster")
    assert (again.mode, again.rows, again.rows_read) == ("skipped", 2, 0)
    write(path, "id,name\n1,Ana\n3,Cy\nx,Bad\n")
    [changed] = sync(project, "roster")
    assert (changed.mode, changed.rows, changed.quarantined) == ("full", 2, 1)
    assert query(project, "SELECT id, name FROM raw_roster.roster ORDER BY id") == [(1, "Ana"), (3, "Cy")]
    [skipped] = sync(project, "roster")  # the quarantine still holds the bad row: a skip says so
    assert (skipped.mode, skipped.quarantined, skipped.quarantine_by_rule) == ("skipped", 1, {"type (id)": 1})
    assert sync(project, "roster", full_refresh=True)[0].mode == "full"
    state = query(project, "SELECT state ->> 'content_sha256' FROM _headwater.sync_state WHERE source = 'roster' AND table_name = 'roster'")
    import hashlib

    assert state == [(hashlib.sha256(f"data/roster.csv\0{hashlib.sha256(path.read_bytes()).hexdigest()}\0".encode()).hexdigest(),)]


def test_changing_a_rule_reloads_an_unchanged_file(tmp_path):
    write(tmp_path / "data/roster.csv", "id,name\n1,Ana\n")
    project = make_project(tmp_path, ROSTER)
    sync(project, "roster")
    project = make_project(tmp_path, ROSTER + "  columns: {id: {type: integer}}\n")
    [stats] = sync(project, "roster")
    assert stats.mode == "full" and stats.schema_changes == ["column id: VARCHAR -> BIGINT"]


def test_too_many_bad_rows_fail_and_keep_the_previous_data(tmp_path):
    path = write(tmp_path / "data/roster.csv", "id,region\n1,North\n2,South\n3,East\n4,West\n")
    rules = ROSTER + "  max_bad_rows: 25%\n  columns: {region: {allowed_values: [North, South, East, West]}}\n"
    project = make_project(tmp_path, rules)
    sync(project, "roster")
    write(path, "id,region\n1,North\n2,Sout\n3,Est\n4,West\n5,Nort\n")
    with pytest.raises(TooManyBadRows) as caught:
        sync(project, "roster")
    error = caught.value
    assert error.exit_code == ExitCode.USER_ERROR  # the file or the rules are the user's to fix
    assert "3 of 5 rows broke cleaning rules, more than max_bad_rows (25% = 1 rows)" in error.what
    assert "allowed_values (region): 3" in error.why and "region: 'Est' x1 (allowed_values)" in error.why
    assert "previous data was kept" in error.fix
    assert query(project, "SELECT id, region FROM raw_roster.roster ORDER BY id") == [("1", "North"), ("2", "South"), ("3", "East"), ("4", "West")]
    assert query(project, "SELECT count(*) FROM raw_roster.roster__quarantine") == [(0,)]
    write(path, "id,region\n1,North\n2,Sout\n3,East\n4,West\n")  # 1 of 4 bad: within 25%
    assert sync(project, "roster")[0].quarantined == 1


def test_count_threshold(tmp_path):
    write(tmp_path / "data/roster.csv", "id\n1\nx\ny\n")
    project = make_project(tmp_path, ROSTER + "  max_bad_rows: 1\n  columns: {id: {type: integer}}\n")
    with pytest.raises(TooManyBadRows, match="2 of 3 rows broke cleaning rules, more than max_bad_rows \\(1\\)"):
        sync(project, "roster")
    assert query(project, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw_roster'") == [(0,)]


def test_a_glob_is_one_table_of_all_files(tmp_path):
    write(tmp_path / "data/2024-01.csv", "id,region\n1,North\n")
    write(tmp_path / "data/2024-02.csv", "region,id,extra\nSouth,2,x\n")
    project = make_project(tmp_path, "monthly:\n  type: csv\n  path: data/2024-*.csv\n")
    [stats] = sync(project, "monthly")
    assert query(project, "SELECT id, region, extra, _headwater_file, _headwater_row FROM raw_monthly.monthly ORDER BY id") == [
        ("1", "North", None, "data/2024-01.csv", 2),
        ("2", "South", "x", "data/2024-02.csv", 2),
    ]
    assert "data/2024-01.csv has no column extra (NULL in its rows)" in stats.notes


def test_missing_files_and_misnamed_rule_columns(tmp_path):
    project = make_project(tmp_path, ROSTER)
    with pytest.raises(ConfigError, match="does not exist"):
        sync(project, "roster")
    project = make_project(tmp_path, "m:\n  type: csv\n  path: data/*.csv\n")
    with pytest.raises(NotFound, match=r"no file matches data/\*\.csv"):
        sync(project, "m")
    write(tmp_path / "data/roster.csv", "Region Name,id\nNorth,1\n")
    project = make_project(tmp_path, ROSTER + "  columns: {region: {case: upper}}\n")
    with pytest.raises(ConfigError) as caught:
        sync(project, "roster")
    assert "the rules name column 'region', which the file does not have" in caught.value.what
    assert "Did you mean 'region_name'?" in caught.value.fix


def _serve(files: dict[str, bytes]) -> AbstractContextManager[str]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            self.wfile.write(body or b"not found")

    return http_server(Handler)


def test_a_csv_from_a_url(tmp_path):
    files = {"/pub?output=csv": b"Region,Lead\nNorth,Ana\n"}
    with _serve(files) as base:
        project = make_project(tmp_path, f"regions:\n  type: csv\n  path: {base}/pub?output=csv\n")
        [stats] = sync(project, "regions")
        assert query(project, "SELECT region, lead, _headwater_file FROM raw_regions.regions") == [("North", "Ana", f"{base}/pub?output=csv")]
        assert sync(project, "regions")[0].mode == "skipped"  # same bytes downloaded again
        files["/pub?output=csv"] = b"Region,Lead\nNorth,Ana\nSouth,Bob\n"
        assert sync(project, "regions")[0].rows == 2
        project = make_project(tmp_path, f"regions:\n  type: csv\n  path: {base}/missing.csv\n")
        with pytest.raises(HeadwaterError, match="HTTP 404"):
            sync(project, "regions")
        assert stats.rows == 1


def test_several_tables_and_selecting_one(tmp_path):
    write(tmp_path / "data/a.csv", "x\n1\n")
    write(tmp_path / "data/b.csv", "y\n2\n")
    project = make_project(tmp_path, "lookups:\n  type: csv\n  tables:\n    a: {path: data/a.csv}\n    b: {path: data/b.csv, columns: {y: {type: integer}}}\n")
    assert [s.table for s in sync(project, "lookups")] == ["a", "b"]
    assert [s.mode for s in sync(project, "lookups", tables=["b"], full_refresh=True)] == ["full"]
    with pytest.raises(NotFound, match="has no table c"):
        sync(project, "lookups", tables=["c"])


@pytest.mark.parametrize(("text", "read"), [("", 0), ("id,name\n", 0), ("\n\n", 1)])  # a blank line is read, and skipped
def test_empty_files_load_empty_tables(tmp_path, text, read):
    write(tmp_path / "data/roster.csv", text)
    project = make_project(tmp_path, ROSTER)
    [stats] = sync(project, "roster")
    assert (stats.rows, stats.rows_read, stats.quarantined) == (0, read, 0)
    assert query(project, "SELECT count(*) FROM raw_roster.roster") == [(0,)]

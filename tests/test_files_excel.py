"""Excel sources on workbooks the tests write with xlsxwriter (.xlsx) and xlwt (.xls): a title above
the header, merged header cells, formulas, error cells, numbers stored as text, dates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import xlsxwriter
from files_project import make_project, quarantine, query, sync

from headwater.errors import HeadwaterError, NotFound

SOURCE = "org:\n  type: excel\n  path: data/organizers.xlsx\n"


def organizers_workbook(path: Path) -> Path:
    """A roster as people keep them: a title, a blank row, a merged 'Contact' label over two columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Organizers")
    bold = book.add_format({"bold": True})
    sci = book.add_format({"num_format": "0.00E+00"})
    day = book.add_format({"num_format": "dd/mm/yyyy"})
    sheet.write(0, 0, "Field organizers (updated March)", bold)  # row 1: a title
    sheet.merge_range(2, 2, 2, 3, "Contact", bold)  # row 3: merged over C:D
    sheet.write_row(3, 0, ["Name", "Region", "Phone", "E-mail", "Start", "Shifts", "Active?"], bold)  # row 4
    sheet.write_row(4, 0, ["Ana Smith ", "north metro"])  # row 5
    sheet.write_number(4, 2, 2025550143, sci)  # a phone number Excel shows as 2.03E+09
    sheet.write_string(4, 3, "ana@x.org")
    sheet.write_datetime(4, 4, dt.datetime(2024, 3, 5), day)
    sheet.write_formula(4, 5, "=2+3", None, 5)  # the cached value is what counts
    sheet.write_boolean(4, 6, True)
    sheet.write_row(5, 0, ["Bob Lee", "RIVER VALLEY ", "0123456789", "bob@x.org", "05/03/2024", "12", "no"])  # row 6: text numbers
    sheet.write_row(6, 0, ["Cy", "Lakeshore", "555", "cy@x.org"])  # row 7
    sheet.write_formula(6, 4, "=1/0", None, "#DIV/0!")
    sheet.write_row(8, 0, ["Dee", "Nort Metro", "0123456780", "dee@x.org", "01/01/2020", 1, "yes"])  # row 9 (row 8 blank)
    other = book.add_worksheet("Regions")
    other.write_row(0, 0, ["Region", "Code"])
    other.write_row(1, 0, ["North Metro", "007"])
    book.close()
    return path


RULES = """
org:
  type: excel
  path: data/organizers.xlsx
  sheet: Organizers
  table: organizers
  columns:
    region: {case: title, allowed_values: [North Metro, River Valley, Lakeshore]}
    phone: {regex: '[0-9]{10}'}
    start: {type: date, format: '%d/%m/%Y'}
    shifts: {type: integer}
    active: {type: boolean}
"""


def test_a_messy_sheet_is_cleaned_and_its_bad_rows_quarantined(tmp_path):
    organizers_workbook(tmp_path / "data/organizers.xlsx")
    project = make_project(tmp_path, RULES)
    [stats] = sync(project, "org")
    assert query(project, "SELECT name, region, phone, e_mail, start, shifts, active, _headwater_row FROM raw_org.organizers ORDER BY _headwater_row") == [
        ("Ana Smith", "North Metro", "2025550143", "ana@x.org", dt.date(2024, 3, 5), 5, True, 5),
        ("Bob Lee", "River Valley", "0123456789", "bob@x.org", dt.date(2024, 3, 5), 12, False, 6),
    ]
    assert quarantine(project, "org", "organizers") == [
        (7, "phone", "555", "regex"),
        (7, "start", "#DIV/0!", "cell_error"),
        (9, "region", "Nort Metro", "allowed_values"),
    ]
    label = query(project, "SELECT DISTINCT source_file FROM raw_org.organizers__quarantine")
    assert label == [("data/organizers.xlsx [Organizers]",)]
    assert (stats.rows_read, stats.rows, stats.quarantined) == (5, 2, 2)  # the blank row 8 is read, and skipped
    assert "1 empty row skipped" in stats.notes


def test_merged_group_labels_make_the_header(tmp_path):
    organizers_workbook(tmp_path / "data/organizers.xlsx")
    project = make_project(tmp_path, SOURCE + "  header_row: 3\n  header_rows: 2\n")
    sync(project, "org")
    columns = [r[0] for r in query(project, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw_org' AND table_name = 'org' ORDER BY ordinal_position")]
    assert columns[:7] == ["name", "region", "contact_phone", "contact_e_mail", "start", "shifts", "active"]


def test_every_sheet_and_sheets_by_position(tmp_path):
    organizers_workbook(tmp_path / "data/organizers.xlsx")
    project = make_project(tmp_path, SOURCE + "  sheet: '*'\n")
    stats = sync(project, "org")
    assert [s.table for s in stats] == ["organizers", "regions"]
    assert query(project, "SELECT region, code FROM raw_org.regions") == [("North Metro", "007")]  # text keeps its zeros
    project = make_project(tmp_path, SOURCE + "  sheet: 2\n")
    sync(project, "org")
    assert query(project, "SELECT region FROM raw_org.org") == [("North Metro",)]


def test_an_unknown_sheet_names_the_ones_there(tmp_path):
    organizers_workbook(tmp_path / "data/organizers.xlsx")
    project = make_project(tmp_path, SOURCE + "  sheet: Organisers\n")
    with pytest.raises(NotFound) as caught:
        sync(project, "org")
    assert "has no sheet 'Organisers'" in caught.value.what
    assert caught.value.why == "its sheets: Organizers, Regions" and "Did you mean 'Organizers'?" in caught.value.fix


def test_an_unchanged_workbook_is_skipped(tmp_path):
    path = organizers_workbook(tmp_path / "data/organizers.xlsx")
    project = make_project(tmp_path, SOURCE + "  tables:\n    people: {sheet: Organizers}\n    regions: {sheet: Regions}\n")
    assert [s.mode for s in sync(project, "org")] == ["full", "full"]
    assert [s.mode for s in sync(project, "org")] == ["skipped", "skipped"]
    path.write_bytes(path.read_bytes())  # same bytes, new timestamp
    assert [s.mode for s in sync(project, "org")] == ["skipped", "skipped"]


def test_xls_workbooks(tmp_path):
    import xlwt  # in the test extra: writes the .xls file
    book = xlwt.Workbook()
    sheet = book.add_sheet("Chapters")
    sheet.write(0, 0, "Chapter list")
    for col, text in enumerate(["Chapter", "PIN", "Members", "Founded"]):
        sheet.write(2, col, text)
    sheet.write(3, 0, "Pune ")
    sheet.write(3, 1, "411001")
    sheet.write(3, 2, 42)
    sheet.write(3, 3, dt.date(2019, 6, 1), xlwt.easyxf(num_format_str="YYYY-MM-DD"))
    path = tmp_path / "data/chapters.xls"
    path.parent.mkdir(parents=True)
    book.save(str(path))
    project = make_project(tmp_path, "ch:\n  type: excel\n  path: data/chapters.xls\n  columns: {members: {type: integer}, founded: {type: date}}\n")
    sync(project, "ch")
    assert query(project, "SELECT chapter, pin, members, founded, _headwater_row FROM raw_ch.ch") == [("Pune", "411001", 42, dt.date(2019, 6, 1), 4)]


def test_a_file_that_is_not_a_workbook(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/organizers.xlsx").write_text("name,region\nAna,North\n")  # a CSV saved with the wrong name
    project = make_project(tmp_path, SOURCE)
    with pytest.raises(HeadwaterError) as caught:
        sync(project, "org")
    assert "holds text, not a workbook" in caught.value.what and "Write type: csv" in (caught.value.fix or "")
    (tmp_path / "data/organizers.xlsx").write_bytes(b"PK\x03\x04" + bytes(200))  # a zip archive, broken: no workbook in it
    with pytest.raises(HeadwaterError) as caught:
        sync(project, "org")
    assert "is not a readable workbook" in caught.value.what and "Save it as .xlsx" in (caught.value.fix or "")

"""Google Sheets sources, round trip against a local server speaking the Sheets API's wire format
(tests/sheets_server.py): service-account sign-in, batchGet, tabs, errors a person can act on."""

from __future__ import annotations

import datetime as dt

import pytest
from files_project import make_project, quarantine, query, sync
from sheets_server import Formatted, new_service_account, sheets_server

from headwater.errors import HeadwaterError, NotFound

SHEET = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"


def chapters() -> list[list]:
    """A tab as people keep it: a title, a blank row, then the table (each test gets its own copy)."""
    return [
        ["Chapter list — keep up to date"],
        [],
        ["Chapter", "Region", "Members", "Founded", "PIN"],
        ["Pune ", "west", 42, Formatted(43617, "01/06/2019"), "411001"],
        ["Delhi", "NORTH", 120.0, Formatted(44000, "18/06/2020"), "110001"],
        ["Agra", "Nrth", "many", Formatted(44100, "26/09/2020"), "282001"],
    ]


def source(fake, extra: str = "") -> str:
    return f"""
chapters:
  type: google_sheets
  spreadsheet_id: {SHEET}
  credentials: ${{GOOGLE_SA_KEY}}
  api_url: {fake.url}
  {extra}
"""


RULES = "range: Chapters\n  columns: {region: {case: title, allowed_values: [North, South, East, West]}, members: {type: integer}, founded: {type: date, format: '%d/%m/%Y'}}"


def test_round_trip_with_cleaning(tmp_path):
    with sheets_server() as fake:
        sheet = chapters()
        fake.add(SHEET, {"Chapters": sheet, "Other": [["x"], [1]]})
        env = {"GOOGLE_SA_KEY": fake.account.key_json(fake.token_uri)}
        project = make_project(tmp_path, source(fake, RULES), env)
        logged: list[str] = []
        [stats] = sync(project, "chapters", log=logged.append)
        assert query(project, "SELECT chapter, region, members, founded, pin, _headwater_row FROM raw_chapters.chapters ORDER BY _headwater_row") == [
            ("Pune", "West", 42, dt.date(2019, 6, 1), "411001", 4),
            ("Delhi", "North", 120, dt.date(2020, 6, 18), "110001", 5),
        ]
        assert quarantine(project, "chapters", "chapters") == [(6, "members", "many", "type"), (6, "region", "Nrth", "allowed_values")]
        assert stats.quarantined == 1 and stats.quarantine_by_rule == {"allowed_values (region)": 1, "type (members)": 1}
        assert query(project, "SELECT DISTINCT source_file FROM raw_chapters.chapters__quarantine") == [(f"{SHEET} 'Chapters'!A1:E6",)]
        # one sign-in and one batchGet, asking for unformatted numbers and dates as the sheet shows them
        gets = [q for method, path, q in fake.requests if method == "GET"]
        assert fake.tokens_issued == 1 and len(gets) == 1
        assert gets[0]["ranges"] == ["'Chapters'"] and gets[0]["valueRenderOption"] == ["UNFORMATTED_VALUE"] and gets[0]["dateTimeRenderOption"] == ["FORMATTED_STRING"]
        # unchanged values: skipped; a changed cell: reloaded
        assert sync(project, "chapters")[0].mode == "skipped"
        sheet[5][2] = 7
        sheet[5][1] = "North"
        [again] = sync(project, "chapters")
        assert (again.mode, again.rows, again.quarantined) == ("full", 3, 0)
        # the key appears nowhere: not in the log, not in the sync state
        private = fake.account.private_pem.splitlines()[1]
        state = query(project, "SELECT state::VARCHAR FROM _headwater.sync_state")
        assert private not in " ".join(logged) and private not in str(state) and fake.account.email not in str(state)


def test_every_tab_and_a_range(tmp_path):
    with sheets_server() as fake:
        fake.add(SHEET, {"Chapters": chapters(), "Regional leads": [["Region", "Lead"], ["North", "Ana"]]})
        env = {"GOOGLE_SA_KEY": fake.account.key_json(fake.token_uri)}
        project = make_project(tmp_path, source(fake, "range: '*'"), env)
        assert [s.table for s in sync(project, "chapters")] == ["chapters", "regional_leads"]
        assert query(project, "SELECT region, lead FROM raw_chapters.regional_leads") == [("North", "Ana")]
        project = make_project(tmp_path, source(fake, "tables:\n    leads: {range: \"'Regional leads'!A2:B\", header: false}"), env)
        sync(project, "chapters")
        assert query(project, "SELECT column_1, column_2, _headwater_row FROM raw_chapters.leads") == [("North", "Ana", 2)]


def test_key_from_a_file(tmp_path):
    with sheets_server() as fake:
        fake.add(SHEET, {"Chapters": chapters()})
        (tmp_path / "keys").mkdir(parents=True)
        (tmp_path / "keys/loader.json").write_text(fake.account.key_json(fake.token_uri))
        project = make_project(tmp_path, source(fake).replace("${GOOGLE_SA_KEY}", "keys/loader.json"))
        assert sync(project, "chapters")[0].rows == 3


def test_errors_say_what_to_do(tmp_path):
    with sheets_server() as fake:
        fake.add(SHEET, {"Chapters": chapters()}, shared=False)
        env = {"GOOGLE_SA_KEY": fake.account.key_json(fake.token_uri)}
        project = make_project(tmp_path, source(fake), env)
        with pytest.raises(HeadwaterError) as caught:
            sync(project, "chapters")
        assert "may not read spreadsheet" in caught.value.what and f"Share the sheet with {fake.account.email}" in caught.value.fix

        project = make_project(tmp_path, source(fake).replace(SHEET, "1NoSuchSheetXXXXXXXXXXXX"), env)
        with pytest.raises(NotFound) as caught:
            sync(project, "chapters")
        assert "was not found" in caught.value.what and "spreadsheet_id" in caught.value.fix

        fake.shared_with[SHEET].add(fake.account.email)
        project = make_project(tmp_path, source(fake, "range: Chaptres"), env)
        with pytest.raises(HeadwaterError, match="did not accept") as caught:
            sync(project, "chapters")
        assert "Unable to parse range" in caught.value.why

        stranger = new_service_account("someone@else.iam.gserviceaccount.com")
        project = make_project(tmp_path, source(fake), {"GOOGLE_SA_KEY": stranger.key_json(fake.token_uri)})
        with pytest.raises(HeadwaterError) as caught:
            sync(project, "chapters")
        assert "refused to sign in the service account someone@else" in caught.value.what and "invalid_grant" not in caught.value.fix
        assert stranger.private_pem.splitlines()[1] not in caught.value.render()

        project = make_project(tmp_path, source(fake), {"GOOGLE_SA_KEY": '{"client_id": "x"}'})
        with pytest.raises(HeadwaterError, match="not a service account key"):
            sync(project, "chapters")

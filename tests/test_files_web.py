"""The demo's organizers spreadsheet end to end: generated with its mess, synced by the demo's own
rules, recorded like a run records it, and reported on the source's page."""

from __future__ import annotations

import datetime as dt
import html
import re
import sqlite3

import pytest
from conftest_web import html_table, logged_in_client, make_project
from files_project import quarantine, query, sync

from headwater.demo.generate import generate_campaign_db
from headwater.orchestrate.recorder import RunRecorder
from headwater.system import open_system_db


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture(name="demo")
def demo_fixture(tmp_path):
    project = make_project(tmp_path / "project")
    generate_campaign_db(project.root / "data/campaign.db", 500, today=dt.date(2026, 11, 18))
    return project


def test_the_demo_roster_is_cleaned_by_its_rules(demo):
    [stats] = sync(demo, "roster")
    with sqlite3.connect(demo.root / "data/campaign.db") as db:
        expected = dict(db.execute("SELECT o.name, r.name FROM organizers o JOIN regions r USING (region_id)"))
    rows = query(demo, "SELECT organizer_name, region_name, phone, active, start_date, _headwater_row FROM raw_roster.organizers ORDER BY _headwater_row")
    # every organizer but the one whose phone says "call the office", names trimmed, regions canonical
    assert {name: region for name, region, *_ in rows} == {n: r for n, r in expected.items() if n != list(expected)[4]}
    assert rows[0][5] == 4  # a title row and a blank row above the header (row 3)
    assert rows[1][2] == str(int(rows[1][2]))  # the phone Excel stored as a number (shown 2.03E+09) keeps its digits
    assert all(isinstance(active, bool) and isinstance(start, dt.date) for _, _, _, active, start, _ in rows)
    assert quarantine(demo, "roster", "organizers") == [(8, "phone", "call the office", "regex")]
    assert stats.quarantine_by_rule == {"regex (phone)": 1} and stats.notes == ["phone: 'call the office' x1 (regex)"]


def test_the_source_page_reports_what_was_set_aside(demo):
    db = open_system_db(demo)
    try:
        recorder = RunRecorder(db, demo.config.name, "flake_rate", "cli")
        with recorder.step("sync:roster") as step:
            stats = sync(demo, "roster")
            recorder.set_detail(step, [s.as_dict() for s in stats], rows=sum(s.rows for s in stats))
        recorder.finish("success", rows=stats[0].rows)
    finally:
        db.close()
    with logged_in_client(demo, "analyst") as client:
        page = client.get("/sources/roster")
        assert page.status_code == 200
        text = text_of(page.text)
        assert "credentials" not in text  # an excel source has none; the settings are listed
        assert "organizers 1 row set aside · raw_roster.organizers__quarantine" in text
        assert html_table(page.text, "rules-organizers") == [["Rule (column)", "Rows"], ["regex (phone)", "1"]]
        assert "phone: 'call the office' x1 (regex)" in text
        listing = text_of(client.get("/sources").text)
        assert "roster" in listing

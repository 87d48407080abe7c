"""Quoting (headwater/sqltext.py): any string, quoted, reads back through DuckDB's parser as itself."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.errors import first_line
from headwater.sqltext import ident, literal, literal_list, mysql_ident, one_row, one_value

# DuckDB's parser reads its text as NUL-terminated C strings: a NUL ends the statement, whatever quotes it.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    yield c
    c.close()


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_a_literal_reads_back_as_the_same_string(con, value):
    assert con.execute(f"SELECT {literal(value)}").fetchone() == (value,)


@settings(max_examples=300, deadline=None)
@given(TEXT.filter(lambda s: s != ""))
def test_an_identifier_names_a_column_that_reads_back_as_the_same_name(con, name):
    # A column alias round-trips the identifier through the parser into the result's description.
    cur = con.execute(f"SELECT 1 AS {ident(name)}")
    assert cur.description[0][0] == name


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=5), TEXT)
def test_a_literal_list_holds_exactly_its_values(con, values, probe):
    assert con.execute(f"SELECT {literal(probe)} IN {literal_list(values)}").fetchone() == (probe in values,)


def test_quotes_inside_are_doubled_and_nothing_else_changes():
    assert ident('a"b') == '"a""b"'
    assert literal("it's \\n") == "'it''s \\n'"
    assert mysql_ident("or`der") == "`or``der`"


def test_first_line_is_the_first_non_blank_line_cut_at_the_limit():
    assert first_line("\n  Catalog Error: no table  \nLINE 1: select\n") == "Catalog Error: no table"
    assert first_line("x" * 600) == "x" * 500
    assert first_line("abc", 2) == "ab"
    assert first_line("") == ""


def test_one_row_reads_the_row_of_an_aggregate_or_a_dml_count(con):
    con.execute("CREATE OR REPLACE TEMP TABLE one_row_t (x INTEGER)")
    assert one_value(con.execute("INSERT INTO one_row_t VALUES (1), (2), (3)")) == 3
    assert one_row(con.execute("SELECT count(*), max(x) FROM one_row_t")) == (3, 3)
    assert one_value(con.execute("SELECT max(x) FROM one_row_t WHERE x > 9")) is None  # an aggregate's NULL is a value
    with pytest.raises(RuntimeError, match="returned none"):
        one_row(con.execute("SELECT x FROM one_row_t WHERE x > 9"))


@pytest.mark.parametrize("password", ["s3cret-pw", "it's\\mine", "p%40ss'word"])
def test_a_password_leaves_a_driver_message_in_every_form_the_dsn_wrote_it(password):
    from urllib.parse import quote, unquote

    from headwater.config.model import PostgresWarehouse
    from headwater.sqltext import libpq_dsn, without_password
    from headwater.warehouse.postgres import Warehouse

    url = f"postgresql://hw:{quote(unquote(password), safe='')}@db.example:5432/acme"
    plain = unquote(password)
    message = f'IO Error: Unable to connect to Postgres at "{libpq_dsn(url)}": FATAL: password authentication failed for user "hw" ({plain})'
    assert plain not in without_password(message, url) and "***" in without_password(message, url)
    error = Warehouse(Path("/nonexistent"), PostgresWarehouse(type="postgres", url=url)).connection_error(RuntimeError(message))
    shown = f"{error.what} {error.why} {error.fix}"
    assert plain not in shown and "password authentication failed" in shown and error.exit_code == 2

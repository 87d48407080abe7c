"""The project file's SQL parser (config/sqlparser.py): one per process, safe across threads and forks."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from headwater.config.sqlparser import ParseError, SqlParser, sql_parser


def test_one_parser_per_process_and_it_parses():
    assert sql_parser() is sql_parser()
    assert len(sql_parser().statements("SELECT 1; SELECT 2")) == 2
    with pytest.raises(ParseError):
        sql_parser().statements("SELEC 1")


def test_threads_share_a_parser_one_at_a_time():
    parser = SqlParser()
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda n: len(parser.statements("SELECT 1;" * n)), range(1, 41)))
    assert counts == list(range(1, 41))


def test_a_forked_child_opens_its_own_connection():
    parser = SqlParser()
    parser.statements("SELECT 1")
    parent = parser._con
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, and report whether it used its parent's connection
        try:
            ok = len(parser.statements("SELECT 1")) == 1 and parser._con is not parent
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)

"""Database sources: SQLite files, PostgreSQL and MySQL/MariaDB servers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headwater.config.base import Name, Strict


class SQLiteSource(Strict):
    type: Literal["sqlite"]
    path: str = Field(description="Path to the SQLite file, relative to the project folder.")
    tables: Literal["*"] | list[Name] = Field("*", description="'*' for every table, or a list of table names.")

"""Quoting for the SQL the cleaning rules are compiled to.

Rule values come from the project file (trusted, in git), never from a web request; they are still
quoted as literals, so a quote or backslash in a value map is data, not SQL.
"""

from __future__ import annotations

import re


def re2_escape(text: str) -> str:
    """``text`` matched literally inside an RE2 pattern."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)

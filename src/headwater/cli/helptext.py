"""`--help` a person can read, for every command at once: docstrings reflowed, no `<bool>` on flags.

Typer (Rich markup mode) keeps a docstring's line breaks, so help wrapped at the source's 100
columns broke mid-sentence at the terminal's width; and it shows every option's type, so a flag
read `--json <bool>`. `tidy` walks the Click command tree Typer builds and fixes both: the
paragraphs of a help text are joined into single lines (the terminal wraps them), except
paragraphs that are lists or indented blocks, and flags show no type. Commands are grouped in
`--help` by each command's `rich_help_panel` (`PANELS`).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

PROJECT, DATA, OPERATE, ADMIN = "Project", "Data", "Operate", "Admin"
PANELS = (PROJECT, DATA, OPERATE, ADMIN)  # in the order `headwater --help` shows them

_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s")


def reflow(text: str) -> str:
    """``text`` with each paragraph on one line; paragraphs are separated by a blank line. A paragraph
    holding list items or indented lines (an example) keeps its lines; so does one Click marks with
    ``\\b`` (not to be rewrapped), and anything after ``\\f`` (not for help) is left as it is."""
    shown, cut, rest = inspect.cleandoc(text).partition("\f")
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", shown):
        lines = paragraph.splitlines()
        keep = paragraph.startswith("\b") or any(_LIST_ITEM.match(line) or line.startswith((" ", "\t")) for line in lines)
        paragraphs.append(paragraph if keep else " ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs) + cut + rest


def tidy(command: Any) -> Any:
    """Reflow the help of ``command`` (a command Typer built: its own copy of Click's classes) and of
    every command under it, and drop the type shown for flags. Returns ``command``."""
    if command.help:
        command.help = reflow(command.help)
    if command.short_help:
        command.short_help = reflow(command.short_help)
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # Typer shows a parameter's metavar, when set, instead of its type
        if getattr(param, "help", None):
            param.help = reflow(param.help)
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)
    command.get_help_option = _flag_without_type(command.get_help_option)  # -h/--help is made when help is asked for
    return command


def _flag_without_type(make: Any) -> Any:
    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    return get_help_option

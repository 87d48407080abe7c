"""Read YAML while remembering where every value came from, and interpolate ``${ENV}``.

Errors about a project file must name the file and the line. PyYAML's composer keeps a mark on every
node, so we build plain Python values from the node tree and keep a map from the value's path
(``("sources", "campaign", "type")``) to its line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from headwater.errors import ConfigError

Path_ = tuple[str | int, ...]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


@dataclass
class Located:
    """A parsed YAML document plus the line of every value in it."""

    file: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def where(self, path: Path_) -> str:
        line = self.line_of(path)
        return f"{self.file}:{line}" if line else str(self.file)


def load_yaml(file: Path, env: Mapping[str, str] | None = None) -> Located:
    env = os.environ if env is None else env
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file", fix="Check the path, or run `headwater init` to create a project.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})", fix="Save the file as UTF-8.") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}", fix="Fix the YAML syntax at that line (indentation, quotes, a missing colon).") from None
    located = Located(file=file, data=None)
    located.data = {} if node is None else _Builder(located, env).build(node, ())
    return located


class _Builder:
    def __init__(self, located: Located, env: Mapping[str, str]) -> None:
        self.located = located
        self.env = env
        self.scalars = yaml.SafeLoader("")  # resolves ints, bools and dates exactly as YAML does

    def build(self, node: yaml.Node, path: Path_) -> Any:
        return _build(self, node, path)


def _build(b: _Builder, node: yaml.Node, path: Path_) -> Any:
    located, env = b.located, b.env
    located.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(b.scalars.construct_object(key_node))
            if key in out:
                raise ConfigError(f"{located.file}:{key_node.start_mark.line + 1}: the key '{key}' appears twice", fix="Remove or rename one of them.")
            out[key] = _build(b, value_node, (*path, key))
            located.lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(b, item, (*path, i)) for i, item in enumerate(node.value)]
    value = b.scalars.construct_object(node)
    if isinstance(value, str):
        value = _interpolate(value, located.where(path), env)
    return value


def _interpolate(text: str, where: str, env: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}``; ``$$`` is a literal ``$``.

    Interpolation runs on parsed scalars, so a variable's value can never change the YAML structure.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: environment variable {name} is not set",
            why=f"the project file refers to ${{{name}}}",
            fix=f"export {name}=... before running, or write ${{{name}:-default}} to give a default.",
        )

    return _ENV.sub(replace, text)

"""Read YAML while remembering where every value came from, and interpolate ``${ENV}`` and
``${secret:NAME}``.

Errors about a project file must name the file and the line. PyYAML's composer keeps a mark on every
node, so we build plain Python values from the node tree and keep a map from the value's path
(``("sources", "campaign", "type")``) to its line.

A file is read by the server of an install with many organisations, so one organisation's file must
not be able to stall it: an alias is a reference, and nine aliases to nine aliases to ... (a "billion
laughs") build a billion values from a few hundred bytes. `_Loader` counts what aliases would expand
to while composing and refuses beyond ``MAX_ALIAS_VALUES``, refuses an alias inside its own anchor,
and refuses nesting deeper than ``MAX_DEPTH`` (10,000 ``[`` exhausted Python's stack), each naming
the file and line.

A syntax error right after a finished value (``sources: {}`` with the example below it uncommented)
is reported at the value's line, naming it: PyYAML names the next line, which is not the one to edit
(`_value_above`).

Secrets live in the system database, whose URL is in the very file being read, so a scalar naming a
secret is left *pending* while the file is built, and `resolve_secrets` fills all of them in with one
lookup afterwards. A file without ``${secret:`` never touches the system database.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from headwater.errors import ConfigError, HeadwaterError
from headwater.redact import is_secret_name, register

Path_ = tuple[str | int, ...]

MAX_ALIAS_VALUES = 10_000  # values that aliases may repeat in one file, all aliases together
MAX_DEPTH = 100  # a project file nests fewer than ten levels

# $$ first: at "$${...}" it wins, leaving "{...}" as text. A "${" that is none of the forms
# (unfinished, or no variable name) is an error rather than text: "${CAMPAIGN_DB" is a typo.
_REFERENCE = re.compile(r"\$\$|\$\{secret:(?P<secret>[^}]*)\}|\$\{(?P<env>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<malformed>\$\{)")
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Where ${secret:...} cannot work or would be written out in plain text.
_NO_SECRETS: dict[Path_, str] = {
    ("system", "url"): "the secrets are kept in the system database this URL opens; use ${ENV} here",
    ("dbt", "vars"): "dbt writes its vars and the SQL compiled from them in plain text under .headwater/dbt (target/, logs/)",
}


class SecretLookup(Protocol):
    """The secrets of one organisation: ``lookup(names)`` returns those that exist. ``org`` names
    the organisation looked in (known once called); ``org_option`` is how `headwater secrets set`
    names it ("" for the install's only one)."""

    org: str | None

    @property
    def org_option(self) -> str: ...  # read-only: a class attribute or a property (StoreLookup's) fits

    def __call__(self, names: list[str]) -> Mapping[str, str]: ...


class SecretSource(Protocol):
    """Opens the secret lookup for a project: its system database URL as the file writes it, its
    folder, and the organisation when the caller knows it (else the lookup finds it)."""

    def __call__(self, system_url: str, root: Path, org: str | None, /) -> SecretLookup: ...


@dataclass(frozen=True)
class Pending:
    """A scalar naming a secret, interpolated once the secrets are known."""

    path: Path_
    text: str
    where: str


@dataclass
class Located:
    """A parsed YAML document plus the line of every value in it."""

    file: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)

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
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, _Refused):
            raise ConfigError(f"{where}: {problem}", why=exc.why, fix=exc.fix) from None
        if mark and (owner := _value_above(text, mark.line, problem)):
            raise owner.error(file, mark.line + 1) from None
        raise ConfigError(f"{where}: invalid YAML: {problem}", fix="Fix the YAML syntax at that line (indentation, quotes, a missing colon).") from None
    located = Located(file=file, data=None)
    located.data = {} if node is None else _Builder(located, env).build(node, ())
    return located


# A `key: value` line (in a list item too), its value without a trailing comment. Keys are plain or quoted.
_KEY_VALUE = re.compile(r"""^(?P<lead>\s*(?:-\s+)*)(?P<key>"[^"]*"|'[^']*'|[^\s#'"][^:#]*?)\s*:[ \t]+(?P<value>[^#\s](?:.*?[^\s])?)(?:[ \t]+#.*)?\s*$""")
# What PyYAML says when an indented line follows a value that is complete: a mapping or list written
# inline ({} or []: it says "expected <block end>"), or a plain value (then the line's colon is read
# inside that value: "mapping values are not allowed here").
_AFTER_A_VALUE = ("expected <block end>, but found '<block mapping start>'", "expected <block end>, but found '<block sequence start>'", "mapping values are not allowed here")


@dataclass(frozen=True)
class _ValueAbove:
    """The line above a YAML error whose key already has its value, while the line of the error is
    indented under it as if it belonged to that key: `sources: {}` with the example below uncommented."""

    line: int
    key: str
    value: str

    def error(self, file: Path, at: int) -> ConfigError:
        if self.value[0] in "{[":
            kind = "mapping" if self.value[0] == "{" else "list"
            empty = "".join(self.value.split()) in ("{}", "[]")
            return ConfigError(
                f"{file}:{self.line}: invalid YAML: line {self.line} holds `{self.key}: {self.value}`, {'an empty' if empty else 'a'} {kind} written inline, "
                f"so the lines indented below it (from line {at}) belong to nothing",
                why=f"`{self.value}` is the whole value of {self.key}; lines indented under it cannot add to it",
                fix=f"Delete `{self.value}` from line {self.line}, leaving `{self.key}:`, so the indented lines become its entries (or comment them out to keep it empty)."
                if empty
                else f"Write the entries of `{self.value}` as indented lines under `{self.key}:` with the others, or indent line {at} as far as line {self.line} if it is a key beside {self.key}.",
            )
        return ConfigError(
            f"{file}:{at}: invalid YAML: line {at} is indented under `{self.key}: {self.value}` (line {self.line}), which has its value already",
            why=f"the value of {self.key} is `{self.value}`: a line indented under it can only continue that text, and a key cannot",
            fix=f"If line {at} belongs inside {self.key}, remove `{self.value}` from line {self.line}; if it is a key beside {self.key}, indent it as far as line {self.line}.",
        )


def _value_above(text: str, index: int, problem: str) -> _ValueAbove | None:
    """When PyYAML stopped at line ``index`` (0-based) with one of `_AFTER_A_VALUE`, and the nearest
    line above it holding more than a comment is `key: value` with that line indented deeper than
    the key: that line, key and value (the error is then the value's, not the line PyYAML names)."""
    lines = text.splitlines()
    if problem not in _AFTER_A_VALUE or index >= len(lines):
        return None
    here = lines[index]
    indent = len(here) - len(here.lstrip(" "))
    for number in range(index - 1, -1, -1):
        above = lines[number].strip()
        if not above or above.startswith("#"):
            continue
        match = _KEY_VALUE.match(lines[number])
        if match is None or indent <= len(match["lead"]):
            return None
        return _ValueAbove(number + 1, match["key"], match["value"])
    return None


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but is refused (see the module's docstring)."""

    def __init__(self, mark: object, problem: str, why: str, fix: str) -> None:
        # an event's mark: yaml.Mark from the pure-Python loader used here (the stubs allow the C loader's too)
        super().__init__(problem=problem, problem_mark=mark if isinstance(mark, yaml.Mark) else None)
        self.why, self.fix = why, fix


class _Loader(yaml.SafeLoader):
    """PyYAML's safe composer, counting how many values each node stands for (an alias repeats its
    anchor's), so expansion and depth are bounded before anything is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for, once composed
        self._repeated = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._count_alias(self.peek_event())
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _Refused(self.peek_event().start_mark, f"values nested more than {MAX_DEPTH} levels deep", why="no setting nests that deep", fix="Flatten the value at that line.")
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # PyYAML's own error: an undefined alias
        if id(node) not in self._sizes:
            raise _Refused(event.start_mark, f"the alias *{event.anchor} is inside its own anchor", why="it would repeat itself without end", fix=f"Remove *{event.anchor} from inside &{event.anchor}.")
        self._repeated += self._sizes[id(node)]
        if self._repeated > MAX_ALIAS_VALUES:
            raise _Refused(
                event.start_mark,
                f"the alias *{event.anchor} takes the file's aliases past {MAX_ALIAS_VALUES:,} repeated values",
                why="aliases of aliases multiply (a 'billion laughs'); Headwater refuses files that expand so much",
                fix="Write the values out, or use fewer aliases of anchors that hold aliases themselves.",
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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
        names = _secret_names(value)
        if names:
            _refuse_secret(path, names[0], located.where(path))
            located.pending.append(Pending(path, value, located.where(path)))
        else:
            value = _interpolate(value, located.where(path), env, path)
    return value


def _secret_names(text: str) -> list[str]:
    return [m["secret"] for m in _REFERENCE.finditer(text) if m["secret"] is not None]


def _refuse_secret(path: Path_, name: str, where: str) -> None:
    for prefix, why in _NO_SECRETS.items():
        if path[: len(prefix)] == prefix:
            raise ConfigError(f"{where}: {'.'.join(map(str, path))} cannot use ${{secret:{name}}}", why=why, fix="Use the secret where it is needed (a source, an alert channel), not here.")


def _sensitive(path: Path_) -> bool:
    """A setting whose whole value is a secret: named like one, or an alert channel's webhook URL."""
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    return is_secret_name(key) or (path[:1] == ("alerts",) and key == "url")


def _interpolate(text: str, where: str, env: Mapping[str, str], path: Path_, secrets: Mapping[str, str] | None = None) -> str:
    """Replace ``${NAME}``, ``${NAME:-default}`` and ``${secret:NAME}``; ``$$`` is a literal ``$``.

    Interpolation runs on parsed scalars, so a variable's value can never change the YAML structure.
    Values that are secrets are registered with `headwater.redact` (see there for which).
    """
    sensitive = _sensitive(path)

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match["malformed"] is not None:
            raise ConfigError(
                f"{where}: '{_excerpt(text, match.start())}' is not a reference to a variable",
                why="${ starts ${NAME}, ${NAME:-default} or ${secret:NAME}, which end with }",
                fix="Close it with }, or write $${ for a literal ${.",
            )
        if match["secret"] is not None:
            return (secrets or {})[match["secret"]]  # resolve_secrets checked that it exists
        name, default = match["env"], match["default"]
        if name in env:
            if sensitive or is_secret_name(name, variable=True):
                register(env[name])
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: environment variable {name} is not set",
            why=f"the project file refers to ${{{name}}}",
            fix=f"export {name}=... before running, or write ${{{name}:-default}} to give a default.",
        )

    value = _REFERENCE.sub(replace, text)
    if sensitive:
        register(value)
    return value


def _excerpt(text: str, start: int) -> str:
    rest = text[start:]
    return rest if len(rest) <= 40 else rest[:40] + "…"


def resolve_secrets(located: Located, env: Mapping[str, str] | None, lookup: SecretLookup) -> None:
    """Fill in the pending ``${secret:NAME}`` scalars of ``located`` from ``lookup``, in place."""
    env = os.environ if env is None else env
    wanted = {name: item for item in located.pending for name in _secret_names(item.text)}
    for name, item in wanted.items():
        if not _SECRET_NAME.fullmatch(name):
            raise ConfigError(f"{item.where}: '${{secret:{name}}}' does not name a secret", why="secret names are letters, digits and underscores, not starting with a digit", fix="Write e.g. ${secret:SMTP_PASSWORD}.")
    try:
        found = lookup(sorted(wanted))
    except HeadwaterError as exc:
        first = next(iter(wanted.values()))
        raise ConfigError(f"{first.where}: cannot read the secrets this file refers to: {exc.what}", why=exc.why, fix=exc.fix) from None
    for name, item in wanted.items():
        if name not in found:
            raise ConfigError(
                f"{item.where}: secret {name} is not set in organisation {lookup.org}",
                why=f"the project file refers to ${{secret:{name}}}",
                fix=f"Set it with `headwater secrets set {name}{lookup.org_option}` (it asks for the value), then run again.",
            )
    for item in located.pending:
        value = _interpolate(item.text, item.where, env, item.path, found)
        if not item.path:  # the whole document is one string (refused when validated)
            located.data = value
            continue
        parent = located.data
        for part in item.path[:-1]:
            parent = parent[part]
        parent[item.path[-1]] = value
    located.pending.clear()

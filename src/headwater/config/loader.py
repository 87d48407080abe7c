"""Find, read and validate a project's ``headwater.yml``."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from headwater.config.base import IDENT
from headwater.config.model import (
    BrokenDashboard,
    Dashboard,
    LoadedProject,
    Project,
    SystemDatabase,
)
from headwater.config.yamlfile import Located, SecretSource, load_yaml, resolve_secrets
from headwater.errors import ConfigError, NotFound

PROJECT_FILE = "headwater.yml"
DASHBOARDS_DIR = "dashboards"
M = TypeVar("M", bound=BaseModel)


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding ``headwater.yml`` (as git and dbt look)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise NotFound(
        f"No {PROJECT_FILE} in {here} or any folder above it",
        why="Headwater commands work on a project, found from the current folder like git does.",
        fix="cd into a project, pass --project DIR, or create one with `headwater init DIR`.",
    )


def load_project(
    root: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    org: str | None = None,
    variables: Mapping[str, str] | None = None,
    secrets: SecretSource | None = None,
    dashboard_errors: Literal["raise", "keep"] = "raise",
) -> LoadedProject:
    """``org``: the organisation the project belongs to, when the caller knows it (an install's);
    the loaded project carries it. ``secrets``: what reads ``${secret:NAME}`` — the caller that
    opens a project supplies it (`headwater.system.orgs.load_with_secrets` reads the system
    database's store); config itself knows nothing of that database, so a file naming a secret
    without one is an error. ``variables``: what ``${NAME}`` reads (default: ``env``, itself the
    process's environment by default). ``dashboard_errors``: "keep" lists a dashboard file that does
    not load in `LoadedProject.broken_dashboards` instead of raising (a typo in one dashboard must not
    stop the pipelines, the run history or the other dashboards)."""
    root = find_project_root(root)
    file = root / PROJECT_FILE
    variables = env if variables is None else variables
    located = load_yaml(file, variables)
    if located.pending:
        if secrets is None:
            raise ConfigError(
                f"{located.pending[0].where}: this file refers to secrets (${{secret:...}}), which this command cannot read",
                why="secrets live in the system database's store, and this command loaded the file without it",
                fix="Load the project through headwater.system.orgs.open_project or load_with_secrets (every headwater command does).",
            )
        lookup = secrets(_system_url(located), root, org)
        resolve_secrets(located, variables, lookup)
        org = lookup.org  # resolved from the store when the caller did not say: the same for the audit log
    config = _validate(Project, located)
    dashboards = dict(config.dashboards)
    broken: dict[str, BrokenDashboard] = {}
    for path in sorted([*(root / DASHBOARDS_DIR).glob("*.yml"), *(root / DASHBOARDS_DIR).glob("*.yaml")]):
        try:
            dashboards[path.stem] = _load_dashboard(path, file, dashboards, variables)
        except ConfigError as exc:
            if dashboard_errors == "raise":
                raise
            broken[path.stem] = BrokenDashboard(path, exc.what, exc.why, exc.fix)
    return LoadedProject(root=root, file=file, config=config.model_copy(update={"dashboards": dashboards}), org=org, broken_dashboards=broken)


def _load_dashboard(path: Path, file: Path, dashboards: Mapping[str, Dashboard], variables: Mapping[str, str] | None) -> Dashboard:
    if not re.fullmatch(IDENT, path.stem):
        raise ConfigError(f"{path}: '{path.stem}' is not a valid dashboard name", why="the file name is the dashboard's name and part of its URL", fix="Rename the file to letters, digits and underscores, e.g. flake_rate.yml.")
    if path.stem in dashboards:
        raise ConfigError(f"{path}: a dashboard named '{path.stem}' is also defined in {file}", fix="Rename the file or remove one of the two.")
    board = load_yaml(path, variables)
    if board.pending:
        raise ConfigError(f"{board.pending[0].where}: dashboards cannot use ${{secret:...}}", why="a dashboard is read by everyone who may view it", fix=f"Use secrets in {PROJECT_FILE}, where sources and alert channels are set up.")
    return _validate(Dashboard, board)


class NoVariables(Mapping[str, str]):
    """What ``${NAME}`` reads in an organisation's project on an install with many: nothing. The
    server's environment is the install's (its secret key, other organisations' passwords); an
    organisation keeps its own values in its secrets."""

    def __init__(self, file: Path, org: str) -> None:
        self.file, self.org = file, org

    def __contains__(self, name: object) -> bool:
        raise ConfigError(
            f"{self.file}: ${{{name}}} reads the server's environment, which organisation '{self.org}' may not",
            why="on an install with many organisations the server's environment variables are the install's, not one organisation's",
            fix=f"Store the value as a secret of the organisation (`headwater secrets set {name} --org {self.org}`) and write ${{secret:{name}}}.",
        )

    def __getitem__(self, name: str) -> str:
        self.__contains__(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def project_system_url(root: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """The project folder and its system database URL, without resolving secrets or validating the
    rest of the file: what `headwater secrets` needs while headwater.yml refers to secrets not set yet."""
    root = find_project_root(root)
    return root, _system_url(load_yaml(root / PROJECT_FILE, env))


def _system_url(located: Located) -> str:
    system = located.data.get("system") if isinstance(located.data, dict) else None
    url = system.get("url") if isinstance(system, dict) else None
    return url if isinstance(url, str) else SystemDatabase().url


def _validate(model: type[M], located: Located) -> M:
    if not isinstance(located.data, dict):
        raise ConfigError(f"{located.file}:1: expected a mapping of settings, got {type(located.data).__name__}")
    try:
        return model.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, located, model), fix="Edit the file at the line shown; `headwater init` writes a commented example.") from None


def _describe(exc: ValidationError, located: Located, root_model: type[BaseModel]) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        yaml_path, model = _resolve(error["loc"], root_model)
        key = ".".join(str(p) for p in yaml_path) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = list(model.model_fields) if model else []
            hint = difflib.get_close_matches(str(yaml_path[-1]), allowed, n=1)
            message = f"unknown key '{yaml_path[-1]}'"
            message += f" — did you mean '{hint[0]}'?" if hint else (f" (allowed: {', '.join(allowed)})" if allowed else "")
        elif error["type"] == "union_tag_invalid":
            expected = [t.strip(" '") for t in str(error["ctx"].get("expected_tags", "")).split(",")]
            got = str(error["ctx"].get("tag"))
            hint = difflib.get_close_matches(got, expected, n=1)
            message = f"unknown type '{got}'" + (f" — did you mean '{hint[0]}'?" if hint else f" (known: {', '.join(expected)})")
            yaml_path = (*yaml_path, "type")
        else:
            message = error["msg"]
            if error["type"] not in ("missing",) and not isinstance(error.get("input"), (dict, list)):
                message += f" (got {error.get('input')!r})"
        problems.append(f"{located.where(yaml_path)}: {key}: {message}")
    head = f"{located.file} is not valid"
    return head + ":\n  " + "\n  ".join(problems)


def _resolve(loc: tuple[Any, ...], root_model: type[BaseModel]) -> tuple[tuple[Any, ...], type[BaseModel] | None]:
    """Turn a pydantic error location into the YAML path and the model owning its last key.

    Discriminated unions add their tag to the location (``sources.campaign.sqlite.path``); the tag is
    not in the YAML, so it is dropped here.
    """
    path: list[Any] = []
    current: Any = root_model
    owner: type[BaseModel] | None = root_model
    for part in loc:
        current = _unwrap(current)
        members = _union_members(current)
        candidates = members or (current,)
        tagged = [m for m in candidates if isinstance(m, type) and issubclass(m, BaseModel) and _tag(m) == part]
        if tagged and str(part) not in tagged[0].model_fields:
            current = tagged[0]
            continue
        if members and isinstance(part, str):  # pydantic's label for the union member it tried, not a YAML key
            current = None
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner = current
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            current = None
        path.append(part)
    return tuple(path), owner


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in _union_members(annotation) or () if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _union_members(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(_unwrap(a) for a in typing.get_args(annotation))
    return None


def _tag(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field else ()
    return args[0] if args else None

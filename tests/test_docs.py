"""The documentation names everything a reader can reach (datasette's tests/test_docs.py is the model):
every package folder and top-level module in docs/architecture.md's layout table, every CLI command
in README.md or docs/*.md, every web route in docs/web.md's route list. A new command, route or
package fails here until it is documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from conftest_web import empty_project_fixture, install_fixture, project_fixture  # noqa: F401 - fixtures by name
from starlette.routing import BaseRoute, Mount, Route

import headwater
from headwater.cli.main import app as cli_app
from headwater.config import LoadedProject
from headwater.system.orgs import Install
from headwater.web import create_app
from headwater.web.tenancy import ORG_PREFIX

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(headwater.__file__).parent
DOCS = ROOT / "docs"


def layout_table() -> str:
    """The "Parts and layout" section of docs/architecture.md: its table's first column."""
    text = (DOCS / "architecture.md").read_text()
    section = text.split("## Parts and layout", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line.split("|")[1] for line in section.splitlines() if line.startswith("| `"))


def package_parts() -> list[str]:
    """Each package folder (``config/``) and top-level module (``errors.py``) of headwater; folders of
    templates and data (``demo/project``) are not packages and are left out."""
    folders = [f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()]
    modules = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    return sorted(folders + modules)


@pytest.mark.parametrize("part", package_parts())
def test_every_package_is_in_the_layout_table(part: str) -> None:
    assert f"`{part}`" in layout_table(), f"{part} is missing from docs/architecture.md's 'Parts and layout' table"


def cli_commands(command: object = None, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every runnable command of the Typer app, as typed: ``headwater user add``."""
    command = command or typer.main.get_command(cli_app)
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(("headwater", *prefix))
        return
    for name, sub in subcommands.items():
        if not sub.hidden:
            yield from cli_commands(sub, (*prefix, name))


def all_docs() -> str:
    return (ROOT / "README.md").read_text() + "".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


@pytest.mark.parametrize("command", sorted(cli_commands()))
def test_every_cli_command_is_documented(command: str) -> None:
    assert re.search(rf"{re.escape(command)}(?![\w-])", all_docs()), f"`{command}` is not documented in README.md or docs/*.md"


def flat_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """Each route with the prefix it is served under. FastAPI 0.165 keeps an included router as one
    entry (its private ``_IncludedRouter``); older versions copied its routes into the app's list."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from flat_routes(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        else:
            yield prefix, route


def route_rules(routes: list[BaseRoute]) -> Iterator[str]:
    """``GET /runs/{run_id}``: each route's methods and path, converters (``:int``) and an install's
    organisation prefix (``/o/{org}``, said once in docs/web.md) left out."""
    for prefix, route in flat_routes(routes):
        if isinstance(route, Mount):
            yield f"MOUNT {prefix}{route.path}"
        elif isinstance(route, Route):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", (prefix + route.path).removeprefix(ORG_PREFIX) or "/")
            yield from (f"{method} {path}" for method in sorted(route.methods or ()) if method != "HEAD")


def documented_routes() -> set[str]:
    text = (DOCS / "web.md").read_text()
    return set(re.findall(r"^\| `((?:GET|POST|PUT|PATCH|DELETE|MOUNT) [^`]+)`", text, flags=re.MULTILINE))


def test_every_route_of_a_project_is_documented(project: LoadedProject) -> None:
    rules = set(route_rules(create_app(project).routes))
    assert rules - documented_routes() == set(), "routes missing from docs/web.md"


def test_every_route_of_an_install_is_documented(install: Install) -> None:
    rules = set(route_rules(create_app(install).routes))
    assert rules - documented_routes() == set(), "routes missing from docs/web.md"


def test_every_documented_route_exists(install: Install) -> None:
    rules = set(route_rules(create_app(install).routes))  # an install serves every route a project does, and its home page
    assert documented_routes() - rules == set(), "docs/web.md lists routes the app does not have"

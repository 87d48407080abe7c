"""Organisations and the install that hosts them.

An *install* is one system database plus the organisations registered in it. Each organisation has
its own project folder (headwater.yml, dbt models, dashboards) and so its own warehouse
(``.headwater/warehouse`` in that folder: its own DuckDB files), runs, dashboards and alert settings.

Two shapes of install share this code:

- **One project** (`headwater serve -p DIR`, as before organisations existed): the system database
  is the project's own, and its one organisation, ``default``, has no ``project_path``: its project
  is the one that database belongs to.
- **Many organisations** (`headwater serve --install DIR`): a folder holding ``headwater-install.yml``
  (which system database to use) and, by default, each organisation's project under ``orgs/<slug>``.

Runs are recorded by project name in the system database, so within an install an organisation's
project must be named after the organisation (``acme-ngo`` → ``acme_ngo``) and must record its runs
in the install's system database; `Install.load_project` refuses a project that does neither, so no
organisation's run history can ever show up in another's.
"""

from __future__ import annotations

import builtins
import datetime as dt
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from headwater.config.base import IDENT, Strict
from headwater.config.model import SystemDatabase
from headwater.errors import ConfigError, HeadwaterError, NotFound
from headwater.system.db import SystemDB, resolve_url
from headwater.system.models import Membership, Organisation

if TYPE_CHECKING:
    from headwater.config.model import LoadedProject

INSTALL_FILE = "headwater-install.yml"
INSTALL_ENV = "HEADWATER_INSTALL"
ORGS_DIR = "orgs"
DEFAULT_ORG = "default"
# A slug is part of every URL of the organisation (/o/<slug>/...) and names its project: lower-case
# letters, digits and inner hyphens, starting with a letter. Nothing else can reach a path or a URL.
SLUG = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_ATTRIBUTE_VALUE = 200


class OrgError(HeadwaterError):
    """A request about organisations that cannot be done as asked (exit code 2 in the CLI)."""


class OrgNotFound(NotFound):
    pass


def check_slug(slug: str) -> str:
    value = slug.strip()
    if not SLUG.fullmatch(value):
        raise OrgError(
            f"'{slug[:80]}' cannot name an organisation",
            why="an organisation's name is part of its web addresses (/o/NAME/) and of its project's name",
            fix="Use lower-case letters, digits and single hyphens, starting with a letter, at most 63 characters: e.g. acme-ngo.",
        )
    return value


def project_name(slug: str) -> str:
    """The name an organisation's project must have in an install: its slug with ``_`` for ``-``."""
    return slug.replace("-", "_")


def parse_attributes(items: Iterable[str]) -> dict[str, list[str]]:
    """``["region=North", "region=South", "team=x"]`` → ``{"region": ["North", "South"], "team": ["x"]}``.

    Row-level attributes: a member with ``region`` sees only the rows whose row-filter column holds
    one of the values (see dashboards/scope.py)."""
    attributes: dict[str, list[str]] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not re.fullmatch(IDENT, key) or len(key) > 63:
            raise OrgError(f"'{item[:80]}' is not NAME=VALUE", fix="Write e.g. --attr region=North (NAME: letters, digits, underscores).")
        check_attribute_value(key, value)
        if value not in attributes.setdefault(key, []):
            attributes[key].append(value)
    return attributes


def check_attribute_value(key: str, value: str) -> None:
    if not value or len(value) > MAX_ATTRIBUTE_VALUE or any(unicodedata.category(c) == "Cc" for c in value):
        raise OrgError(f"The value of attribute '{key}' is empty, too long or holds control characters", fix=f"Give 1 to {MAX_ATTRIBUTE_VALUE} printable characters.")


def clean_attributes(attributes: Mapping[str, object] | None) -> dict[str, list[str]]:
    """Attributes as stored: each name a list of distinct texts (a single value becomes a list)."""
    cleaned: dict[str, list[str]] = {}
    for key, raw in (attributes or {}).items():
        values = raw if isinstance(raw, (list, tuple)) else [raw]
        parse_attributes(f"{key}={v}" for v in values)  # the same checks as on the command line
        cleaned[key] = list(dict.fromkeys(str(v) for v in values))
    return cleaned


@dataclass(frozen=True)
class Org:
    id: int
    slug: str
    name: str
    project_path: str | None  # absolute (a relative one is read relative to the install's folder)
    created_at: dt.datetime
    created_by: str | None
    members: int


class Organisations:
    """The organisations of one system database."""

    def __init__(self, db: SystemDB) -> None:
        self.db = db

    def create(self, slug: str, *, name: str | None = None, project_path: str | None = None, created_by: str | None = None) -> Org:
        slug = check_slug(slug)
        with self.db.session() as session:
            if session.scalar(select(Organisation.id).where(Organisation.slug == slug)) is not None:
                raise OrgError(f"There is already an organisation named '{slug}'", fix="`headwater org list` shows them; pick another name.")
            org = Organisation(slug=slug, name=(name or slug).strip()[:255] or slug, created_at=dt.datetime.now(dt.UTC), project_path=project_path, created_by=created_by)
            session.add(org)
            try:
                session.commit()
            except IntegrityError:  # created by someone else between the check and here
                raise OrgError(f"There is already an organisation named '{slug}'") from None
        return self.get(slug)

    def get(self, slug: str) -> Org:
        for org in self._select(Organisation.slug == slug):
            return org
        raise OrgNotFound(f"No organisation named '{slug[:80]}'", fix="`headwater org list` shows the organisations of this install.")

    def find(self, slug: str) -> Org | None:
        """The organisation, or None: for the web app, which must not say whether a name exists."""
        if not SLUG.fullmatch(slug):
            return None
        return next(iter(self._select(Organisation.slug == slug)), None)

    def list(self) -> list[Org]:
        return self._select(None)

    def of_project(self, root: Path) -> Org | None:
        """The organisation whose project is the folder ``root``, if any."""
        return next(iter(self._select(Organisation.project_path == str(root.resolve()))), None)

    def _select(self, condition: object) -> builtins.list[Org]:  # `list` here is the method above
        members = select(Membership.org_id, func.count().label("n")).group_by(Membership.org_id).subquery()
        query = select(Organisation, func.coalesce(members.c.n, 0)).outerjoin(members, members.c.org_id == Organisation.id).order_by(Organisation.slug)
        if condition is not None:
            query = query.where(condition)  # type: ignore[arg-type]
        with self.db.session() as session:
            return [Org(o.id, o.slug, o.name, o.project_path, o.created_at, o.created_by, n) for o, n in session.execute(query)]


def org_of_folder(db: SystemDB, root: Path) -> str:
    """An install's organisation owns the project folder it registered; a lone project is `default`'s."""
    found = Organisations(db).of_project(root)
    return found.slug if found is not None else DEFAULT_ORG


def org_of(project: LoadedProject, db: SystemDB) -> str:
    """The organisation ``project`` belongs to, for what is recorded about it (the audit log): the
    one it was loaded as, else the one whose project is its folder in ``db``."""
    return project.org or org_of_folder(db, project.root)


# --- loading a project with its secrets -------------------------------------------------------


class StoreLookup:
    """An organisation's secrets from the system database a project file names (opened only when
    the file refers to a secret): the `SecretSource` every command loads projects with."""

    def __init__(self, system_url: str, root: Path, org: str | None, env: Mapping[str, str] | None = None) -> None:
        self.url, self.root, self.org, self.env = system_url, root, org, env

    @property
    def org_option(self) -> str:
        return "" if self.org in (None, DEFAULT_ORG) else f" --org {self.org}"

    def __call__(self, names: list[str]) -> Mapping[str, str]:
        from headwater.system.secrets import open_store  # cryptography: only when needed

        with open_store(self.url, self.root, self.env) as store:
            self.org = self.org or org_of_folder(store.db, self.root)  # messages name the organisation looked in
            return store.find(self.org, names)


def load_with_secrets(root: Path | None = None, env: Mapping[str, str] | None = None, *, org: str | None = None, variables: Mapping[str, str] | None = None) -> LoadedProject:
    """`headwater.config.load_project`, its ``${secret:NAME}`` read from the organisation's store
    (``org``: default, the organisation whose project is this folder, else ``default``); the
    store's key is looked for in ``env``."""
    from headwater.config import load_project

    # A dashboard file that does not load is listed as broken, not an error: the pipelines, the run
    # history and the other dashboards go on (runs and `headwater check` report it).
    return load_project(root, env, org=org, variables=variables, secrets=lambda url, folder, who: StoreLookup(url, folder, who, env), dashboard_errors="keep")


# --- the install folder -------------------------------------------------------------------------


class InstallFile(Strict):
    """``headwater-install.yml``."""

    title: str = Field("Headwater", description="What the web app calls itself on the login page and the organisation list.")
    system: SystemDatabase = Field(default_factory=lambda: SystemDatabase(url="sqlite:///system.db"))


INSTALL_TEMPLATE = """\
# A Headwater install: many organisations, each with its own project (and warehouse), sharing one
# system database for people, memberships, run history and the audit log.
title: {title}
system:
  url: {url}     # relative SQLite paths are relative to this folder; or postgresql+psycopg://...
"""


@dataclass(frozen=True)
class Install:
    root: Path
    settings: InstallFile
    raw_system_url: str  # as written in the file (before ${ENV} interpolation): copied into new projects

    @property
    def system_url(self) -> str:
        return resolve_url(self.settings.system.url, self.root)

    @classmethod
    def find(cls, start: Path | None = None) -> Path:
        """$HEADWATER_INSTALL, or the nearest folder at or above ``start`` holding headwater-install.yml."""
        if env := os.environ.get(INSTALL_ENV):
            return Path(env)
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / INSTALL_FILE).is_file():
                return folder
        raise NotFound(
            f"No {INSTALL_FILE} in {here} or any folder above it",
            why="organisations live in an install: a folder with headwater-install.yml and one system database",
            fix=f"Pass --install DIR (it is created if missing), set {INSTALL_ENV}, or cd into the install's folder.",
        )

    @classmethod
    def load(cls, root: Path) -> Install:
        from headwater.config.loader import _validate
        from headwater.config.yamlfile import load_yaml

        file = root / INSTALL_FILE
        if not file.is_file():
            raise NotFound(f"{root} is not a Headwater install: it has no {INSTALL_FILE}", fix="Create one with `headwater org create NAME --install DIR`.")
        settings = _validate(InstallFile, load_yaml(file))
        import yaml

        raw = yaml.safe_load(file.read_text()) or {}
        raw_url = str((raw.get("system") or {}).get("url") or settings.system.url)
        return cls(root.resolve(), settings, raw_url)

    @classmethod
    def create(cls, root: Path, title: str = "Headwater") -> Install:
        if (root / INSTALL_FILE).exists():
            return cls.load(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / INSTALL_FILE).write_text(INSTALL_TEMPLATE.format(title=_yaml_text(title), url="sqlite:///system.db"))
        return cls.load(root)

    def open_db(self) -> SystemDB:
        return SystemDB(self.system_url)

    def project_dir(self, org: Org) -> Path:
        if org.project_path is None:
            raise ConfigError(f"Organisation '{org.slug}' has no project folder", fix=f"Give it one: `headwater org create {org.slug} --project DIR` (in a new install), or serve a single project with `headwater serve -p DIR`.")
        path = Path(org.project_path)
        return path if path.is_absolute() else self.root / path


    def load_project(self, org: Org) -> LoadedProject:
        """The organisation's project, checked to belong to this install (see the module's docstring)
        and confined to its folder (config/confine.py): what its runs may reach."""
        from headwater.config import PROJECT_FILE
        from headwater.config.loader import NoVariables

        folder = self.project_dir(org)
        if not (folder / PROJECT_FILE).is_file():
            raise ConfigError(f"The project of organisation '{org.slug}' is missing: no {PROJECT_FILE} in {folder}", fix="Restore the folder, or register the organisation again with --project DIR.")
        # its ${secret:...} are its own organisation's; the server's environment is not its to read
        project = load_with_secrets(folder, org=org.slug, variables=NoVariables(folder / PROJECT_FILE, org.slug))
        self.check_project(org.slug, project)
        return self.confine(org.slug, project)

    def confine(self, slug: str, project: LoadedProject) -> LoadedProject:
        """The project, held to its folder: its paths checked, the install's files out of its reach."""
        from headwater.config.confine import Confinement, check_holds_nothing_of, check_links, check_paths

        confinement = Confinement(slug, project.root.resolve(), self.root)
        check_holds_nothing_of(confinement, self.install_files())
        check_paths(project, confinement)
        check_links(confinement)
        return project.model_copy(update={"confinement": confinement})

    def install_files(self) -> list[Path]:
        """The install's own files no organisation may reach: its folder's settings, its SQLite
        system database and the secret key file next to it."""
        from sqlalchemy.engine import make_url

        from headwater.system.secrets import FileKeys, default_key_file, key_provider

        files = [self.root / INSTALL_FILE]
        url = make_url(self.system_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            files.append(Path(url.database))
        keys = key_provider(default_key_file(self.system_url, self.root))
        if isinstance(keys, FileKeys):
            files.append(keys.path)
        return files

    def check_project(self, slug: str, project: LoadedProject) -> None:
        self._check(slug, project.config.name, project.file, resolve_url(project.config.system.url, project.root))

    def check_folder(self, slug: str, folder: Path) -> None:
        """`check_project` for a project not loaded yet: its ${secret:...} belong to an organisation
        that does not exist until the check has passed."""
        import yaml

        from headwater.config import PROJECT_FILE
        from headwater.config.loader import project_system_url

        root, url = project_system_url(folder)
        raw = yaml.safe_load((root / PROJECT_FILE).read_text()) or {}
        self._check(slug, str(raw.get("name", "")) if isinstance(raw, dict) else "", root / PROJECT_FILE, resolve_url(url, root))

    def _check(self, slug: str, name: str, file: Path, system_url: str) -> None:
        expected = project_name(slug)
        if name != expected:
            raise ConfigError(
                f"The project of organisation '{slug}' is named '{name}', not '{expected}'",
                why="runs are recorded by project name in the install's system database: two organisations must never share one",
                fix=f"Set name: {expected} in {file}.",
            )
        if not _same_database(system_url, self.system_url):
            raise ConfigError(
                f"The project of organisation '{slug}' records its runs in another system database",
                why=f"its system.url is not the install's ({self.raw_system_url}), so the install would not see its runs",
                fix=f"Set system: {{url: {self.project_system_url()}}} in {file}.",
            )

    def project_system_url(self) -> str:
        """What an organisation's headwater.yml says for system.url: the install's database, absolute."""
        if self.raw_system_url.startswith("sqlite:"):
            return self.system_url
        return self.raw_system_url


def open_project(path: Path | None = None, install_root: Path | None = None) -> LoadedProject:
    """The project at ``path`` (found as commands find it) as its runs must see it: confined to
    its folder when it is an organisation's project in an install (``install_root``, else the one
    $HEADWATER_INSTALL names or the nearest above the project), free when it stands alone.

    Whether a project is confined never depends on its own files: the install's system database
    says which folders are organisations' projects."""
    from headwater.config import find_project_root

    root = find_project_root(path)
    try:
        folder = install_root or Install.find(root)
    except NotFound:
        return load_with_secrets(root)
    install = Install.load(folder)
    db = install.open_db()
    try:
        org = Organisations(db).of_project(root)
    finally:
        db.close()
    if org is not None:
        return install.load_project(org)
    if install_root is not None:  # a run started as an organisation's stays one: never unconfined
        raise ConfigError(f"{root} is not the project of any organisation of the install in {install.root}", fix="Register it (`headwater org create NAME --project DIR`), or run it as a project of its own.")
    return load_with_secrets(root)


def _same_database(a: str, b: str) -> bool:
    from sqlalchemy.engine import make_url

    ua, ub = make_url(a), make_url(b)
    if ua.get_backend_name() == ub.get_backend_name() == "sqlite" and ua.database and ub.database:
        return Path(ua.database).resolve() == Path(ub.database).resolve()
    return ua.render_as_string(hide_password=False) == ub.render_as_string(hide_password=False)


def _yaml_text(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML scalar: no YAML can be injected

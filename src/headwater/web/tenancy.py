"""Which organisations an app serves, and the organisation of each request.

`Tenancy` holds the install's system database and one `Site` per organisation: its project, its
published data (one DuckDB connection per snapshot, its own chart cache) and its "run now"
launcher. Sites of an install are opened on first use, so an organisation created while the server
runs is served at once, and a broken project breaks only its own organisation's pages. An app opens
all known ones as it starts (`open_all`), so its first viewers do not wait for projects to load.

`OrgContext` is resolved per request by the guard (web/auth.py) from the URL and the session's
memberships; routes take everything from it — the project, the data, the member's role and row
scope — and pass it on explicitly. There is no "current organisation" anywhere else.

Memory: each open snapshot connection keeps DuckDB's caches, so at most ``open_snapshots``
organisations keep theirs open; beyond that the least recently used one lets go of its connection
(queries in flight finish) and opens it again on its next query.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from headwater.config.model import LoadedProject
from headwater.dashboards.scope import RowScope
from headwater.errors import ConfigError, HeadwaterError
from headwater.publish import PublishedData
from headwater.system import SystemDB, open_system_db
from headwater.system.accounts import SessionUser
from headwater.system.orgs import DEFAULT_ORG, Install, Organisations, open_project
from headwater.web.context import WebContext
from headwater.web.launcher import Launcher

if TYPE_CHECKING:
    from headwater.orchestrate.scheduler import Scheduler

log = logging.getLogger("headwater.web.tenancy")

OPEN_SNAPSHOTS = 64  # organisations whose snapshot connection stays open (see the module's docstring)
ORG_PREFIX = "/o/{org}"


@dataclass
class Site:
    """What the app keeps for one organisation."""

    slug: str
    title: str
    ctx: WebContext
    launcher: Launcher

    @property
    def project(self) -> LoadedProject:
        return self.ctx.project


@dataclass(frozen=True)
class OrgContext:
    """The organisation of one request, and who is asking as a member of it."""

    site: Site
    member: SessionUser  # role and attributes in this organisation
    scope: RowScope  # the rows the member may see (dashboards/scope.py)
    base: str  # URL prefix of the organisation's pages: "" (one-project install) or "/o/<slug>"

    @property
    def slug(self) -> str:
        return self.site.slug

    @property
    def ctx(self) -> WebContext:
        return self.site.ctx

    @property
    def project(self) -> LoadedProject:
        return self.site.project

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def cache_scope(self) -> tuple[object, ...]:
        """Part of every cached result's key: members with different row scopes never share one."""
        return ("scope", self.scope.key)


class Tenancy:
    """The organisations one app serves: a one-project install (its organisation is served at
    unprefixed URLs) or an install with many (each under /o/<slug>/)."""

    def __init__(
        self,
        *,
        project: LoadedProject | None = None,
        install: Install | None = None,
        scheduler: Scheduler | None = None,
        schedulers: Mapping[str, Scheduler] | None = None,
        open_snapshots: int = OPEN_SNAPSHOTS,
        reload: bool = True,
    ) -> None:
        """``reload``: each organisation's project follows its files (headwater.yml, dashboards/) while
        the app runs (web/context.py); False: they are read once, at start."""
        if (project is None) == (install is None):
            raise ValueError("a Tenancy serves either one project or one install")
        self.project = project
        self.install = install
        self._schedulers = dict(schedulers or {})
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}  # per organisation: each project loads once (see `site`)
        self._sites: dict[str, Site] = {}
        self._open: OrderedDict[str, PublishedData] = OrderedDict()
        self._open_snapshots = open_snapshots
        self._system: SystemDB | None = None
        self._reload = reload
        if project is not None:
            self._sites[DEFAULT_ORG] = self._site(DEFAULT_ORG, project.config.name, project, scheduler)

    @property
    def multi(self) -> bool:
        """Many organisations, each under /o/<slug>/ (else one, at unprefixed URLs)."""
        return self.install is not None

    @property
    def home(self) -> Site | None:
        """The organisation of a one-project install."""
        return None if self.multi else self._sites[DEFAULT_ORG]

    @property
    def title(self) -> str:
        if self.install is not None:
            return self.install.settings.title
        return self.project.config.name  # type: ignore[union-attr]

    def system_db(self) -> SystemDB:
        """Opened on first use and shared by the app's threads and all its organisations."""
        with self._lock:
            if self._system is None:
                self._system = self.install.open_db() if self.install is not None else open_system_db(self.project)  # type: ignore[arg-type]
            return self._system

    def site(self, slug: str) -> Site | None:
        """The organisation's site, opened on first use; None if no such organisation is served.
        A project that does not load (or does not belong to the install) is a ConfigError."""
        with self._lock:
            if slug in self._sites:
                return self._sites[slug]
        if self.install is None:
            return None
        org = Organisations(self.system_db()).find(slug)
        if org is None or org.project_path is None:
            return None
        # Each project loads once however many ask at once, and only its own requests wait for it:
        # one organisation's slow or hostile files (a hung mount, a huge file) never hold up the
        # others. (The parser of dashboards' SQL has a lock of its own: config/model.py.)
        with self._lock:
            loading = self._loading.setdefault(slug, threading.Lock())
        with loading:
            with self._lock:
                if slug in self._sites:
                    return self._sites[slug]
            project = self.install.load_project(org)
            with self._lock:
                self._sites[slug] = self._site(slug, org.name, project, self._schedulers.get(slug))
                return self._sites[slug]

    def open_all(self) -> None:
        """Open the organisations' sites and snapshots now (an app starting; as many as may stay
        open), so the first viewers do not queue behind project loading and DuckDB opening files.
        A project that does not load is logged, and its organisation's pages say why when asked;
        the others are served."""
        if self.install is None:
            return
        for org in Organisations(self.system_db()).list()[: self._open_snapshots]:
            if org.project_path is None:
                continue
            try:
                site = self.site(org.slug)
            except HeadwaterError as exc:
                log.error("organisation %s is not served until its project loads: %s", org.slug, exc.render())
                continue
            if site is not None and site.ctx.warehouse.current_snapshot() is not None:
                self.touch(site)
                site.ctx.data.tables()  # opens the snapshot's connection

    def sites(self) -> list[Site]:
        with self._lock:
            return list(self._sites.values())

    def touch(self, site: Site) -> None:
        """``site`` is about to read its snapshot: keep it open, let go of the least recently used
        beyond ``open_snapshots``."""
        data = site.ctx.data
        with self._lock:
            self._open[site.slug] = data
            self._open.move_to_end(site.slug)
            evicted = []
            while len(self._open) > self._open_snapshots:
                slug, old = self._open.popitem(last=False)
                evicted.append((slug, old))
        for slug, old in evicted:
            old.release()
            log.debug("snapshot connection of %s released (more than %d open)", slug, self._open_snapshots)

    def _site(self, slug: str, title: str, project: LoadedProject, scheduler: Scheduler | None) -> Site:
        return Site(slug, title, WebContext(project, self.system_db, self._loader(slug, project) if self._reload else None), Launcher(project, scheduler))

    def _loader(self, slug: str, project: LoadedProject) -> Callable[[], LoadedProject]:
        """How an organisation's project is loaded again from its files: as it was loaded first."""
        install = self.install
        if install is None:
            return lambda: open_project(project.root)

        def load() -> LoadedProject:
            org = Organisations(self.system_db()).find(slug)
            if org is None:
                raise ConfigError(f"Organisation '{slug}' is no longer registered", fix="Restart the server to stop serving it.")
            return install.load_project(org)

        return load

    def shutdown(self) -> None:
        """Runs started from the web finish; connections close (an app restarting reopens them)."""
        for site in self.sites():
            site.launcher.shutdown(wait=True)
            site.ctx.close()
        with self._lock:
            self._open.clear()
            if self.install is not None:
                self._sites.clear()
            if self._system is not None:
                self._system.close()
            self._system = None

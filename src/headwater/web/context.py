"""What every request for one organisation shares: its project, its published data and its chart cache."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from headwater.config.loader import DASHBOARDS_DIR, PROJECT_FILE
from headwater.config.model import BrokenDashboard, Chart, Dashboard, LoadedProject
from headwater.errors import HeadwaterError, NotFound
from headwater.publish import PublishedData
from headwater.system import SystemDB
from headwater.warehouse import open_warehouse

log = logging.getLogger("headwater.web")

RELOAD_EVERY = 0.5  # seconds: how often a request may look at the project's files for changes
RESULT_CACHE_ENTRIES = 512  # chart results kept in memory per organisation (each capped by the chart row limit)
T = TypeVar("T")


class NothingPublished(NotFound):
    """The app is up but no run has published data yet: a temporary state, served as 503."""


class BrokenFile(HeadwaterError):
    """A dashboard whose file does not load, and no good version of it was loaded before (503)."""


def project_files(root: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What tells that a project's files changed: headwater.yml's and each dashboard file's name,
    inode, size and modification time (an editor that replaces the file changes the inode)."""
    found = []
    for path in [root / PROJECT_FILE, *sorted((root / DASHBOARDS_DIR).glob("*.y*ml"))]:
        try:
            st = path.stat()
        except OSError:
            continue
        found.append((path.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


def _reason(broken: BrokenDashboard) -> str:
    return broken.what + (f" ({broken.why})" if broken.why else "")


class WebContext:
    """One organisation's project and published data. ``system_db`` gives the install's system
    database (shared by all organisations of the app).

    ``reload``: loads the project again from its files. Given, the project follows its files: when
    headwater.yml or a dashboard file changes (their size and modification time, looked at on a
    request at most every `RELOAD_EVERY` seconds), the project is loaded again. A file that does
    not load then leaves the last good version in place — the whole project's for headwater.yml, the
    dashboard's for a dashboard file — and its reason is logged once per change; pages tell analysts
    and admins (`broken`). The warehouse's settings and the schedules are read at start only."""

    def __init__(self, project: LoadedProject, system_db: Callable[[], SystemDB], reload: Callable[[], LoadedProject] | None = None) -> None:
        self.project = project
        self.warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
        self.data = PublishedData(self.warehouse)  # one per organisation: it caches the snapshot's connection
        self._system_db = system_db
        self._lock = threading.Lock()
        self._results: OrderedDict[tuple[object, ...], object] = OrderedDict()
        self.broken: dict[str, BrokenDashboard] = dict(project.broken_dashboards)  # files that do not load now
        self.invalid: HeadwaterError | None = None  # headwater.yml as it is now does not load: the last good project is served
        self._reload = reload
        self._reload_lock = threading.Lock()
        self._files = project_files(project.root) if reload is not None else ()
        self._looked = time.monotonic()
        for name, broken in self.broken.items():
            log.error("dashboard '%s' is not served: %s", name, _reason(broken))

    @property
    def dashboards(self) -> dict[str, Dashboard]:
        self.refresh()
        return self.project.config.dashboards

    def dashboard(self, name: str) -> Dashboard:
        dashboards = self.dashboards
        if name not in dashboards:
            if name in self.broken:
                raise BrokenFile(f"Dashboard '{name}' is unavailable", why=_reason(self.broken[name]), fix=self.broken[name].fix)
            raise NotFound(f"No dashboard named '{name}'", fix=f"Dashboards of this project: {', '.join(dashboards) or 'none yet'}.")
        return dashboards[name]

    def refresh(self) -> None:
        """Load the project again if one of its files changed since it was last loaded."""
        if self._reload is None or time.monotonic() - self._looked < RELOAD_EVERY:
            return
        with self._reload_lock:
            self._looked = time.monotonic()
            files = project_files(self.project.root)
            if files == self._files:
                return
            self._files = files
            try:
                fresh = self._reload()
            except HeadwaterError as exc:
                self.invalid = exc
                log.error("%s changed and does not load; the last good version is served until it does: %s", self.project.file, exc.render())
                return
            self.invalid = None
            served = self.project.config.dashboards
            dashboards = dict(fresh.config.dashboards)
            for name, broken in fresh.broken_dashboards.items():
                if name in served:
                    dashboards[name] = served[name]  # its last good version
                if self.broken.get(name) != broken:
                    kept = "its last good version is served until it does" if name in served else "it is not served until it does"
                    log.error("dashboard file %s does not load; %s: %s", broken.file, kept, _reason(broken))
            if fresh.config.warehouse != self.project.config.warehouse:
                log.warning("%s: the warehouse settings changed; restart the server for them to apply", fresh.file)
            config = fresh.config.model_copy(update={"dashboards": dashboards, "warehouse": self.project.config.warehouse})  # read at start only
            self.project = fresh.model_copy(update={"config": config, "confinement": self.project.confinement})
            self.broken = dict(fresh.broken_dashboards)
            with self._lock:  # cached chart data was computed from the charts as they were
                self._results.clear()
            log.info("reloaded %s: dashboards %s", fresh.file, ", ".join(sorted(dashboards)) or "none")

    def chart(self, name: str, index: int) -> Chart:
        charts = self.dashboard(name).charts
        if index >= len(charts):
            raise NotFound(f"Dashboard '{name}' has no chart number {index}", fix=f"Its charts are numbered 0 to {len(charts) - 1}.")
        return charts[index]

    def published(self) -> PublishedData:
        if self.warehouse.current_snapshot() is None:
            raise NothingPublished(
                "Nothing has been published yet",
                why="dashboards show published data, which appears only after a pipeline run succeeds",
                fix="Run `headwater run` in the project folder, then reload this page.",
            )
        return self.data

    def published_notice(self) -> str | None:
        """Said on every page while readers are shown an older snapshot because ``CURRENT`` is damaged."""
        self.warehouse.current_snapshot()
        return self.warehouse.fallback

    def cached(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        """``compute()``'s result for ``key`` on the current snapshot, computed once per snapshot.

        Published snapshots never change, so a chart's data for given filters stays right until the
        pointer moves; the snapshot's name is part of the key, so a new publish starts afresh. The
        cache is this organisation's alone, and callers put the reader's row scope in ``key``
        (`OrgContext.cache_scope`): no result computed for one member is served to another who may
        see other rows."""
        snapshot = self.warehouse.current_snapshot()
        full = (snapshot.name if snapshot else None, *key)
        with self._lock:
            if full in self._results:
                self._results.move_to_end(full)
                return self._results[full]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._results[full] = value
            while len(self._results) > RESULT_CACHE_ENTRIES:
                self._results.popitem(last=False)
        return value

    def system_db(self) -> SystemDB:
        return self._system_db()

    def close(self) -> None:
        self.data.close()
        with self._lock:
            self._results.clear()

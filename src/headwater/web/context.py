"""What every request for one organisation shares: its project, its published data and its chart cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from headwater.config.model import Chart, Dashboard, LoadedProject
from headwater.errors import NotFound
from headwater.publish import PublishedData
from headwater.system import SystemDB
from headwater.warehouse import open_warehouse

RESULT_CACHE_ENTRIES = 512  # chart results kept in memory per organisation (each capped by the chart row limit)
T = TypeVar("T")


class NothingPublished(NotFound):
    """The app is up but no run has published data yet: a temporary state, served as 503."""


class WebContext:
    """One organisation's project and published data. ``system_db`` gives the install's system
    database (shared by all organisations of the app)."""

    def __init__(self, project: LoadedProject, system_db: Callable[[], SystemDB]) -> None:
        self.project = project
        self.warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
        self.data = PublishedData(self.warehouse)  # one per organisation: it caches the snapshot's connection
        self._system_db = system_db
        self._lock = threading.Lock()
        self._results: OrderedDict[tuple[object, ...], object] = OrderedDict()

    @property
    def dashboards(self) -> dict[str, Dashboard]:
        return self.project.config.dashboards

    def dashboard(self, name: str) -> Dashboard:
        if name not in self.dashboards:
            raise NotFound(f"No dashboard named '{name}'", fix=f"Dashboards of this project: {', '.join(self.dashboards) or 'none yet'}.")
        return self.dashboards[name]

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

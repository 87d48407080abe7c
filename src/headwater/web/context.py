"""What every request of one app shares: the project, its published data and (lazily) its run history."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from headwater.config.model import Chart, Dashboard, LoadedProject
from headwater.errors import NotFound
from headwater.orchestrate import open_system_db
from headwater.publish import PublishedData
from headwater.system import SystemDB
from headwater.warehouse import Warehouse


RESULT_CACHE_ENTRIES = 512  # chart results kept in memory (each capped by the chart row limit)
T = TypeVar("T")


class NothingPublished(NotFound):
    """The app is up but no run has published data yet: a temporary state, served as 503."""


class WebContext:
    def __init__(self, project: LoadedProject) -> None:
        self.project = project
        self.warehouse = Warehouse(project.root, project.config.warehouse)
        self.data = PublishedData(self.warehouse)  # one per app: it caches the snapshot's connection
        self._system: SystemDB | None = None
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

    def cached(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        """``compute()``'s result for ``key`` on the current snapshot, computed once per snapshot.

        Published snapshots never change, so a chart's data for given filters stays right until the
        pointer moves; the snapshot's name is part of the key, so a new publish starts afresh. (When
        row-level rules arrive, the viewer's scope must join the key.)"""
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
        """Opened on first use and shared by the app's threads (sessions, run history, accounts)."""
        with self._lock:
            if self._system is None:
                self._system = open_system_db(self.project)
            return self._system

    def close(self) -> None:
        self.data.close()
        with self._lock:
            if self._system is not None:
                self._system.close()
            self._system = None

"""`headwater sync`: sync sources into raw without building or publishing, recorded as a run.

Pipelines sync through the same `sync_sources`, so a table is synced the same way either way.
"""

from __future__ import annotations

from collections.abc import Callable

from headwater.config.model import LoadedProject
from headwater.errors import HeadwaterError, NotFound
from headwater.orchestrate.recorder import Listener, RunRecorder, abandon_stale_runs
from headwater.sources import extensions_for, open_source
from headwater.sync import TableStats
from headwater.sync.context import Progress
from headwater.system import open_system_db
from headwater.warehouse import WarehouseEngine, open_warehouse

SYNC_PIPELINE = "sync"  # the pipeline name `headwater sync` runs are recorded under


def sync_sources(
    project: LoadedProject,
    rec: RunRecorder,
    source_names: list[str],
    *,
    tables: list[str] | None = None,
    full_refresh: bool = False,
    progress: Progress | None = None,
    warehouse: WarehouseEngine | None = None,
    prune: bool = False,
    results: dict[str, list[TableStats]] | None = None,
) -> dict[str, list[TableStats]]:
    """Sync each source in its own step (`sync:<source>`) with per-table stats as the step's detail
    (tables that failed too: a source whose tables partly failed records the ones that synced).
    ``results``: filled in as sources finish, so a caller still has them when a later one fails."""
    warehouse = warehouse or open_warehouse(project.root, project.config.warehouse, project.confinement)
    results = {} if results is None else results
    con = warehouse.connect_build(sync_extensions=extensions_for(project.config.sources[n] for n in source_names))
    try:
        for name in source_names:
            with rec.step(f"sync:{name}") as step:
                source = open_source(name, project.config.sources[name], project.root, work_parent=warehouse.folder / "work" if project.confinement else None)
                try:
                    stats = warehouse.load_raw(con, source, lambda m: rec.log("info", m), tables=tables, full_refresh=full_refresh, progress=progress, prune=prune)
                except HeadwaterError as exc:
                    if exc.table_stats is not None:
                        results[name] = [s for s in exc.table_stats if isinstance(s, TableStats)]
                        rec.set_detail(step, [s.as_dict() for s in results[name]], rows=sum(s.rows_read for s in results[name]))
                    raise
                results[name] = stats
                rec.set_detail(step, [s.as_dict() for s in stats], rows=sum(s.rows_read for s in stats))
                for table in stats:
                    for warning in table.warnings:
                        rec.log("warn", f"source {name}: table {table.table}: {warning}")
    finally:
        con.close()
    return results


def run_sync(
    project: LoadedProject,
    source: str | None = None,
    tables: list[str] | None = None,
    *,
    full_refresh: bool = False,
    prune: bool = False,
    listener: Listener | None = None,
    progress: Progress | None = None,
    wait_for_lock: float = 0,
    on_wait: Callable[[], None] | None = None,
) -> tuple[int, dict[str, list[TableStats]]]:
    """Sync one source (some of its tables) or every source; returns the run id and the stats.
    Raises like a run does; raw keeps every table that finished, and the failing table as it was."""
    names = list(project.config.sources)
    if source is not None and source not in names:
        raise NotFound(f"No source named '{source}' in {project.file}", why=f"sources: {', '.join(names) or 'none'}", fix="Check the name, or add the source under sources: in headwater.yml.")
    if tables and source is None:
        raise NotFound("Tables were named without a source", fix="Write `headwater sync SOURCE TABLE...`.")
    if tables and prune:
        raise HeadwaterError(
            "--prune cannot be combined with table names",
            why="it drops the raw tables a source no longer has, which only a sync of the whole source can tell",
            fix=f"Run `headwater sync {source} --prune`.",
        )
    if not names:
        raise NotFound(f"{project.file} defines no sources", fix="Add one under sources: (see `headwater init`'s example).")
    warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
    db = open_system_db(project)
    try:
        with warehouse.writer_lock(wait_for_lock, on_wait):
            abandon_stale_runs(db, project.config.name, current=SYNC_PIPELINE)
            rec = RunRecorder(db, project.config.name, SYNC_PIPELINE, "cli", listener)
            results: dict[str, list[TableStats]] = {}
            try:
                sync_sources(project, rec, [source] if source else names, tables=tables or None, full_refresh=full_refresh, progress=progress, warehouse=warehouse, prune=prune, results=results)
            except BaseException as exc:
                failure = rec.fail(exc, warehouse.folder)
                if isinstance(failure, HeadwaterError):
                    failure.sync_report = (rec.id, dict(results))
                if failure is exc:
                    raise
                raise failure from exc
            rec.finish("success", rows=sum(s.rows_read for stats in results.values() for s in stats))
            return rec.id, results
    finally:
        db.close()

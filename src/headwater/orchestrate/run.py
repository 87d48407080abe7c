"""Run a pipeline: sync its sources, build and test the dbt project, publish what passed."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
from sqlalchemy.exc import SQLAlchemyError

from headwater.config.model import LoadedProject, Pipeline
from headwater.errors import HeadwaterError, NotFound, RunFailed
from headwater.orchestrate.recorder import Listener, RunRecorder
from headwater.publish import plan, publish, published_tables
from headwater.sources import open_source
from headwater.sync import sync_source
from headwater.system import Run, SystemDB, resolve_url
from headwater.transform import DbtProject, describe_failure
from headwater.warehouse import Warehouse

DEFAULT_PIPELINE = "default"
# Failures of the machine or the data files rather than of Headwater's code: reported as a failed run.
ENVIRONMENT_ERRORS = (duckdb.Error, OSError, SQLAlchemyError)


@dataclass
class RunOutcome:
    run: Run
    published: dict[str, int] = field(default_factory=dict)


def open_system_db(project: LoadedProject) -> SystemDB:
    return SystemDB(resolve_url(project.config.system.url, project.root))


def choose_pipeline(project: LoadedProject, name: str | None) -> tuple[str, Pipeline]:
    pipelines = project.config.pipelines
    if name is None:
        if not pipelines:
            return DEFAULT_PIPELINE, Pipeline()
        if len(pipelines) == 1:
            return next(iter(pipelines.items()))
        raise HeadwaterError(f"This project has {len(pipelines)} pipelines; say which to run", fix=f"headwater run {' | '.join(pipelines)}")
    if name in pipelines:
        return name, pipelines[name]
    if name == DEFAULT_PIPELINE and not pipelines:
        return DEFAULT_PIPELINE, Pipeline()
    raise NotFound(f"No pipeline named '{name}' in {project.file}", fix=f"Pipelines: {', '.join(pipelines) or '(none: run without a name)'}.")


def run_pipeline(project: LoadedProject, name: str | None = None, *, trigger: str = "cli", listener: Listener | None = None, db: SystemDB | None = None) -> RunOutcome:
    """Run one pipeline to the end. Raises `RunFailed` (or another `HeadwaterError`) when it fails;
    the published data is then exactly what it was before."""
    pipeline_name, pipeline = choose_pipeline(project, name)
    warehouse = Warehouse(project.root, project.config.warehouse)
    own_db = db is None
    db = db or open_system_db(project)
    try:
        with warehouse.writer_lock():
            recorder = RunRecorder(db, project.config.name, pipeline_name, trigger, listener)
            try:
                return _run_steps(project, pipeline, warehouse, recorder)
            except ENVIRONMENT_ERRORS as exc:
                failure = RunFailed(
                    f"Run {recorder.id} failed in step {recorder.current_step or 'start'}",
                    why=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
                    fix="Check the file, disk or database it names; published data was left as it was.",
                )
                recorder.log("error", failure.render())
                recorder.finish("failed", error=failure)
                raise failure from exc
            except BaseException as exc:
                recorder.log("error", _message(exc))
                recorder.finish("failed", error=exc)
                raise
    finally:
        if own_db:
            db.close()


def _run_steps(project: LoadedProject, pipeline: Pipeline, warehouse: Warehouse, rec: RunRecorder) -> RunOutcome:
    rec.log("info", f"run {rec.id} started")
    source_names = pipeline.sources if pipeline.sources is not None else list(project.config.sources)
    unknown = [s for s in source_names if s not in project.config.sources]
    if unknown:
        raise NotFound(f"Pipeline sources not defined: {', '.join(unknown)}", fix=f"Define them under sources: in {project.file}.")
    rows = 0
    con = warehouse.connect_build()
    try:
        for source_name in source_names:
            with rec.step(f"sync:{source_name}") as step:
                source = open_source(source_name, project.config.sources[source_name], project.root)
                stats = sync_source(con, source, lambda m: rec.log("info", m))
                synced = sum(s.rows for s in stats)
                rows += synced
                rec.set_detail(step, [s.as_dict() for s in stats], rows=synced)
    finally:
        con.close()  # dbt opens the build database itself

    dbt = DbtProject(project, warehouse)
    with rec.step("dbt:build") as step:
        result = dbt.build(pipeline.select, rec.log)
        rec.set_detail(step, result.as_dict(), rows=None)
        if not result.success:
            raise describe_failure(result)

    with rec.step("publish") as step:
        publish_plan = plan(dbt.manifest_models(), result.nodes, pipeline.publish, published_tables(warehouse))
        if not publish_plan.tables:
            raise RunFailed(
                "Nothing to publish: no model matches the pipeline's publish list",
                why=f"publish: {pipeline.publish}",
                fix="List model folders (e.g. marts) or model names under the pipeline's publish: key.",
            )
        con = warehouse.connect_build()
        try:
            published = publish(warehouse, con, publish_plan, name=f"run-{rec.id:06d}")
        finally:
            con.close()
        rec.set_detail(step, {"tables": published, "carried_over": publish_plan.carried}, rows=sum(published.values()))
        rec.log("info", "published " + ", ".join(f"{t} ({n:,} rows)" for t, n in published.items()))
    run = rec.finish("success", rows=rows, snapshot=warehouse.current_snapshot().name)  # type: ignore[union-attr]
    return RunOutcome(run, published)


def _message(exc: BaseException) -> str:
    return exc.render() if isinstance(exc, HeadwaterError) else f"{type(exc).__name__}: {exc}"

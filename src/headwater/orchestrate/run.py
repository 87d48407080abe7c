"""Run a pipeline: sync its sources, build and test the dbt project, publish what passed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from headwater.checks import CheckOutcome, dbt_test_outcomes, run_checks
from headwater.config.confine import check_links
from headwater.config.model import LoadedProject, Pipeline
from headwater.dashboards.validate import check_dashboards, outline_of_plan
from headwater.dashboards.validate import outcomes as dashboard_outcomes
from headwater.errors import HeadwaterError, RunFailed, TransientFailure, host_not_found, unresolved_host
from headwater.orchestrate.pipelines import choose_pipeline
from headwater.orchestrate.recorder import Listener, RunRecorder, abandon_stale_runs
from headwater.orchestrate.sync import sync_sources
from headwater.orchestrate.transient import ENVIRONMENT_ERRORS, is_transient
from headwater.publish import PublishPlan, nothing_to_publish, plan, publish
from headwater.publish.publish import is_publishable
from headwater.sync.context import Progress
from headwater.system import Run, RunStep, SystemDB, open_system_db
from headwater.transform import BuildResult, DbtProject, count_rows, describe_failure
from headwater.warehouse import WarehouseEngine, open_warehouse


class RunProgress(Protocol):
    """What a progress display is told during a run (`orchestrate/child.py` draws one on a terminal)."""

    def step(self, name: str) -> None: ...  # a step starts: sync:<source>, dbt:build, checks, publish

    def rows(self, table: str, done: int, expected: int | None) -> None: ...  # a synced table's rows so far


@dataclass
class RunOutcome:
    run: Run
    published: dict[str, int] = field(default_factory=dict)


def run_pipeline(
    project: LoadedProject,
    name: str | None = None,
    *,
    trigger: str = "cli",
    attempt: int = 1,
    listener: Listener | None = None,
    db: SystemDB | None = None,
    wait_for_lock: float = 0,
    select: str | None = None,
    full_refresh: bool = False,
    progress: RunProgress | None = None,
) -> RunOutcome:
    """Run one pipeline to the end, in this process. Raises `RunFailed` (or another `HeadwaterError`)
    when it fails; the published data is then exactly what it was before.

    ``select``: a dbt selection for this run instead of the pipeline's ``select:`` (the sync stays
    the pipeline's; publishable models it does not build are carried over from what is published).
    ``full_refresh``: every table of the pipeline's sources reloaded in full, and dbt's
    ``--full-refresh`` (incremental models and seeds rebuilt from scratch). ``progress``: told each
    step as it starts and each synced table's rows as they load (a terminal's progress display)."""
    pipeline_name, pipeline = choose_pipeline(project, name)
    warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
    own_db = db is None
    db = db or open_system_db(project)
    try:
        waiting = (lambda: listener("info", "another run of this project is in progress; waiting for it to finish")) if listener else None
        with warehouse.writer_lock(wait_for_lock, waiting):
            abandon_stale_runs(db, project.config.name, current=pipeline_name)  # we hold the lock: no other run is alive
            recorder = RunRecorder(db, project.config.name, pipeline_name, trigger, listener, attempt=attempt, on_step=progress.step if progress else None)
            try:
                return _run_steps(project, pipeline, warehouse, recorder, progress.rows if progress else None, select=select, full_refresh=full_refresh)
            except BaseException as exc:
                failure = recorder.fail(exc, warehouse.folder, lambda e: _environment_failure(e, recorder) if isinstance(e, ENVIRONMENT_ERRORS) else e)
                if failure is exc:
                    raise
                raise failure from exc
    finally:
        if own_db:
            db.close()


def _environment_failure(exc: BaseException, recorder: RunRecorder) -> HeadwaterError:
    text = str(exc).strip()
    if unresolved_host(text):  # e.g. the system database's host: a wrong name is not retried
        return host_not_found(f"Run {recorder.id} failed in step {recorder.current_step or 'start'}", _host_in(text), "the project file", text.splitlines()[0])
    kind = TransientFailure if is_transient(exc) else RunFailed
    return kind(
        f"Run {recorder.id} failed in step {recorder.current_step or 'start'}",
        why=f"{type(exc).__name__}: {text.splitlines()[0] if text else repr(exc)}",
        fix="It may pass by itself; the run will be retried." if kind is TransientFailure else "Check the file, disk or database it names; published data was left as it was.",
    )


def checks_step(project: LoadedProject, pipeline: Pipeline, con: Any, warehouse: WarehouseEngine, rec: RunRecorder, step: RunStep, *, label: str | None = None) -> list[CheckOutcome]:
    """The body of a run's ``checks`` step: the pipeline's checks run on ``con``, recorded, counted in
    the step's detail, and each that did not pass logged (`log_outcomes`)."""
    outcomes = run_checks(project, pipeline.checks, con, warehouse=warehouse)
    rec.record_checks(outcomes)
    rec.set_detail(step, {"passed": sum(o.status == "pass" for o in outcomes), "total": len(outcomes)})
    log_outcomes(rec, outcomes, label)
    return outcomes


def log_outcomes(rec: RunRecorder, outcomes: list[CheckOutcome], label: str | None = None) -> None:
    """Each outcome that did not pass, in the run's log as ``<label or its kind> <name>: <status>: <message>``."""
    for outcome in outcomes:
        if outcome.status != "pass":
            said = (outcome.message or "").removeprefix(f"{outcome.name}: ")  # a check's message may start with its name
            rec.log("error" if outcome.blocks_publish else "warn", f"{label or outcome.kind} {outcome.name}: {outcome.status}: {said}")


def _host_in(text: str) -> str:
    quoted = re.search(r"host(?: name)? [\"']([^\"']+)[\"']", text)
    return quoted.group(1) if quoted else "(see below)"


def _run_steps(
    project: LoadedProject, pipeline: Pipeline, warehouse: WarehouseEngine, rec: RunRecorder, loading: Progress | None = None, *, select: str | None = None, full_refresh: bool = False
) -> RunOutcome:
    rec.log("info", f"run {rec.id} started (attempt {rec.run.attempt})")
    selection = select if select is not None else pipeline.select
    if select is not None:
        rec.log("info", f"dbt selection for this run: --select {select}" + (f" (instead of the pipeline's select: {pipeline.select})" if pipeline.select else ""))
    if full_refresh:
        rec.log("info", "full refresh: every table of the pipeline's sources is reloaded in full, and dbt rebuilds incremental models and seeds")
    source_names = pipeline.sources if pipeline.sources is not None else list(project.config.sources)
    results = sync_sources(project, rec, source_names, warehouse=warehouse, full_refresh=full_refresh, progress=loading)
    rows = sum(s.rows_read for stats in results.values() for s in stats)

    dbt = DbtProject(project, warehouse)
    if dbt.needs_packages():
        with rec.step("dbt:deps") as step:
            rec.set_detail(step, {"packages": dbt.install_packages(rec.log)})
        if project.confinement is not None:  # a downloaded package may hold a link leading out of the folder
            check_links(project.confinement)
    if project.config.dbt.seed_first:
        with rec.step("dbt:seed") as step:
            _record_dbt_result(dbt.seed(rec.log, full_refresh=full_refresh), step, warehouse, rec, "seed")
    with rec.step("dbt:build") as step:
        result = _record_dbt_result(dbt.build(selection, rec.log, seeded=project.config.dbt.seed_first, full_refresh=full_refresh), step, warehouse, rec)
        if selection and not result.nodes:
            where = f"--select {selection}" if select is not None else f"select: {selection} of pipeline {rec.run.pipeline} in {project.file.name}"
            raise HeadwaterError(
                f"The dbt selection {selection!r} selects nothing to build — published data was left as it was",
                why=f"{where} matches no model, seed, snapshot or test of the dbt project",
                fix="Check the selection's spelling (`headwater dbt ls --select ...` lists what it matches), then run again.",
            )

    con = warehouse.connect_build()
    try:
        if pipeline.checks:
            with rec.step("checks") as step:
                outcomes = checks_step(project, pipeline, con, warehouse, rec, step, label="check")
                blocking = [o for o in outcomes if o.blocks_publish]
                if blocking:
                    raise RunFailed(
                        f"{len(blocking)} check(s) failed — published data was left as it was",
                        why="; ".join(f"{o.name}: {o.message}" for o in blocking[:5]),
                        fix=f"See the run's checks (`headwater logs {rec.id}` or the run page), fix the data or the models, then run again.",
                    )

        dashboards = bool(project.config.dashboards or project.broken_dashboards)
        try:
            models = dbt.manifest_models()
            publish_plan: PublishPlan | None = plan(models, result.nodes, pipeline.publish, warehouse.published_tables())
        except ENVIRONMENT_ERRORS:  # what is published cannot be read: the publish step meets it again, and names itself
            publish_plan = None
        if publish_plan is not None and publish_plan.tables and dashboards:
            with rec.step("dashboards") as step:
                _check_dashboards(project, models, publish_plan, warehouse, con, rec, step)
                dashboards = False

        with rec.step("publish") as step:
            if publish_plan is None:
                models = dbt.manifest_models()
                publish_plan = plan(models, result.nodes, pipeline.publish, warehouse.published_tables())
                if publish_plan.tables and dashboards:  # never published unchecked
                    _check_dashboards(project, models, publish_plan, warehouse, con, rec, step)
            if not publish_plan.tables:
                if selection and any(is_publishable(m, pipeline.publish) for m in models):
                    raise HeadwaterError(
                        "Nothing to publish: the dbt selection built none of the published models, and none was published before",
                        why=f"selection {selection!r}; publish: {pipeline.publish}",
                        fix="Run the whole pipeline once (without a selection), or select the published models too (e.g. --select +MODEL).",
                    )
                raise nothing_to_publish(models, pipeline.publish, rec.run.pipeline)
            try:
                published = publish(warehouse, con, publish_plan, name=f"run-{rec.id:06d}")
            except HeadwaterError as exc:
                if exc.published is not None:  # committed in the warehouse, then a later part failed: recorded as published
                    rec.set_detail(step, {"tables": exc.published, "carried_over": publish_plan.carried}, rows=sum(exc.published.values()))
                raise
            rec.set_detail(step, {"tables": published, "carried_over": publish_plan.carried}, rows=sum(published.values()))
            rec.log("info", "published " + ", ".join(f"{t} ({n:,} rows)" for t, n in published.items()))
    finally:
        con.close()
    run = rec.finish("success", rows=rows, snapshot=warehouse.current_snapshot().name)  # type: ignore[union-attr]
    return RunOutcome(run, published)


def _check_dashboards(project: LoadedProject, models: list[dict[str, Any]], publish_plan: PublishPlan, warehouse: WarehouseEngine, con: Any, rec: RunRecorder, step: RunStep) -> None:
    """Every dashboard against the tables about to be published (dashboards/validate.py): one check
    result each; one that the new tables would break keeps the previous publication."""
    with outline_of_plan(publish_plan, warehouse, con) as outline:
        pipelines = list(project.config.pipelines.values()) or [Pipeline()]
        later = {m["name"] for m in models if any(is_publishable(m, p.publish) for p in pipelines)} - set(publish_plan.tables)
        findings = check_dashboards(project, outline, later=later)
    outcomes = dashboard_outcomes(project, findings)
    rec.record_checks(outcomes)
    rec.set_detail(step, {"passed": sum(o.status == "pass" for o in outcomes), "total": len(outcomes)})
    for finding in findings:
        if not finding.blocking:  # the blocking ones are the run's error, said once there
            rec.log("warn", f"dashboard {finding.message}" + (f" Fix: {finding.fix}" if finding.fix else ""))
    blocking = [f for f in findings if f.blocking]
    if blocking:
        files = sorted({f.file for f in blocking})
        shown = [f"{f.message}" + (f" — {f.fix}" if f.fix else "") for f in blocking[:5]]
        raise RunFailed(
            f"{'Dashboard ' + files[0] if len(files) == 1 else f'{len(files)} dashboards'} would break on the tables this run built — published data was left as it was",
            why="\n  ".join(["", *shown]) + (f"\n  and {len(blocking) - 5} more (`headwater check`)" if len(blocking) > 5 else ""),
            fix="Fix the dashboard file (or the model it reads), then run again; `headwater check` checks dashboards without a run.",
        )


def _record_dbt_result(result: BuildResult, step: RunStep, warehouse: WarehouseEngine, rec: RunRecorder, command: str = "build") -> BuildResult:
    """A dbt command's nodes (with their rows) as the step's detail and its tests as checks; raises when it failed."""
    con = warehouse.connect_build()
    try:
        result = count_rows(result, con, warehouse)
        rec.record_checks(dbt_test_outcomes(result, con, warehouse))
    finally:
        con.close()
    rec.set_detail(step, result.as_dict(), rows=sum(n.rows or 0 for n in result.nodes))
    if not result.success:
        raise describe_failure(result, command, run_id=rec.id)
    return result

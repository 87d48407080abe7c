"""`headwater test [PIPELINE]`: a pipeline's dbt tests and its own checks against what is built now.

No sync, no model built, nothing published: dbt's tests of the pipeline's selection (their failing
rows stored, as in a run) and then the pipeline's checks, on the build area as the last run or
`headwater dbt` left it. Recorded as a run of its own (pipeline `test`), so `headwater logs N` shows
the tests, the checks and their samples as for any run. It holds the writer lock: dbt stores the
failing rows of a test in the build area, which only one process may write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from headwater.checks import CheckOutcome, dbt_test_outcomes
from headwater.config.model import LoadedProject
from headwater.errors import HeadwaterError, NotFound, RunFailed
from headwater.orchestrate.pipelines import choose_pipeline
from headwater.orchestrate.recorder import Listener, RunRecorder, abandon_stale_runs
from headwater.orchestrate.run import checks_step, log_outcomes
from headwater.system import Run, RunStep, SystemDB, open_system_db
from headwater.transform import DbtProject
from headwater.warehouse import open_warehouse

TEST_PIPELINE = "test"  # the pipeline name `headwater test` runs are recorded under


@dataclass
class TestReport:
    run_id: int
    pipeline: str
    outcomes: list[CheckOutcome] = field(default_factory=list)
    error: HeadwaterError | None = None  # set when a test or check failed: the error the run was recorded with

    @property
    def failed(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if o.blocks_publish]

    @property
    def warned(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if o.status != "pass" and not o.blocks_publish]


def test_pipeline(project: LoadedProject, name: str | None = None, *, listener: Listener | None = None, wait_for_lock: float = 0, on_wait: Callable[[], None] | None = None) -> TestReport:
    """Run the tests and checks; returns the report (failures included). Raises `HeadwaterError`
    for what stops them from running at all (nothing built yet, a dbt project that does not parse)."""
    pipeline_name, pipeline = choose_pipeline(project, name)
    warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
    db = open_system_db(project)
    try:
        if not _built(db, project.config.name):
            raise NotFound(
                "Nothing is built yet to test",
                why="no run of this project has built its dbt models (a successful dbt:build step)",
                fix=f"Build once with `headwater run {pipeline_name}`, then `headwater test` tests what it built.",
            )
        with warehouse.writer_lock(wait_for_lock, on_wait):
            abandon_stale_runs(db, project.config.name, current=TEST_PIPELINE)
            rec = RunRecorder(db, project.config.name, TEST_PIPELINE, "cli", listener)
            report = TestReport(rec.id, pipeline_name)
            try:
                rec.log("info", f"testing pipeline {pipeline_name} against what is built now (no sync, no build, no publish)")
                dbt = DbtProject(project, warehouse)
                with rec.step("dbt:test") as step:
                    result = dbt.test(pipeline.select, rec.log)
                    if result.error:
                        raise HeadwaterError("dbt could not run the tests", why=result.error, fix="Fix the model or project file it names, then run again.")
                    con = warehouse.connect_build()
                    try:
                        report.outcomes += dbt_test_outcomes(result, con, warehouse)
                    finally:
                        con.close()
                    rec.set_detail(step, result.as_dict())
                    rec.record_checks(report.outcomes)
                    if not report.outcomes:
                        rec.log("info", "the dbt project has no tests" + (f" in the selection {pipeline.select!r}" if pipeline.select else ""))
                    log_outcomes(rec, report.outcomes)
                if pipeline.checks:
                    with rec.step("checks") as step:
                        con = warehouse.connect_build()
                        try:
                            report.outcomes += checks_step(project, pipeline, con, warehouse, rec, step)
                        finally:
                            con.close()
                if report.failed:
                    raise RunFailed(
                        f"{len(report.failed)} of {len(report.outcomes)} test(s) and check(s) failed",
                        why="; ".join((o.message or f"{o.name}: {o.status}").splitlines()[0] for o in report.failed[:5]) + (f" (and {len(report.failed) - 5} more)" if len(report.failed) > 5 else ""),
                        fix=f"See the failing rows with `headwater logs {rec.id}`; fix the data or the models, then `headwater run`.",
                    )
            except BaseException as exc:
                failure = rec.fail(exc, warehouse.folder)
                if isinstance(failure, RunFailed) and report.failed:
                    report.error = failure
                    return report
                if failure is exc:
                    raise
                raise failure from exc
            rec.finish("success")
            return report
    finally:
        db.close()


def _built(db: SystemDB, project: str) -> bool:
    with db.session() as session:
        query = select(RunStep.id).join(Run, Run.id == RunStep.run_id).where(Run.project == project, RunStep.name == "dbt:build", RunStep.status == "success").limit(1)
        return session.scalars(query).first() is not None


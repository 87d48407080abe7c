"""`headwater check`: everything about a project that can be wrong, found without a run.

In order: the project file (nothing else can be checked without it), the pipeline asked for, the
dbt project (``dbt parse``: read and validated, no query run), the dashboards (against the
published tables when there are any, else against the columns the models' YAML documents), and
each source the pipeline syncs (connected to and its tables listed; no data moved). Each problem is
reported once, with what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from headwater.config.model import LoadedProject, Pipeline
from headwater.dashboards.validate import Finding, check_dashboards, check_documented, snapshot_outline
from headwater.errors import HeadwaterError
from headwater.orchestrate.pipelines import choose_pipeline
from headwater.publish import PublishedData
from headwater.publish.publish import is_publishable
from headwater.sources.probe import reachable_tables
from headwater.transform import DbtProject
from headwater.transform.dbt import documented_columns
from headwater.warehouse import WarehouseEngine, open_warehouse

Status = Literal["ok", "problems", "warnings", "skipped"]


@dataclass(frozen=True)
class Problem:
    area: str  # "project file", "pipeline", "dbt", "dashboards", "source <name>"
    where: str  # the file or source it is in
    what: str
    fix: str | None
    severity: Literal["error", "warn"] = "error"  # warn: worth a look, but not known to be wrong (exit 0)

    def as_dict(self) -> dict[str, str | None]:
        return {"area": self.area, "where": self.where, "message": self.what, "fix": self.fix, "severity": self.severity}


@dataclass(frozen=True)
class Area:
    name: str
    status: Status
    detail: str  # what was checked, or why it was not

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Report:
    project: str | None = None
    areas: list[Area] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def as_dict(self) -> dict[str, object]:
        return {"project": self.project, "ok": self.ok, "checked": [a.as_dict() for a in self.areas], "problems": [p.as_dict() for p in self.problems]}

    def add(self, name: str, detail: str, problems: list[Problem]) -> None:
        status: Status = "problems" if any(p.severity == "error" for p in problems) else "warnings" if problems else "ok"
        self.areas.append(Area(name, status, detail))
        self.problems += problems


def check_project(open_project: Callable[[], LoadedProject], pipeline: str | None = None, *, file: Path | None = None) -> Report:
    """``open_project``: loads the project as commands do (its errors are the project file's problems)."""
    report = Report()
    try:
        project = open_project()
    except HeadwaterError as exc:
        report.add("project file", str(file or "headwater.yml"), [_problem("project file", str(file or "headwater.yml"), exc)])
        for name in ("pipeline", "dbt", "dashboards", "sources"):
            report.areas.append(Area(name, "skipped", "the project file must load first"))
        return report
    report.project = project.config.name
    report.add("project file", str(project.file), [])
    if pipeline is None and len(project.config.pipelines) > 1:  # no name: every pipeline's sources
        names = list(project.config.sources)
        report.add("pipeline", f"all {len(project.config.pipelines)} ({', '.join(project.config.pipelines)})", [])
    else:
        try:
            pipeline_name, chosen = choose_pipeline(project, pipeline)
        except HeadwaterError as exc:
            report.add("pipeline", pipeline or "(default)", [_problem("pipeline", str(project.file), exc)])
            return report
        names = chosen.sources if chosen.sources is not None else list(project.config.sources)
        report.add("pipeline", pipeline_name, [])

    warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
    dbt = _parse(report, project, warehouse)
    _check_dashboards(report, project, warehouse, dbt)
    for name in names:
        try:
            tables = reachable_tables(name, project.config.sources[name], project.root)
        except HeadwaterError as exc:
            report.add(f"source {name}", "not reached", [_problem(f"source {name}", f"sources.{name}", exc)])
        else:
            report.add(f"source {name}", f"reached: {len(tables)} table(s)" + (f" ({', '.join(tables[:8])}{', ...' if len(tables) > 8 else ''})" if tables else ""), [])
    if not names:
        report.areas.append(Area("sources", "skipped", "the pipeline syncs no source"))
    return report


def _check_dashboards(report: Report, project: LoadedProject, warehouse: WarehouseEngine, dbt: DbtProject | None) -> None:
    if not project.config.dashboards and not project.broken_dashboards:
        report.areas.append(Area("dashboards", "skipped", "the project has none"))
        return
    manifest = dbt.parse_target / "manifest.json" if dbt is not None else None
    publishable: set[str] = set()
    if dbt is not None and manifest is not None and manifest.is_file():
        pipelines = list(project.config.pipelines.values()) or [Pipeline()]  # none declared: the default one's
        publishable = {m["name"] for m in dbt.manifest_models(dbt.parse_target) if any(is_publishable(m, p.publish) for p in pipelines)}
    count = len(project.config.dashboards) + len(project.broken_dashboards)
    findings: list[Finding]
    if warehouse.current_snapshot() is not None:
        data = PublishedData(warehouse)
        try:
            with closing(snapshot_outline(data)) as outline:
                findings = check_dashboards(project, outline, later=publishable - set(outline.tables()))
        finally:
            data.close()
        detail = f"{count} against the published tables"
    elif manifest is not None and manifest.is_file():
        findings = check_documented(project, documented_columns(manifest), publishable)
        detail = f"{count} against dbt's models (nothing is published yet: columns as the models' YAML documents them)"
    else:
        findings = [f for f in check_documented(project, {}, set()) if f.part == "the file"]  # the files alone
        detail = f"{count} files read (nothing published and dbt did not parse: tables and columns not checked)"
    report.add("dashboards", detail, [_dashboard_problem(f) for f in findings])


def _parse(report: Report, project: LoadedProject, warehouse: WarehouseEngine) -> DbtProject | None:
    """``dbt parse``, reported; the dbt project when it parsed (its manifest is there to read)."""
    try:
        dbt = DbtProject(project, warehouse)
    except HeadwaterError as exc:
        report.add("dbt", project.config.dbt.project_dir, [_problem("dbt", project.config.dbt.project_dir, exc)])
        return None
    if dbt.needs_packages():  # dbt parse would fail for want of them, which is no problem of the project's
        report.areas.append(Area("dbt", "skipped", "its packages are not installed yet (the next run installs them: dbt deps), so it was not parsed"))
        return None
    error = dbt.parse()
    report.add("dbt", f"dbt parse of {dbt.dir}", [Problem("dbt", str(dbt.dir), f"dbt parse failed: {error}", "Fix the file dbt names, then check again.")] if error else [])
    return None if error else dbt


def _dashboard_problem(finding: Finding) -> Problem:
    if finding.part == "the file":  # a run goes on without it, but it is broken: an error here
        return Problem("dashboards", finding.file, finding.what, finding.fix)
    return Problem("dashboards", finding.file, finding.message, finding.fix, "error" if finding.blocking else "warn")


def _problem(area: str, where: str, exc: HeadwaterError) -> Problem:
    return Problem(area, where, exc.what + (f" ({exc.why})" if exc.why else ""), exc.fix)

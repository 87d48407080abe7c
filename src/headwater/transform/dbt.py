"""Run the project's dbt models and tests in-process with dbt-core's programmatic runner.

Profiles are generated from headwater.yml into the project's ``.headwater/dbt`` folder (never
``~/.dbt``), and so are dbt's target and log folders; anonymous usage stats are off.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from headwater.config.model import LoadedProject
from headwater.errors import ConfigError, RunFailed
from headwater.warehouse import Warehouse, extension_directory

# Read by dbt when it starts; set before dbt is imported anywhere in this process.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


@dataclass(frozen=True)
class NodeResult:
    name: str
    resource_type: str  # model | test | seed | snapshot
    status: str  # success | error | pass | fail | warn | skipped
    seconds: float
    path: str  # models/marts/flake_rate_weekly.sql
    relation: str | None  # "build"."marts"."flake_rate_weekly" for models
    message: str | None = None
    failures: int | None = None
    rows: int | None = None  # rows in a built model's relation
    severity: str | None = None  # tests: "error" or "warn", from the test's config


@dataclass
class BuildResult:
    success: bool
    nodes: list[NodeResult] = field(default_factory=list)
    error: str | None = None

    def failed(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in ("error", "fail")]

    def as_dict(self) -> dict[str, Any]:
        return {"success": self.success, "error": self.error, "nodes": [asdict(n) for n in self.nodes]}


class DbtProject:
    def __init__(self, project: LoadedProject, warehouse: Warehouse) -> None:
        self.project = project
        self.warehouse = warehouse
        self.dir = project.path(project.config.dbt.project_dir).resolve()
        self.work = project.root / ".headwater" / "dbt"
        self.profile_name = self._profile_name()

    def _profile_name(self) -> str:
        file = self.dir / "dbt_project.yml"
        try:
            data = yaml.safe_load(file.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"No dbt project at {self.dir} (dbt_project.yml is missing)",
                fix="Set dbt.project_dir in headwater.yml to the folder holding dbt_project.yml, or run `headwater init`.",
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: invalid YAML: {exc}") from None
        profile = (data or {}).get("profile")
        if not profile:
            raise ConfigError(f"{file}: no 'profile:' key", fix="Add `profile: <name>`; Headwater generates that profile from headwater.yml.")
        return str(profile)

    def write_profiles(self) -> Path:
        settings = self.project.config
        output: dict[str, Any] = {"type": "duckdb", "path": str(self.warehouse.build_path), "threads": settings.dbt.threads}
        extra: dict[str, Any] = {}
        if (ext := extension_directory()) is not None:
            extra["extension_directory"] = ext
        if settings.warehouse.memory_limit:
            extra["memory_limit"] = settings.warehouse.memory_limit
        if extra:
            output["settings"] = extra
        if self.warehouse.confinement is not None:
            from headwater.transform.lockdown import confined_profile

            output = confined_profile(output, self.warehouse.confinement)
        profiles = {self.profile_name: {"target": "headwater", "outputs": {"headwater": output}}}
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "profiles.yml").write_text(yaml.safe_dump(profiles, sort_keys=False))
        return self.work

    def args(self, command: str, select: str | None = None) -> list[str]:
        args = [
            command,
            "--project-dir", str(self.dir),
            "--profiles-dir", str(self.write_profiles()),
            "--target-path", str(self.work / "target"),
            "--log-path", str(self.work / "logs"),
            "--no-send-anonymous-usage-stats",
            "--no-version-check",
            "--no-use-colors",
            "--quiet",
        ]  # fmt: skip
        if self.project.config.dbt.vars:
            args += ["--vars", json.dumps(self.project.config.dbt.vars)]
        if select:
            args += ["--select", select]
        return args

    def build(self, select: str | None = None, log: Callable[[str, str], None] = lambda level, msg: None) -> BuildResult:
        """``dbt build``: seeds, snapshots, models and their tests in dependency order. Failing tests keep
        their rows (--store-failures) so a run can show a sample of what failed."""
        from dbt.cli.main import dbtRunner  # imported late: it is slow and only runs need it

        def on_event(event: Any) -> None:
            info = event.info
            if info.level in ("info", "warn", "error") and info.msg and info.name not in _NOISY_EVENTS:
                log(info.level, _DOTS.sub(" ", str(info.msg)).strip())

        try:
            with self._held():
                outcome = dbtRunner(callbacks=[on_event]).invoke([*self.args("build", select), "--store-failures"])
        finally:
            _release_duckdb()
        if outcome.exception is not None:
            return BuildResult(success=False, error=_first_line(str(outcome.exception)))
        nodes = [_node_result(r) for r in getattr(outcome.result, "results", [])]
        return BuildResult(success=bool(outcome.success), nodes=nodes)

    def _held(self) -> AbstractContextManager[None]:
        """An organisation's models on an install with many are held to its folder (transform/lockdown.py)."""
        if self.warehouse.confinement is None:
            return nullcontext()
        from headwater.transform.lockdown import confined

        return confined()

    def manifest_models(self) -> list[dict[str, Any]]:
        """Every model of the project as dbt last compiled it (name, path, relation)."""
        manifest = json.loads((self.work / "target" / "manifest.json").read_text())
        return [
            {"name": n["name"], "path": n["path"], "relation": n.get("relation_name")}
            for n in manifest["nodes"].values()
            if n["resource_type"] == "model"
        ]


def _release_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB instance open in a class attribute after a command ends; close it,
    or this process cannot open the build database again (with other settings) to publish."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
        DuckDBConnectionManager.close_all_connections()


_DOTS = re.compile(r"\s*\.{3,}\s*")
_NOISY_EVENTS = {"LogStartLine", "MainReportVersion", "AdapterRegistered", "FoundStats", "ConcurrencyLine", "HooksRunning", "LogHookEndLine"}


def _node_result(result: Any) -> NodeResult:
    node = result.node
    failures = getattr(result, "failures", None)
    return NodeResult(
        name=node.name,
        resource_type=str(node.resource_type),
        status=str(result.status),
        seconds=round(float(result.execution_time or 0), 3),
        path=str(node.original_file_path),
        # for tests this is the table dbt stored the failing rows in (--store-failures)
        relation=getattr(node, "relation_name", None),
        message=_first_line(result.message) if result.message and str(result.status) in ("error", "fail", "warn") else None,
        failures=int(failures) if failures is not None else None,
        severity=str(node.config.severity).lower() if str(node.resource_type) in ("test", "unit_test") else None,
    )


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return " ".join(lines[:6])


def describe_failure(result: BuildResult) -> RunFailed:
    if result.error:
        return RunFailed("dbt could not build the project", why=result.error, fix="Fix the model or project file it names, then run again.")
    failed = result.failed()
    items = "; ".join(f"{n.resource_type} {n.name}: {n.message or n.status}" for n in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return RunFailed(
        f"dbt build failed: {len(failed)} node(s) failed — published data was left as it was",
        why=items + more,
        fix="See the run's log (`headwater runs`), fix the model or the data, then run again.",
    )


def count_rows(result: BuildResult, con: object) -> BuildResult:
    """Fill in ``rows`` for every model and snapshot built in this run (a count per table is cheap in DuckDB)."""
    nodes = []
    for node in result.nodes:
        if node.resource_type in ("model", "snapshot", "seed") and node.status == "success" and node.relation:
            rows = con.execute(f"SELECT count(*) FROM {node.relation}").fetchone()[0]  # type: ignore[attr-defined]
            node = replace(node, rows=int(rows))
        nodes.append(node)
    return BuildResult(result.success, nodes, result.error)

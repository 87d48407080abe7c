"""Run the project's dbt models and tests in-process with dbt-core's programmatic runner.

Profiles are generated from headwater.yml into the project's ``.headwater/dbt`` folder (never
``~/.dbt``), and so are dbt's target and log folders; anonymous usage stats are off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from headwater.config.model import LoadedProject
from headwater.errors import ConfigError, RunFailed
from headwater.transform import packages
from headwater.transform.locate import locate
from headwater.warehouse import WarehouseEngine

Log = Callable[[str, str], None]  # (level, message)

# Read by dbt when it starts; set before dbt is imported anywhere in this process.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


@dataclass(frozen=True)
class NodeResult:
    name: str
    resource_type: str  # model | test | unit_test | seed | snapshot | function | exposure | saved_query
    status: str  # success | error | pass | fail | warn | skipped
    seconds: float
    path: str  # models/marts/flake_rate_weekly.sql
    relation: str | None  # "build"."marts"."flake_rate_weekly" for models
    message: str | None = None
    failures: int | None = None
    rows: int | None = None  # rows in a built model's relation
    severity: str | None = None  # tests: "error" or "warn", from the test's config
    diff: str | None = None  # a failed unit test: dbt's diff of actual against expected rows (daff's CSV)


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
    def __init__(self, project: LoadedProject, warehouse: WarehouseEngine) -> None:
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
        output = self.warehouse.dbt_profile(self.project.config.dbt.threads)  # the engine's adapter, pointed at its build area
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
        dbt_vars = {**self.project.config.dbt.vars, **self.warehouse.dbt_vars()}  # the engine's own (a dataset prefix) win
        if dbt_vars:
            args += ["--vars", json.dumps(dbt_vars)]
        if select:
            args += ["--select", select]
        return args

    def build(self, select: str | None = None, log: Log = lambda level, msg: None, *, seeded: bool = False, full_refresh: bool = False) -> BuildResult:
        """``dbt build``: seeds, snapshots, models and their tests in dependency order. Failing tests keep
        their rows (--store-failures) so a run can show a sample of what failed. ``seeded``: `seed`
        has just loaded every seed, so the build loads none again (their tests still run).
        ``full_refresh``: dbt's --full-refresh (incremental models and seeds rebuilt from scratch)."""
        skip = ["--exclude-resource-type", "seed"] if seeded else []
        return self._run_nodes([*self.args("build", select), "--store-failures", *skip, *_full_refresh(full_refresh)], log)

    def test(self, select: str | None = None, log: Log = lambda level, msg: None) -> BuildResult:
        """``dbt test``: the data and unit tests of the selection against what is built now, failing
        rows kept (--store-failures) as in a build."""
        return self._run_nodes([*self.args("test", select), "--store-failures"], log)

    def seed(self, log: Log = lambda level, msg: None, *, full_refresh: bool = False) -> BuildResult:
        """``dbt seed``: every seed, before ``dbt build`` (``dbt.seed_first``). dbt orders a seed before a
        model only through ``ref()``; a model reading a seed through ``source()`` or a var may run first."""
        return self._run_nodes([*self.args("seed"), *_full_refresh(full_refresh)], log)

    @property
    def parse_target(self) -> Path:
        """Where `parse` writes its manifest: not the runs' target folder, which a run may be reading."""
        return self.work / "parse-target"

    def parse(self) -> str | None:
        """``dbt parse``: the project read and validated, and its manifest written (to `parse_target`),
        with no query run. None when it parsed; else dbt's error."""
        from dbt.cli.main import dbtRunner

        args = self.args("parse")
        args[args.index("--target-path") + 1] = str(self.parse_target)
        errors: list[str] = []
        with self.warehouse.dbt_session():
            # dbt prints its error to the console too: `headwater check` says it once, in its own report
            outcome = dbtRunner(callbacks=[_forward_events(lambda level, msg: None, errors)]).invoke([*args, "--log-level", "none"])
        if outcome.success:
            return None
        return _error_text(outcome.exception, errors) or "dbt parse failed"

    def needs_packages(self) -> bool:
        return packages.needs_install(self.dir, self.work)

    def install_packages(self, log: Log = lambda level, msg: None) -> list[str]:
        """``dbt deps``; returns the packages, described. dbt empties the install folder before it
        downloads anything, so the folder installed before is moved aside meanwhile and put back if
        the install fails: a failed download never loses packages that worked."""
        from dbt.cli.main import dbtRunner

        declared = packages.declared_packages(self.dir)
        target = packages.install_path(self.dir)
        aside = target.with_name(target.name + ".headwater-previous")
        if aside.exists():  # a run killed during dbt deps: what was there before it is the last good install
            shutil.rmtree(target, ignore_errors=True)
            aside.rename(target)
        if target.exists():
            target.rename(aside)
        args = self.args("deps")
        del args[args.index("--target-path") : args.index("--target-path") + 2]  # deps compiles nothing and refuses it
        errors: list[str] = []
        outcome = dbtRunner(callbacks=[_forward_events(log, errors)]).invoke(args)
        if not outcome.success:
            shutil.rmtree(target, ignore_errors=True)
            if aside.exists():
                aside.rename(target)
            raise packages.deps_failed(self.dir, declared, _error_text(outcome.exception, errors) or "dbt deps failed")
        shutil.rmtree(aside, ignore_errors=True)
        packages.record_install(self.dir, self.work)
        return [packages.describe(p) for p in declared]

    def _run_nodes(self, args: list[str], log: Log) -> BuildResult:
        from dbt.cli.main import dbtRunner  # imported late: it is slow and only runs need it

        errors: list[str] = []
        with self.warehouse.dbt_session():
            outcome = dbtRunner(callbacks=[_forward_events(log, errors, self.locate)]).invoke(args)
        if outcome.exception is not None:
            return BuildResult(success=False, error=_error_text(outcome.exception, errors))
        nodes = [_node_result(r, self.locate) for r in getattr(outcome.result, "results", [])]
        return BuildResult(success=bool(outcome.success), nodes=nodes)

    def locate(self, message: str) -> str | None:
        """The model's file and own line for a model's SQL error that cites `LINE n` (`locate.py`)."""
        return locate(message, self.dir, self.work / "target", self.project.root)

    def manifest_models(self, target: Path | None = None) -> list[dict[str, Any]]:
        """Every model of the project as dbt last compiled it (name, path, relation); ``target``: the
        folder of the manifest (default: the runs')."""
        manifest = json.loads(((target or self.work / "target") / "manifest.json").read_text())
        return [
            {"name": n["name"], "path": n["path"], "relation": n.get("relation_name")}
            for n in manifest["nodes"].values()
            if n["resource_type"] == "model"
        ]


def _full_refresh(on: bool) -> list[str]:
    return ["--full-refresh"] if on else []


def documented_columns(manifest: Path) -> dict[str, tuple[list[str], bool]]:
    """Each model's columns as its YAML documents them (what dbt knows of its columns before a
    build), and whether that list is all of them (an enforced contract), from a manifest; models
    documenting none are left out."""
    nodes = json.loads(manifest.read_text())["nodes"].values()
    return {
        n["name"]: (list(n["columns"]), bool((n.get("contract") or {}).get("enforced")))
        for n in nodes
        if n["resource_type"] == "model" and n.get("columns")
    }


def _forward_events(log: Log, errors: list[str], where: Callable[[str], str | None] = lambda _: None) -> Callable[[Any], None]:
    """dbt's events to the run log, and its error lines to ``errors``; dbt's warnings say they are
    dbt's, and a model's SQL error names the model's file and line (``where``). It must never
    raise: an exception in a callback kills a dbt worker thread, and dbt then waits for it forever."""

    def on_event(event: Any) -> None:
        info = event.info
        if info.level in ("info", "warn", "error") and info.msg and info.name not in _NOISY_EVENTS:
            message = _DOTS.sub(" ", str(info.msg)).strip()
            if info.level == "warn":
                message = "dbt: " + _WARNING.sub("", message)
            elif info.level == "error" and (found := _located(message, where)):
                message = f"{message}\n{found}"
            log(info.level, message)
            if info.level == "error" and info.name != "MainEncounteredError":  # that one repeats the exception
                errors.append(message)

    return on_event


def _error_text(exception: BaseException | None, errors: list[str]) -> str:
    """Why a dbt command stopped: its exception, and the error lines dbt logged before it, which
    often hold the detail (a semantic model's bad name under "Semantic Manifest validation failed")."""
    first = _first_lines_joined(str(exception)) if exception is not None else ""
    details = [_first_lines_joined(e) for e in errors if _first_lines_joined(e) and _first_lines_joined(e) not in first]
    return " — ".join([first, *details[:3]] if first else details[:3])


def _located(message: str, where: Callable[[str], str | None]) -> str | None:
    try:
        return where(message) if "LINE " in message else None
    except Exception:  # noqa: BLE001 - a note only; never fail a dbt callback (see _forward_events)
        return None


_DOTS = re.compile(r"\s*\.{3,}\s*")
_WARNING = re.compile(r"^\[WARNING\]:?\s*")  # dbt's own label; ours says "dbt:"
# dbt internals and chatter: a stack trace stays in dbt's own log (.headwater/dbt/logs), the error itself reaches the run log
_NOISY_EVENTS = {"MainStackTrace", "LogStartLine", "MainReportVersion", "AdapterRegistered", "FoundStats", "ConcurrencyLine", "HooksRunning", "LogHookEndLine"}


def _node_result(result: Any, where: Callable[[str], str | None] = lambda _: None) -> NodeResult:
    """One result of ``dbt build``, whatever its node: models, seeds, snapshots, data and unit tests,
    functions, exposures and saved queries all come back here, and only tests have a severity and
    only data tests a stored-failures table, so nothing but the name and type is taken for granted."""
    node = result.node
    kind = str(node.resource_type)
    status = str(result.status)
    failures = getattr(result, "failures", None)
    text = str(result.message) if result.message and status in ("error", "fail", "warn") else None
    diff = _unit_test_diff(text) if text is not None and kind == "unit_test" and status == "fail" else None
    return NodeResult(
        name=node.name,
        resource_type=kind,
        status=status,
        seconds=round(float(getattr(result, "execution_time", 0) or 0), 3),
        path=str(getattr(node, "original_file_path", "") or ""),
        # data tests: the table dbt stored the failing rows in (--store-failures); unit tests store none
        relation=None if kind == "unit_test" else getattr(node, "relation_name", None),
        message="actual differs from expected" if diff else _with_location(_first_lines_joined(text), _located(text, where)) if text else None,
        failures=int(failures) if failures is not None else None,
        severity=_severity(node) if kind in ("test", "unit_test") else None,
        diff=diff,
    )


def _with_location(message: str, found: str | None) -> str:
    return f"{message} — {found}" if found else message


def _severity(node: Any) -> str:
    """A data test's configured severity; unit tests have none in dbt (a failure is always an error)."""
    return str(getattr(node.config, "severity", None) or "error").lower()


UNIT_TEST_DIFF_LINES = 60


def _unit_test_diff(message: str) -> str | None:
    """The table of a failed unit test's message: dbt renders it after "actual differs from expected:"
    as daff's CSV-like diff (a marker column, then the model's columns)."""
    _, found, rest = message.partition("differs from expected:")
    lines = [line for line in rest.strip("\n").splitlines() if line.strip()] if found else []
    return "\n".join(lines[: UNIT_TEST_DIFF_LINES + 1]) or None


def _first_lines_joined(text: str) -> str:
    """dbt's (multi-line) message on one line: its first six non-blank lines, stripped and joined
    with spaces (unlike `errors.first_line`, which keeps only the first)."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return " ".join(lines[:6])


def describe_failure(result: BuildResult, command: str = "build", *, run_id: int | None = None) -> RunFailed:
    if result.error:
        return RunFailed(f"dbt could not {command} the project", why=result.error, fix="Fix the model or project file it names, then run again.")
    failed = result.failed()
    items = "; ".join(f"{n.resource_type} {n.name}: {n.message or n.status}" for n in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    log = f"`headwater logs {run_id}`" if run_id is not None else "`headwater logs` with the run's number"
    fix = f"See the run's log ({log}), fix the model or the data, then run again."
    if seeds := _seeds_read_too_early(result):
        fix = (
            f"A model read the seed {', '.join(seeds)} before dbt loaded it: dbt orders seeds first only for ref(). "
            "Read it with ref('…'), or set `seed_first: true` under dbt: in headwater.yml (runs dbt seed before dbt build)."
        )
    return RunFailed(f"dbt {command} failed: {len(failed)} node(s) failed — published data was left as it was", why=items + more, fix=fix)


def _seeds_read_too_early(result: BuildResult) -> list[str]:
    """Seeds of this build that a failed model found missing (read through source() or a var, with no
    ref() edge, so dbt ran the model before loading them)."""
    seeds = {n.name for n in result.nodes if n.resource_type == "seed"}
    missing = " ".join(n.message or "" for n in result.failed() if n.resource_type == "model" and "does not exist" in (n.message or ""))
    return sorted(s for s in seeds if re.search(rf"\b{re.escape(s)}\b", missing))


def count_rows(result: BuildResult, con: object, warehouse: WarehouseEngine) -> BuildResult:
    """Fill in ``rows`` for every model and snapshot built in this run (a count per table is cheap in
    DuckDB and PostgreSQL, and read from a table's metadata in BigQuery)."""
    nodes = []
    for node in result.nodes:
        if node.resource_type in ("model", "snapshot", "seed") and node.status == "success" and node.relation:
            nodes.append(replace(node, rows=warehouse.relation_rows(con, node.relation)))
        else:
            nodes.append(node)
    return BuildResult(result.success, nodes, result.error)

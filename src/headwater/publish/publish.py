"""Write-audit-publish: after dbt built and tested everything in the build database, copy the
publishable models into a new snapshot and switch readers to it in one step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from headwater.errors import RunFailed
from headwater.transform import NodeResult
from headwater.warehouse import WarehouseEngine


@dataclass(frozen=True)
class PublishPlan:
    fresh: dict[str, str]  # table -> build relation, built and tested in this run
    carried: list[str]  # publishable but not selected this run: kept from the current snapshot

    @property
    def tables(self) -> list[str]:
        return sorted([*self.fresh, *self.carried])


def is_publishable(model: dict[str, Any], patterns: list[str]) -> bool:
    return model["name"] in patterns or _folder(model) in patterns


def plan(models: list[dict[str, Any]], built: list[NodeResult], patterns: list[str], previously: set[str]) -> PublishPlan:
    ok = {n.name for n in built if n.resource_type == "model" and n.status == "success"}
    publishable = [m for m in models if is_publishable(m, patterns)]
    fresh = {m["name"]: m["relation"] for m in publishable if m["name"] in ok}
    carried = [m["name"] for m in publishable if m["name"] not in ok and m["name"] in previously]
    return PublishPlan(fresh, carried)


def nothing_to_publish(models: list[dict[str, Any]], patterns: list[str], pipeline: str) -> RunFailed:
    """The error for a publish list that matches no model, naming the folders and models there are and
    the headwater.yml lines that would publish them (a dbt project of its own rarely has marts/)."""
    if not models:
        return RunFailed(
            "Nothing to publish: the dbt project has no models",
            why=f"publish: {patterns}, and dbt found no model under the project's model-paths",
            fix="Write models (SQL files) under models/, then run again.",
        )
    folders = sorted({_folder(m) for m in models} - {""})
    loose = sorted(m["name"] for m in models if not _folder(m))
    there = [f"folders {', '.join(f + '/' for f in folders)}" if folders else "", f"models at the top of models/: {', '.join(loose[:8])}" if loose else ""]
    example = [*folders[-1:], *loose[:2]]
    return RunFailed(
        "Nothing to publish: no model matches the pipeline's publish list",
        why=f"publish: {patterns} names no model folder or model; this project has " + "; ".join(t for t in there if t),
        fix=(
            f"Say what readers may see in headwater.yml — folders under models/ or model names, e.g.\n"
            f"pipelines:\n  {pipeline}:\n    publish: [{', '.join(example)}]"
        ),
    )


def _folder(model: dict[str, Any]) -> str:
    return PurePosixPath(model["path"]).parts[0] if "/" in model["path"] else ""


def publish(warehouse: WarehouseEngine, build: Any, publish_plan: PublishPlan, name: str) -> dict[str, int]:
    """Switch readers to the plan's tables, all at once, the engine's way (for DuckDB: a snapshot file and the pointer)."""
    return warehouse.publish(build, name, publish_plan.fresh, publish_plan.carried)

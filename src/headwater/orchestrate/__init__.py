"""Running pipelines: one run (`run_pipeline`), supervised attempts, alerts, the scheduler.

Attributes are imported on first use, so a light caller (the supervisor, `headwater runs`) does not
pay for DuckDB and dbt.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "RunOutcome": "headwater.orchestrate.run",
    "run_pipeline": "headwater.orchestrate.run",
    "choose_pipeline": "headwater.orchestrate.pipelines",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'headwater.orchestrate' has no attribute {name!r}")

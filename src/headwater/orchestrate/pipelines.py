"""Which pipeline to run: what the supervisor and the CLI need before a run starts, kept free of
the heavy imports (DuckDB, dbt) a run itself needs."""

from __future__ import annotations

from headwater.config.model import LoadedProject, Pipeline
from headwater.errors import HeadwaterError, NotFound

DEFAULT_PIPELINE = "default"


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

"""`headwater serve` (one project) and `serve --install` (an install's organisations): the same
process either way — attempts forked warm, a scheduler per project that has schedules, the web
app under uvicorn, and the schedulers stopped when the server stops."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater.config import LoadedProject
    from headwater.orchestrate.scheduler import Scheduler
    from headwater.system import SystemDB


def executor(project: LoadedProject) -> Callable[[str, str], str]:
    """What a scheduler calls to run one of ``project``'s pipelines: a supervised run, to its end."""
    from headwater.orchestrate.supervise import execute

    return lambda pipeline, trigger: execute(project, pipeline, trigger).status


def serve_web(
    db: SystemDB,
    projects: Mapping[str, LoadedProject],
    make_app: Callable[[dict[str, Scheduler]], Any],
    *,
    host: str,
    port: int,
    announce: Callable[[str, LoadedProject], None],
    banner: Callable[[], None],
    warehouses: Iterable[str] = (),
) -> None:
    """Start a scheduler for each of ``projects`` (by organisation) that has a schedule
    (``announce`` says so), then serve ``make_app(schedulers)`` until the server stops (Ctrl+C),
    then stop the schedulers. Runs are attempts forked from a warm server, with the dbt adapters of
    ``warehouses`` and of ``projects``' warehouses loaded; ``db`` is the caller's."""
    import uvicorn

    from headwater.orchestrate.scheduler import Scheduler
    from headwater.orchestrate.supervise import start_warm_attempts

    start_warm_attempts({*warehouses, *(p.config.warehouse.type for p in projects.values())})  # scheduled runs and the app's "run now"
    jobs: dict[str, Scheduler] = {}
    try:
        for slug, project in projects.items():
            if any(p.schedule for p in project.config.pipelines.values()):
                jobs[slug] = Scheduler(project, db, executor(project))
                announce(slug, project)
                jobs[slug].start()
        banner()
        # Forwarded headers are trusted by the app's own setting only (HEADWATER_TRUST_PROXY_HEADERS).
        # The app's "run now" goes through this process's schedulers when there are any (one queue).
        uvicorn.run(make_app(jobs), host=host, port=port, log_level="warning", proxy_headers=False)
    finally:
        for job in jobs.values():
            job.shutdown(wait=False)

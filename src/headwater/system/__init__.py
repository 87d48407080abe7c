from headwater.system.db import SystemDB, migrate, resolve_url
from headwater.system.models import Run, RunLog, RunStep

__all__ = ["Run", "RunLog", "RunStep", "SystemDB", "migrate", "resolve_url"]

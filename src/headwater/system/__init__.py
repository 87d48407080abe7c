from headwater.system.db import SystemDB, migrate, resolve_url
from headwater.system.models import CheckResult, Incident, Run, RunLog, RunStep, ScheduleState

__all__ = ["CheckResult", "Incident", "Run", "RunLog", "RunStep", "ScheduleState", "SystemDB", "migrate", "resolve_url"]

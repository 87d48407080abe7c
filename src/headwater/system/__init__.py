from headwater.system.db import SystemDB, migrate, open_system_db, resolve_url
from headwater.system.models import CheckResult, Incident, LoginFailure, LoginSession, Membership, Organisation, Run, RunLog, RunStep, ScheduleState, User

__all__ = [
    "CheckResult", "Incident", "LoginFailure", "LoginSession", "Membership", "Organisation", "Run", "RunLog", "RunStep", "ScheduleState", "SystemDB", "User",
    "migrate", "open_system_db", "resolve_url",
]  # fmt: skip

"""A host name that does not resolve is a mistake in the project file, not a passing fault: every
source says so (exit 2, check the host name) and a pipeline does not retry it. A resolver that does
not answer ("Temporary failure in name resolution") may pass, and stays transient.

``.invalid`` never resolves (RFC 2606), so these tests need no network and no server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_process import cli_env, run_cli

from headwater.errors import ExitCode, unresolved_host

HOST = "no-such-host.invalid"


def hw(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "-p", project, env=cli_env(NO_COLOR="1", HEADWATER_NO_DAEMON="1"), timeout=300)


def project(root: Path, source: str) -> Path:
    from headwater.scaffold import init_project

    init_project(root, "dns")
    text = (root / "headwater.yml").read_text().replace("sources: {}", f"sources:\n  app: {source}").replace("pipelines: {}", "pipelines:\n  daily: {sources: [app], retries: {attempts: 3, backoff: 1s}}")
    (root / "headwater.yml").write_text(text)
    return root


SOURCES = {
    "postgres": f"{{type: postgres, url: 'postgresql://u:pw@{HOST}:5432/x'}}",
    "mysql": f"{{type: mysql, url: 'mysql://u:pw@{HOST}:3306/x'}}",
    "csv-url": f"{{type: csv, path: 'http://{HOST}/roster.csv'}}",
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_a_host_that_does_not_resolve_is_a_user_error(tmp_path: Path, kind: str) -> None:
    root = project(tmp_path / kind, SOURCES[kind])
    synced = hw(root, "sync")
    assert synced.returncode == ExitCode.USER_ERROR, synced.stderr
    assert HOST in synced.stderr and "host name" in synced.stderr and "retried" not in synced.stderr


def test_a_pipeline_does_not_retry_it(tmp_path: Path) -> None:
    root = project(tmp_path / "run", SOURCES["postgres"])
    ran = hw(root, "run", "--json")
    assert ran.returncode == ExitCode.USER_ERROR, ran.stderr
    assert json.loads(ran.stdout)["attempts"] == 1
    runs = json.loads(hw(root, "runs", "--json").stdout)
    assert [r["attempt"] for r in runs] == [1] and "host name" in runs[0]["error"]


@pytest.mark.parametrize(
    ("message", "unresolved"),
    [
        (f'could not translate host name "{HOST}" to address: Name or service not known', True),
        (f'could not translate host name "{HOST}" to address: Name does not resolve', True),  # musl
        (f"Unknown MySQL server host '{HOST}' (-2)", True),
        ("[Errno -2] Name or service not known", True),
        ("[Errno 8] nodename nor servname provided, or not known", True),  # macOS
        ("[Errno -5] No address associated with hostname", True),
        (f'could not translate host name "{HOST}" to address: Temporary failure in name resolution', False),
        (f"Unknown MySQL server host '{HOST}' (-3)", False),
        ("[Errno -3] Temporary failure in name resolution", False),
        ("connection refused", False),
        ("timeout expired", False),
    ],
)
def test_which_messages_mean_the_name_does_not_exist(message: str, unresolved: bool) -> None:
    assert unresolved_host(message) is unresolved

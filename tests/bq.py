"""A throwaway BigQuery emulator for the test suite (Google's BigQuery cannot be reached from here).

The emulator is the PyPI package ``bqemulator`` (REST + Storage API, DuckDB-backed), installed by
``scripts/bqemulator-venv`` into ``./.venv-bqemulator``: it pins a newer DuckDB than Headwater, so it
runs there as a subprocess, never imported. It listens on 127.0.0.1 on ports it picks itself (``0``)
and logs them as JSON (``rest.listen``, ``grpc.listen``), so there is no race between probing a free
port and binding it. It keeps everything in memory; its log stays in a temp folder until it stops.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# HEADWATER_BQEMULATOR points at another bqemulator executable (same version, see scripts/bqemulator-venv).
EXECUTABLE = Path(os.environ.get("HEADWATER_BQEMULATOR", REPO / ".venv-bqemulator" / "bin" / "bqemulator"))
PROJECT = "test-project"
START_TIMEOUT = 60.0


class Unavailable(Exception):
    """The emulator cannot be started here; the message says why and how to fix it."""


@dataclass
class Emulator:
    base: Path  # temp folder: the working directory (no stray .bqemu.toml is read) and emulator.log
    process: subprocess.Popen[bytes] | None = None
    rest_port: int = 0
    grpc_port: int = 0
    project: str = PROJECT
    _log_file: Any = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """The REST endpoint, for ``ClientOptions(api_endpoint=...)`` and dbt-bigquery's ``api_endpoint``."""
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def log_path(self) -> Path:
        return self.base / "emulator.log"

    def log(self, tail: int = 60) -> str:
        """The last lines of the emulator's log, without the long translator start-up line."""
        if not self.log_path.exists():
            return ""
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if "sql.translator.init" not in line]
        return "\n".join(lines[-tail:])

    def start(self) -> None:
        env = os.environ | {
            # Start-up would INSTALL the avro extension from the network (best effort, but slow offline);
            # Avro loads are not used by Headwater.
            "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
            "BQEMU_UPLOAD_STAGING_DIR": str(self.base / "uploads"),
            "BQEMU_METRICS_ENABLED": "false",
        }
        argv = [str(EXECUTABLE), "start", "--rest-host", "127.0.0.1", "--rest-port", "0", "--grpc-host", "127.0.0.1", "--grpc-port", "0", "--project", self.project, "--ephemeral", "--log-format", "json", "--log-level", "info"]
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(argv, cwd=self.base, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # noqa: PLW1509 (one prctl call, resolved before the fork)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(f"the emulator exited with code {self.process.returncode} while starting; its log:\n{self.log()}")
            if not (self.rest_port and self.grpc_port):
                self._read_ports()
            elif self._answers():
                return
            time.sleep(0.1)
        raise Unavailable(f"the emulator did not answer on REST within {START_TIMEOUT:.0f} s; its log:\n{self.log()}")

    def _read_ports(self) -> None:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            if event.get("event") == "rest.listen":
                self.rest_port = int(event["port"])
            elif event.get("event") == "grpc.listen":
                self.grpc_port = int(event["port"])

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/bigquery/v2/projects/{self.project}/datasets", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
        shutil.rmtree(self.base, ignore_errors=True)


try:  # resolved here, in the parent: the child between fork and exec only makes the one call
    _prctl: Any = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not glibc Linux: the fixture's finalizer still stops the emulator
    _prctl = None


def _die_with_parent() -> None:
    """In the child: end with the test process even if it is killed and cannot stop the emulator (PR_SET_PDEATHSIG)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)


def start_emulator() -> Emulator:
    """Start the emulator in a new temp folder; raises `Unavailable` if that is impossible here."""
    if not os.access(EXECUTABLE, os.X_OK):
        raise Unavailable(f"{EXECUTABLE} is missing: run scripts/bqemulator-venv (scripts/test does) to install the emulator in its own venv")
    emulator = Emulator(Path(tempfile.mkdtemp(prefix="headwater-bq-")))
    try:
        emulator.start()
    except BaseException:
        emulator.stop()
        raise
    return emulator


def client(emulator: Emulator) -> Any:
    """Google's official client on the emulator: anonymous credentials, the emulator's REST endpoint."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=emulator.project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=emulator.endpoint))


def profiles_yml(emulator: Emulator, profile: str, dataset: str) -> str:
    """A profiles.yml pointing dbt-bigquery at the emulator (method oauth-secrets with a token the
    emulator does not check; api_endpoint; no job retries, so an emulator's 500 is seen at once):
    https://docs.getdbt.com/docs/core/connect-data-platform/bigquery-setup"""
    import yaml

    output = {
        "type": "bigquery", "method": "oauth-secrets", "token": "fake", "project": emulator.project, "dataset": dataset,
        "api_endpoint": emulator.endpoint, "threads": 1, "job_retries": 0, "job_execution_timeout_seconds": 60,
    }  # fmt: skip
    return str(yaml.safe_dump({profile: {"target": "emulator", "outputs": {"emulator": output}}}, sort_keys=False))

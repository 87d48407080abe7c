"""The warm CLI server (`headwater daemon`): commands run by the installed `headwater` script are handed
to a forked process of the server, which must behave as the client's own process would: its
arguments, environment, folder, terminal, exit code and signals. Real processes, real sockets, a
real pseudo-terminal; a SQLite source so that `headwater sync` does real work.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import SCRIPT, cli_env

from headwater.cli.launch import code_key, socket_path
from headwater.errors import ExitCode


def _env(runtime: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "HEADWATER_NO_DAEMON", "APP_DB")}
    return cli_env(env, HEADWATER_RUNTIME_DIR=str(runtime), PYTHONIOENCODING="utf-8", **extra)


@pytest.fixture
def runtime() -> Iterator[Path]:
    # Short: a Unix socket's path has a limit of 107 bytes, and pytest's tmp_path can be long.
    folder = Path(tempfile.mkdtemp(prefix="hw-rt-"))
    os.chmod(folder, 0o700)
    yield folder
    subprocess.run([str(SCRIPT), "daemon", "stop"], env=_env(folder), capture_output=True, timeout=60, check=False)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def server(runtime: Path) -> Path:
    """A running server; returns its log file."""
    started = subprocess.run([str(SCRIPT), "daemon", "start", "--idle", "10m"], env=_env(runtime), capture_output=True, text=True, timeout=90, check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    log = runtime / f"cli-{code_key()}.log"
    assert log.exists() and socket_path(runtime, code_key()).exists()
    return log


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose SQLite source is named only by an environment variable the server never had."""
    folder = tmp_path / "project"
    folder.mkdir()
    db = sqlite3.connect(tmp_path / "app.db")
    db.executescript("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO people VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger');")
    db.commit()
    db.close()
    (folder / "headwater.yml").write_text("name: warm\nsources:\n  app:\n    type: sqlite\n    path: ${APP_DB}\n    tables: [people]\n")
    return folder


def _forks(log: Path, command: str) -> list[int]:
    """Pids of the server's forks that ran ``command`` (the server logs each one)."""
    return [int(m.group(1)) for m in re.finditer(rf"pid (\d+): {command} for pid \d+", log.read_text())]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_until(condition, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_command_runs_in_a_fork_of_the_server_with_the_clients_environment_and_folder(server: Path, runtime: Path, project: Path, tmp_path: Path) -> None:
    env = _env(runtime, APP_DB=str(tmp_path / "app.db"))
    first = subprocess.run([str(SCRIPT), "sync", "--json"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    stats = json.loads(first.stdout)["sources"]["app"][0]
    assert (stats["table"], stats["rows"], stats["rows_read"]) == ("people", 3, 3)
    assert len(_forks(server, "sync")) == 1  # it ran in the server's fork, not in a process of its own

    # The same command in its own process (HEADWATER_NO_DAEMON) sees the same project and state.
    sqlite3.connect(tmp_path / "app.db").execute("UPDATE people SET name = 'Ada' WHERE id = 1").connection.commit()
    cold = subprocess.run([str(SCRIPT), "sync", "--json"], cwd=project, env=env | {"HEADWATER_NO_DAEMON": "1"}, capture_output=True, text=True, timeout=60, check=False)
    assert cold.returncode == 0, cold.stderr
    assert len(_forks(server, "sync")) == 1
    warm = subprocess.run([str(SCRIPT), "runs", "--json"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert warm.returncode == 0, warm.stderr
    assert [r["status"] for r in json.loads(warm.stdout)][:2] == ["success", "success"]
    assert len(_forks(server, "runs")) == 1

    # Commands that are not worth a warm start (or need a terminal of their own) never go there.
    assert subprocess.run([str(SCRIPT), "--version"], env=env, capture_output=True, text=True, timeout=60, check=True).stdout.startswith("headwater ")
    assert "--version" not in server.read_text()


def test_exit_codes_and_error_messages_come_back_as_a_cold_process_gives_them(server: Path, runtime: Path, project: Path, tmp_path: Path) -> None:
    env = _env(runtime, APP_DB=str(tmp_path / "app.db"))
    for extra in ({}, {"HEADWATER_NO_DAEMON": "1"}):
        missing = subprocess.run([str(SCRIPT), "sync", "nosuch"], cwd=project, env=env | extra, capture_output=True, text=True, timeout=60, check=False)
        assert missing.returncode == ExitCode.USER_ERROR, missing.stderr
        assert "No source named 'nosuch'" in missing.stderr and "Fix:" in missing.stderr
        nowhere = subprocess.run([str(SCRIPT), "runs"], cwd=tmp_path, env=env | extra, capture_output=True, text=True, timeout=60, check=False)
        assert nowhere.returncode == ExitCode.USER_ERROR, nowhere.stderr
        assert "headwater.yml" in nowhere.stderr
    assert len(_forks(server, "sync")) == 1 and len(_forks(server, "runs")) == 1

    # Without the variable the project names, the fork reports it (it has the client's environment, not the server's).
    unset = subprocess.run([str(SCRIPT), "sync"], cwd=project, env=_env(runtime), capture_output=True, text=True, timeout=60, check=False)
    assert unset.returncode == ExitCode.USER_ERROR
    assert "APP_DB" in unset.stderr


def _busy_sync(runtime: Path, project: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], object]:
    """A `headwater sync` that waits for the project's warehouse lock, held here."""
    lock_file = project / ".headwater" / "warehouse" / ".lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_file, "a+")  # noqa: SIM115 - held until the test closes it
    fcntl.flock(handle, fcntl.LOCK_EX)
    client = subprocess.Popen([str(SCRIPT), "sync"], cwd=project, env=_env(runtime, APP_DB=str(tmp_path / "app.db")), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return client, handle


def _read_until(client: subprocess.Popen[str], text: str, seconds: float = 30) -> str:
    """What ``client`` wrote to its stdout pipe up to and including ``text``; fails after ``seconds``.
    Reads the pipe's descriptor directly, so a later ``communicate()`` returns only what follows."""
    assert client.stdout is not None
    fd, seen = client.stdout.fileno(), b""
    deadline = time.monotonic() + seconds
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        chunk = os.read(fd, 65536) if ready else b""
        assert chunk, f"no {text!r} from the client within {seconds:.0f}s (it exited: {client.poll()}); its stdout so far: {seen.decode(errors='replace')!r}"
        seen += chunk
    return seen.decode()


def test_ctrl_c_on_the_client_stops_the_command(server: Path, runtime: Path, project: Path, tmp_path: Path) -> None:
    client, lock = _busy_sync(runtime, project, tmp_path)
    try:
        assert _wait_until(lambda: len(_forks(server, "sync")) == 1)
        (fork,) = _forks(server, "sync")
        waiting = _read_until(client, "waiting for it to finish")  # the fork is in the lock's wait, not starting up
        assert _alive(fork) and client.poll() is None
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=15)
        out = waiting + out
        assert client.returncode == 130, (client.returncode, out, err)  # 128 + SIGINT, as a process of its own exits
        assert "Traceback" not in err
        assert _wait_until(lambda: not _alive(fork))
    finally:
        client.kill()
        lock.close()


def test_a_client_killed_takes_its_command_with_it(server: Path, runtime: Path, project: Path, tmp_path: Path) -> None:
    client, lock = _busy_sync(runtime, project, tmp_path)
    try:
        assert _wait_until(lambda: len(_forks(server, "sync")) == 1)
        (fork,) = _forks(server, "sync")
        client.kill()
        client.wait(timeout=10)
        assert _wait_until(lambda: not _alive(fork)), "the command outlived its client"
    finally:
        lock.close()
    # The server itself carries on.
    again = subprocess.run([str(SCRIPT), "sync", "--json"], cwd=project, env=_env(runtime, APP_DB=str(tmp_path / "app.db")), capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert len(_forks(server, "sync")) == 2


def _on_a_terminal(cmd: list[str], cwd: Path, env: dict[str, str]) -> bytes:
    """What ``cmd`` writes to a pseudo-terminal as its stdin, stdout and stderr."""
    main_fd, terminal = pty.openpty()
    client = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([main_fd], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal closed: the client has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(main_fd)
    assert client.wait(timeout=30) == 0, output
    return output


STYLED = re.compile(rb"\x1b\[[0-9;]*m")  # a colour or bold: decided when the console is made


def test_the_fork_writes_to_the_clients_terminal(server: Path, runtime: Path, project: Path, tmp_path: Path) -> None:
    """Rich decides colours and progress bars from the terminal it writes to: the client's, not the
    server's log file (the CLI's consoles are made in the fork: `daemon.PRELOAD` leaves them out)."""
    env = _env(runtime, APP_DB=str(tmp_path / "app.db"), TERM="xterm-256color", COLUMNS="120")
    cold = _on_a_terminal([str(SCRIPT), "sync"], project, env | {"HEADWATER_NO_DAEMON": "1"})
    warm = _on_a_terminal([str(SCRIPT), "sync"], project, env)
    assert len(_forks(server, "sync")) == 1
    assert STYLED.search(cold), cold  # the check itself: a process of its own styles its output
    assert STYLED.search(warm), warm
    assert b"people" in warm and b"raw_app" in warm


def test_unsafe_folders_and_servers_of_other_code_are_not_used(runtime: Path, project: Path, tmp_path: Path) -> None:
    env = _env(runtime, APP_DB=str(tmp_path / "app.db"))
    # A server of other code (an older install, or before an edit): its key is not this code's.
    other = subprocess.Popen([sys.executable, "-m", "headwater.cli.daemon", str(runtime), "0" * 16, "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_until(lambda: socket_path(runtime, "0" * 16).exists(), 60)
        status = subprocess.run([str(SCRIPT), "daemon", "status", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 1  # none runs the installed code
        assert [(s["pid"], s["current"]) for s in json.loads(status.stdout)["servers"]] == [(other.pid, False)]
        cold = subprocess.run([str(SCRIPT), "sync", "--json"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert cold.returncode == 0, cold.stderr
        assert not list(runtime.glob("*.log"))  # the other server logged to /dev/null; ours was never started

        started = subprocess.run([str(SCRIPT), "daemon", "start"], env=env, capture_output=True, text=True, timeout=90, check=False)
        assert started.returncode == 0, started.stderr
        log = runtime / f"cli-{code_key()}.log"
        os.chmod(runtime, 0o755)  # noqa: S103 - the test opens the folder to others on purpose: neither side may then use it
        refused = subprocess.run([str(SCRIPT), "daemon", "start"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == ExitCode.USER_ERROR
        assert "chmod 700" in refused.stderr and "other users" in refused.stderr
        cold = subprocess.run([str(SCRIPT), "sync", "--json"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert cold.returncode == 0, cold.stderr
        assert _forks(log, "sync") == []
        os.chmod(runtime, 0o700)

        stopped = subprocess.run([str(SCRIPT), "daemon", "stop"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert stopped.returncode == 0 and "Stopped 2" in stopped.stdout, stopped.stdout + stopped.stderr
        assert other.wait(timeout=10) == 0
        assert not list(runtime.glob("*.sock")) and not list(runtime.glob("*.pid"))
    finally:
        other.kill()


def test_an_idle_server_leaves_by_itself(runtime: Path) -> None:
    started = subprocess.run([str(SCRIPT), "daemon", "start", "--idle", "1s"], env=_env(runtime), capture_output=True, text=True, timeout=90, check=False)
    assert started.returncode == 0, started.stderr
    sock = socket_path(runtime, code_key())
    assert _wait_until(lambda: not sock.exists(), 20)
    assert "idle for 1 s: leaving" in (runtime / f"cli-{code_key()}.log").read_text()
    status = subprocess.run([str(SCRIPT), "daemon", "status"], env=_env(runtime), capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 1 and "No warm CLI server" in status.stdout

    bad = subprocess.run([str(SCRIPT), "daemon", "start", "--idle", "soon"], env=_env(runtime), capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == ExitCode.USER_ERROR and "30m" in bad.stderr

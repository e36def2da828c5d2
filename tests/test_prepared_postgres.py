"""The generated tests start their PostgreSQL from a prepared data folder (initdb,
role, database, migrations done once) kept in .test-postgres/, prepare a new one
when the migrations change, and survive a broken one and runs that overlap."""

import subprocess
import tempfile
from pathlib import Path

from conftest import Render, run, subprocess_environment

# Written into the render by these tests: one request that needs the migrated
# table, through the `client` fixture, as most generated tests do.
PROBE_TEST = '''"""Written by tests/test_prepared_postgres.py."""

import httpx


async def test_create_then_read(client: httpx.AsyncClient) -> None:
    created = await client.post("/items", json={"name": "probe"})
    assert created.status_code == 201, created.text
    read = await client.get(f"/items/{created.json()['id']}")
    assert read.json()["name"] == "probe"
'''
# PostgreSQL logs it each time a server it started accepts connections.
READY = "database system is ready to accept connections"


def probe_project(render: Render) -> Path:
    project = render()
    (project / "tests" / "test_probe.py").write_text(PROBE_TEST, encoding="utf-8")
    return project


def pytest_command(synced_project: Path, basetemp: Path) -> list[str]:
    """The probe test, in the synced project's environment (the render's own
    package first on the path, see test_generated_project.py)."""
    python = synced_project / ".venv" / "bin" / "python"
    options = ["-q", "-p", "no:cacheprovider", "--basetemp", str(basetemp)]
    return [str(python), "-m", "pytest", "tests/test_probe.py", *options]


def run_probe(project: Path, synced_project: Path) -> int:
    """Run the probe test; how many times the tests' server was started."""
    with tempfile.TemporaryDirectory(prefix="probe-") as directory:
        basetemp = Path(directory)
        command = pytest_command(synced_project, basetemp)
        result = run(command, cwd=project, env={"PYTHONPATH": str(project / "src")})
        assert "1 passed" in result.stdout, result.stdout
        # postgres0, postgres1...: pytest also links the latest as postgrescurrent.
        logs = basetemp.glob("postgres[0-9]*/postgres.log")
        return sum(log.read_text(errors="replace").count(READY) for log in logs)


def prepared_folders(project: Path) -> list[str]:
    return sorted(path.name for path in (project / ".test-postgres").iterdir())


def test_the_prepared_folder_is_reused_until_a_migration_changes(
    render: Render, synced_project: Path
) -> None:
    project = probe_project(render)

    # The first run prepares a server (started, stopped to be copied, started).
    assert run_probe(project, synced_project) == 2
    [first] = prepared_folders(project)

    # The next starts once, from a copy.
    assert run_probe(project, synced_project) == 1
    assert prepared_folders(project) == [first]

    # A changed migration prepares a new folder, which replaces the old one.
    [migration] = (project / "migrations" / "versions").glob("*.py")
    migration.write_text(migration.read_text() + "\n# changed\n")
    assert run_probe(project, synced_project) == 2
    [second] = prepared_folders(project)
    assert second != first

    # A prepared folder that cannot start is prepared again, and the run passes.
    (project / ".test-postgres" / second / "global" / "pg_control").unlink()
    assert run_probe(project, synced_project) == 2
    assert prepared_folders(project) == [second]
    assert (project / ".test-postgres" / second / "global" / "pg_control").is_file()


def test_runs_that_overlap_share_one_prepared_folder(
    render: Render, synced_project: Path
) -> None:
    project = probe_project(render)
    env = {"PYTHONPATH": str(project / "src")}

    with (
        tempfile.TemporaryDirectory(prefix="probe-") as first,
        tempfile.TemporaryDirectory(prefix="probe-") as second,
    ):
        # Both start before either has prepared a folder.
        runs = [
            subprocess.Popen(
                pytest_command(synced_project, Path(basetemp)),
                cwd=project,
                env={**subprocess_environment(), **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for basetemp in (first, second)
        ]
        outputs = [process.communicate(timeout=300)[0] for process in runs]

    for process, output in zip(runs, outputs, strict=True):
        assert process.returncode == 0, output
    # One finished folder, no half-copied one left behind.
    assert len(prepared_folders(project)) == 1
    assert run_probe(project, synced_project) == 1

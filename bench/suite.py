"""The generated test suite's cost: start-up, and the cost of each DB test.

Two throwaway test files are written into the render's tests/ (and removed
after): one trivial test that needs the database, and N parametrized tests that
each POST an item and GET it back through the `client` fixture. Each file runs
as `pytest <file>` in a fresh process, as a developer would run it; start-up is
the first file's wall time (interpreter, imports, the embedded PostgreSQL,
one test), and the per-test cost is the difference between the two
runs divided by the N - 1 extra tests.

The render's first test run prepares a migrated data folder that later runs
start from (.test-postgres/, see its tests/conftest.py), and Python writes the
bytecode of every module it imports (PYTHONDONTWRITEBYTECODE is unset, as on
users' machines); it is timed apart, as the first run, and the start-up runs
come after it.
"""

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .project import Project, run, users_environment

STARTUP_TEST = '''"""Written by the bench (bench/suite.py), removed after its run."""

import httpx


async def test_bench_trivial(client: httpx.AsyncClient) -> None:
    response = await client.get("/items", params={"limit": 1})
    assert response.status_code == 200, response.text
'''

ITEMS_TESTS = '''"""Written by the bench (bench/suite.py), removed after its run."""

import httpx
import pytest


@pytest.mark.parametrize("number", range({count}))
async def test_bench_create_then_read(client: httpx.AsyncClient, number: int) -> None:
    created = await client.post("/items", json={{"name": f"bench-{{number}}"}})
    assert created.status_code == 201, created.text
    read = await client.get(f"/items/{{created.json()['id']}}")
    assert read.status_code == 200, read.text
'''


@dataclass(frozen=True)
class SuiteResult:
    tests: int
    first_run: float  # seconds, one trivial test, preparing the data folder
    startup_runs: list[float]  # seconds, one trivial test
    many_runs: list[float]  # seconds, `tests` tests

    @property
    def startup(self) -> float:
        return statistics.median(self.startup_runs)

    @property
    def per_test(self) -> float:
        """Seconds per test beyond the first."""
        return (statistics.median(self.many_runs) - self.startup) / (self.tests - 1)


def _time_pytest(project: Project, test_file: Path, expected: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-pytest-") as basetemp:
        command = [str(project.python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["--basetemp", basetemp, str(test_file)]
        started = time.perf_counter()
        result = run(command, cwd=project.root, env=users_environment())
        elapsed = time.perf_counter() - started
    if f"{expected} passed" not in result.stdout:
        raise RuntimeError(f"expected {expected} passed tests:\n{result.stdout}")
    return elapsed


def time_suite(project: Project, tests: int, runs: int) -> SuiteResult:
    """`runs` pairs of runs, the two files alternating so drift hits both."""
    tests_dir = project.root / "tests"
    startup_file = tests_dir / "test_bench_startup.py"
    many_file = tests_dir / "test_bench_items.py"
    startup_file.write_text(STARTUP_TEST)
    many_file.write_text(ITEMS_TESTS.format(count=tests))
    try:
        first_run = _time_pytest(project, startup_file, 1)
        startup, many = [], []
        for _ in range(runs):
            startup.append(_time_pytest(project, startup_file, 1))
            many.append(_time_pytest(project, many_file, tests))
    finally:
        startup_file.unlink()
        many_file.unlink()
    return SuiteResult(tests, first_run, startup, many)

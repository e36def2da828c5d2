"""Each answer set renders a project whose own tests, lint and type checks pass
against a real PostgreSQL."""

import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Render, run, run_project_tests

ANSWER_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "small-pool": {
        "project_name": "Tiny Pool",
        "pool_size": 1,
        "max_overflow": 0,
        "pool_timeout": 0.5,
        "pool_recycle": -1,
        "pool_pre_ping": False,
        "echo_sql": True,
    },
    "large-pool": {
        "project_name": "Big Pool",
        "pool_size": 200,
        "max_overflow": 400,
        "pool_timeout": 120.0,
        # The shortest recycle there is: every connection replaced after a second.
        "pool_recycle": 1,
    },
    "custom-env-names": {
        "project_name": "Orders",
        "package_name": "orders_api_with_a_deliberately_long_name_to_test_line_wrapping",
        "db_name": "orders",
        "db_user_var": "ORDERS_DB_USER",
        "db_password_var": "ORDERS_DB_SECRET",
        "db_host_var": "ORDERS_DB_HOST",
        "db_port_var": "ORDERS_DB_PORT",
        "db_name_var": "ORDERS_DB_NAME",
        "db_url_var": "ORDERS_DB_DSN",
        "db_direct_url_var": "ORDERS_DB_DIRECT_DSN",
        "db_replica_url_var": "ORDERS_DB_REPLICA_DSN",
        "pgbouncer": True,
    },
    "awkward-text": {
        "project_name": "Café \"Ünïcode\" O'Brien's \\ {{ x }} Service: #1 & <b>",
        "package_name": "cafe_service",
        "db_name": 'Café "odd" name\'s',
    },
}


def write_hostile_dotenv(project: Path, answers: dict[str, Any]) -> None:
    """A developer's `.env` in the project root, each value one the service
    refuses or a test would notice. The project's tests must never read it."""
    values = {
        answers["db_user_var"]: "from-dotenv",
        answers["db_password_var"]: "from-dotenv",
        answers["db_url_var"]: "mysql://dotenv:dotenv@dotenv.invalid/dotenv",
        "DB_POOL_SIZE": "0",
        "DB_SSL_MODE": "sometimes",
        "DEV_MODE": "sometimes",
        "LOG_FORMAT": "xml",
        "LOG_LEVEL": "loud",
    }
    (project / ".env").write_text(
        "".join(f"{name}={value}\n" for name, value in values.items()),
        encoding="utf-8",
    )


def python_files(project: Path) -> list[Path]:
    return [path for path in project.rglob("*.py") if ".venv" not in path.parts]


@pytest.mark.parametrize("answer_set", ANSWER_SETS)
def test_rendered_project_passes_its_own_checks(
    answer_set: str, render: Render, synced_project: Path
) -> None:
    answers = ANSWER_SETS[answer_set]
    project = synced_project if answer_set == "defaults" else render(answers)
    venv_bin = synced_project / ".venv" / "bin"
    # Renders other than the synced one borrow its environment; their own package
    # comes first on the path.
    env = {"PYTHONPATH": str(project / "src")}

    assert not list(project.rglob("*.jinja"))
    for path in python_files(project):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    recorded = yaml.safe_load(
        (project / ".copier-answers.yml").read_text(encoding="utf-8")
    )
    assert {key: recorded[key] for key in answers} == answers
    if project != synced_project:  # which other tests share, so left as it is
        write_hostile_dotenv(project, recorded)

    run([str(venv_bin / "ruff"), "check", "--no-cache", "."], cwd=project)
    run([str(venv_bin / "ruff"), "format", "--check", "--no-cache", "."], cwd=project)
    mypy_cache = synced_project / ".mypy_cache"
    run([str(venv_bin / "mypy"), "--cache-dir", str(mypy_cache)], cwd=project, env=env)
    run_project_tests([str(venv_bin / "python"), "-m", "pytest"], project, env)


def test_synced_project_runs_with_uv_run(synced_project: Path) -> None:
    """The README's own command, `uv run pytest`, in the synced project."""
    command = [sys.executable, "-m", "uv", "run", "--no-sync", "pytest"]
    run_project_tests(command, synced_project)

"""Fixtures that render the template with Copier's API and run what it generates."""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import copier
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# What Copier needs of this repo: the questions, what they include, the project tree.
TEMPLATE_PARTS = ("copier.yml", "includes", "template")

Answers = dict[str, Any]
Render = Callable[..., Path]


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template as a plain folder, so uncommitted work renders as it is."""
    source = tmp_path_factory.mktemp("template")
    for part in TEMPLATE_PARTS:
        origin = REPO_ROOT / part
        if origin.is_dir():
            shutil.copytree(origin, source / part)
        else:
            shutil.copy2(origin, source / part)
    return source


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
    pytest_command: list[str], project: Path, env: dict[str, str] | None = None
) -> None:
    """Run a generated project's own suite; fail unless its tests ran and passed.

    Each run gets its own --basetemp: pytest prunes old folders in the shared one,
    which would delete the outer session's renders.
    """
    with tempfile.TemporaryDirectory(prefix="gen-") as basetemp:
        options = ["-q", "-p", "no:cacheprovider", "--basetemp", basetemp]
        result = run([*pytest_command, *options], cwd=project, env=env)
    assert " passed" in result.stdout
    assert "failed" not in result.stdout


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

"""GitHub workflows and pre-commit hooks, this repo's and the generated project's.

actionlint and zizmor find nothing in any workflow; every action is pinned to a
commit; the generated CI runs each check a developer runs; the release workflow
reads the newest release from CHANGELOG.md and refuses a CHANGELOG without one;
the generated pre-commit hooks pass on a fresh project and stop a conflict.
"""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT, Render, run, subprocess_environment
from test_generated_project import ANSWER_SETS
from test_update import GIT_ENVIRONMENT

# actionlint, zizmor, pre-commit and uv come with this repo's dev environment.
TOOLS = Path(sys.executable).parent
# The defaults, and a long package name that lands in the dev command's name.
RENDERED_SETS = ("defaults", "custom-env-names")
GENERATED_CI = Path(".github", "workflows", "ci.yml")
REPO_WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
RELEASE_VERSION = REPO_ROOT / ".github" / "scripts" / "release_version.py"
# `uses: owner/action@<commit> # vX.Y.Z`: the tag says which release the commit is.
PINNED_ACTION = re.compile(
    r"uses: (?P<action>[\w.-]+/[\w.-]+)@(?P<commit>[0-9a-f]{40}) # (?P<tag>v\d+\.\d+\.\d+)$"
)
CONFLICT_HOOK = "conflict-markers"


def project_command(package_name: str) -> str:
    return package_name.replace("_", "-")


def load_workflow(path: Path) -> dict[str, Any]:
    workflow: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as true; GitHub reads it as "on".
    workflow["on"] = workflow.pop(True)
    return workflow


def run_steps(workflow: dict[str, Any]) -> list[str]:
    """The `run:` script of every step of every job, in order."""
    return [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "run" in step
    ]


def lint_workflows(workflows: list[Path], cwd: Path) -> None:
    """actionlint and zizmor (offline audits) both report nothing."""
    assert workflows
    run([str(TOOLS / "actionlint"), *map(str, workflows)], cwd=cwd)
    zizmor = run([str(TOOLS / "zizmor"), "--offline", *map(str, workflows)], cwd=cwd)
    assert "No findings to report" in zizmor.stdout


# --- Linting every workflow ----------------------------------------------------


@pytest.mark.parametrize("answer_set", RENDERED_SETS)
def test_generated_ci_passes_actionlint_and_zizmor(
    answer_set: str, render: Render
) -> None:
    project = render(ANSWER_SETS[answer_set])

    lint_workflows([project / GENERATED_CI], cwd=project)


def test_this_repos_workflows_pass_actionlint_and_zizmor() -> None:
    assert {path.name for path in REPO_WORKFLOWS} >= {"ci.yml", "release.yml"}

    lint_workflows(REPO_WORKFLOWS, cwd=REPO_ROOT)


def test_every_action_is_pinned_to_a_commit_with_its_tag(render: Render) -> None:
    workflows = [render() / GENERATED_CI, *REPO_WORKFLOWS]
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in workflows:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "uses:" not in line:
                continue
            pinned = PINNED_ACTION.search(line)
            assert pinned, f"{path}: not pinned to a commit with its tag: {line}"
            pins.setdefault(pinned["action"], set()).add(
                (pinned["commit"], pinned["tag"])
            )

    # One release of each action everywhere, so updating a pin is one search.
    assert {action: len(found) for action, found in pins.items()} == {
        "actions/checkout": 1,
        "astral-sh/setup-uv": 1,
    }


# --- The generated CI ------------------------------------------------------------


@pytest.mark.parametrize("answer_set", RENDERED_SETS)
def test_generated_ci_runs_every_check_against_the_locked_dependencies(
    answer_set: str, render: Render
) -> None:
    project = render(ANSWER_SETS[answer_set])
    package_name = ANSWER_SETS[answer_set].get("package_name", "my_service")
    dev_command = f"{project_command(package_name)}-dev"
    scripts = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]["scripts"]

    steps = run_steps(load_workflow(project / GENERATED_CI))

    assert dev_command in scripts
    assert steps == [
        "uv sync --locked",
        "uv run ruff check",
        "uv run ruff format --check",
        "uv run mypy",
        f"uv run {dev_command} run alembic check",
        "uv run pytest",
    ]


def test_generated_ci_reads_the_repository_and_keeps_no_token(render: Render) -> None:
    workflow = load_workflow(render() / GENERATED_CI)
    triggers = workflow["on"]
    checkouts = [
        step
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("uses", "").startswith("actions/checkout@")
    ]

    assert set(triggers) == {"push", "pull_request"}
    assert workflow["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in workflow["jobs"].values())
    assert checkouts
    assert all(step["with"]["persist-credentials"] is False for step in checkouts)


# --- The release workflow's version ------------------------------------------------


def release_version(changelog: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RELEASE_VERSION), str(changelog)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_release_version_is_the_first_release_below_unreleased() -> None:
    changelog = REPO_ROOT / "CHANGELOG.md"
    headings = [
        line.rstrip()
        for line in changelog.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    ]

    result = release_version(changelog)

    assert result.returncode == 0, result.stderr
    version = result.stdout.strip()
    assert headings[headings.index("## Unreleased") + 1] == f"## {version}"


def test_release_version_skips_headings_above_unreleased(tmp_path: Path) -> None:
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(
        "# Changelog\n\n## Release policy\n\nTags never move.\n\n"
        "## Unreleased\n\n- Something new.\n\n"
        "## 1.0.0rc1\n\n- A candidate.\n\n## 0.2.0\n\n## 0.1.0\n",
        encoding="utf-8",
    )

    result = release_version(changelog)

    assert (result.returncode, result.stdout) == (0, "1.0.0rc1\n")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            "# Changelog\n\n## Unreleased\n\nNothing yet.\n",
            "no release yet",
            id="nothing-released",
        ),
        pytest.param(
            "# Changelog\n\n## 0.1.0\n\nThe first release.\n",
            "no '## Unreleased' heading",
            id="no-unreleased-heading",
        ),
        pytest.param(
            "# Changelog\n\n## Unreleased\n\n## 0.2.0 (2026-12-01)\n\n## 0.1.0\n",
            "'## 0.2.0 (2026-12-01)'",
            id="heading-with-a-date",
        ),
    ],
)
def test_release_version_refuses_a_changelog_without_a_release(
    text: str, problem: str, tmp_path: Path
) -> None:
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(text, encoding="utf-8")

    result = release_version(changelog)

    assert result.returncode == 1
    assert result.stdout == ""
    assert str(changelog) in result.stderr
    assert problem in result.stderr


# --- The generated pre-commit hooks ------------------------------------------------


def pre_commit_environment(scratch: Path) -> dict[str, str]:
    """Hooks run offline: pre-commit's store and the tools' caches in `scratch`,
    uv on the PATH, git without the machine's configuration."""
    return {
        **GIT_ENVIRONMENT,
        "PRE_COMMIT_HOME": str(scratch / "pre-commit"),
        "MYPY_CACHE_DIR": str(scratch / "mypy"),
        "RUFF_CACHE_DIR": str(scratch / "ruff"),
        "PATH": f"{TOOLS}{os.pathsep}{os.environ['PATH']}",
    }


def pre_commit(
    arguments: list[str], repo: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`pre-commit run` whatever it exits with, for tests that expect it to fail."""
    return subprocess.run(
        [str(TOOLS / "pre-commit"), "run", *arguments],
        cwd=repo,
        env={**subprocess_environment(), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_pre_commit_hooks_pass_on_a_fresh_project(
    synced_project: Path, tmp_path: Path
) -> None:
    # The synced project is shared: it becomes a git repository for this test only.
    git_folder = synced_project / ".git"
    assert not git_folder.exists(), f"{git_folder} exists; this test would delete it"
    env = pre_commit_environment(tmp_path)
    try:
        run(["git", "init", "--quiet"], cwd=synced_project, env=env)
        run(["git", "add", "--all"], cwd=synced_project, env=env)
        result = run(
            [str(TOOLS / "pre-commit"), "run", "--all-files", "--color=never"],
            cwd=synced_project,
            env=env,
        )
    finally:
        shutil.rmtree(git_folder, ignore_errors=True)

    outcomes = [line for line in result.stdout.splitlines() if "..." in line]
    assert len(outcomes) == 4, result.stdout
    assert all(line.endswith("Passed") for line in outcomes), result.stdout


def test_conflict_marker_hook_stops_a_conflict_but_not_a_heading_underline(
    render: Render, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(render() / ".pre-commit-config.yaml", repo)
    (repo / "NOTES.md").write_text("Notes\n=======\n\nA heading.\n", encoding="utf-8")
    env = pre_commit_environment(tmp_path)
    run(["git", "init", "--quiet"], cwd=repo, env=env)
    run(["git", "add", "--all"], cwd=repo, env=env)
    hook = [CONFLICT_HOOK, "--all-files", "--color=never"]

    underlined = pre_commit(hook, repo, env)
    (repo / "settings.py").write_text(
        "<<<<<<< before updating\n"
        "POOL_SIZE = 5\n"
        "=======\n"
        "POOL_SIZE = 10\n"
        ">>>>>>> after updating\n",
        encoding="utf-8",
    )
    run(["git", "add", "settings.py"], cwd=repo, env=env)
    conflicted = pre_commit(hook, repo, env)

    assert underlined.returncode == 0, underlined.stdout
    assert conflicted.returncode == 1, conflicted.stdout
    assert "settings.py:1:<<<<<<< before updating" in conflicted.stdout
    assert "settings.py:5:>>>>>>> after updating" in conflicted.stdout
    assert "NOTES.md" not in conflicted.stdout

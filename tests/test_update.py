"""`copier update` from an older release keeps a team's work and brings the
template's changes.

Everything runs on temporary git repositories through Copier's API, so no network
is needed. The template repository gets two tags: NEWER is this tree (plus the
bridge for a renamed question, see `derive_newer`), OLDER is derived from it with
one of each kind of change an update must carry (see `derive_older`).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from conftest import (
    Answers,
    render_template,
    run,
    run_project_tests,
    subprocess_environment,
)

OLDER = "v0.1.0"
NEWER = "v0.2.0"

# Copier commits in scratch repositories of its own; give git an identity and keep
# the machine's git configuration (hooks, signing) out of the way.
GIT_ENVIRONMENT = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.invalid",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

# The team answered the older release's questions like this.
PACKAGE = "payments"
OLDER_ANSWERS: Answers = {"project_name": "Payments", "service_port": 8080}
# What the newer release must record for them: the renamed question keeps the
# answer, and the question new in NEWER takes its default.
NEWER_ANSWERS: Answers = {"project_name": "Payments", "http_port": 8080}

# --- The two releases ---------------------------------------------------------

# The last line of the generated README before NEWER changed it.
OLDER_README_LAST_LINE = "Generated from a Copier template."
# A file the older release shipped and the newer one removed.
REMOVED_FILE = "setup.cfg"
# A file the newer release added.
ADDED_FILE = "tests/test_no_conflict_markers.py"
# Python modules whose first line NEWER changed: OLDER's docstrings began with
# this prefix. The conftest.py every test run imports first, and a module it imports.
OLDER_DOCSTRING_PREFIX = "Release 0.1.0: "
CHANGED_MODULES = ("tests/conftest.py", f"src/{PACKAGE}/db/engine.py")
# Questions the older release did not ask (fixed values, hidden with
# `when: false`, so their answers were never recorded); NEWER asks them, and an
# update answers each with its default: echo_sql, and the three that the
# scale-out release added.
NEW_QUESTIONS = {
    "echo_sql": False,
    "db_direct_url_var": "DATABASE_DIRECT_URL",
    "db_replica_url_var": "DATABASE_REPLICA_URL",
    "pgbouncer": False,
}


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path} no longer holds {old!r}; adapt this derivation"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def add_port_question(tree: Path, name: str, default: str) -> None:
    """Ask for the HTTP port under `name`, and show it in the generated README."""
    with (tree / "copier.yml").open("a", encoding="utf-8") as questions:
        questions.write(
            f"\n{name}:\n"
            "  type: int\n"
            "  help: The port the service listens on.\n"
            f"  default: {default}\n"
        )
    readme = tree / "template" / "README.md.jinja"
    text = readme.read_text(encoding="utf-8")
    assert "127.0.0.1:8000" in text, "README no longer shows the port; adapt"
    readme.write_text(
        text.replace("127.0.0.1:8000", f"127.0.0.1:{{{{ {name} }}}}"),
        encoding="utf-8",
    )


def template_file(tree: Path, relative: str) -> Path:
    """Where the template keeps the file a project has at `relative`."""
    path = tree / "template" / relative.replace(PACKAGE, "{{package_name}}")
    return path if path.exists() else path.with_name(path.name + ".jinja")


def derive_older(tree: Path) -> None:
    """The older release: this tree minus one of each kind of change."""
    # The question NEWER renames was called `service_port`.
    add_port_question(tree, "service_port", "8000")
    # NEW_QUESTIONS were not asked: each only had its fixed default.
    for question in NEW_QUESTIONS:
        replace_once(
            tree / "copier.yml", f"\n{question}:\n", f"\n{question}:\n  when: false\n"
        )
    # A changed file: the README's last line was different.
    readme = tree / "template" / "README.md.jinja"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[-1] != OLDER_README_LAST_LINE + "\n", "pick another old line"
    lines[-1] = OLDER_README_LAST_LINE + "\n"
    readme.write_text("".join(lines), encoding="utf-8")
    # A removed file: tool settings that NEWER keeps in pyproject.toml instead.
    (tree / "template" / REMOVED_FILE).write_text(
        "[flake8]\nmax-line-length = 88\n", encoding="utf-8"
    )
    # A new file: the conflict check's own tests did not exist yet.
    (tree / "template" / ADDED_FILE).unlink()
    # Changed Python modules: the first line of each docstring was different.
    for relative in CHANGED_MODULES:
        replace_once(
            template_file(tree, relative), '"""', '"""' + OLDER_DOCSTRING_PREFIX
        )


def derive_newer(tree: Path) -> None:
    """The newer release: this tree, with `service_port` renamed to `http_port`.

    The bridge: a project's old answer is in the render context during an update
    (Copier passes the last answers on, and only records keys that are still
    questions), so the new question's default reads it. New projects get 8000.
    """
    add_port_question(tree, "http_port", '"{{ service_port | default(8000) }}"')


Derivation = Callable[[Path], None]


def git(repo: Path, *arguments: str) -> str:
    executable = shutil.which("git")
    assert executable, "these tests need git"
    return run([executable, *arguments], cwd=repo, env=GIT_ENVIRONMENT).stdout


def build_template_repo(
    repo: Path,
    source: Path,
    releases: list[tuple[str, Derivation]],
    force_add: tuple[str, ...] = (),
) -> Path:
    """A git repository holding one commit and tag per release, oldest first.

    `force_add` names files to commit although template/.gitignore (the generated
    project's) matches them, as a template shipping such a file must.
    """
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    for tag, derive in releases:
        for entry in repo.iterdir():
            if entry.is_dir() and entry.name != ".git":
                shutil.rmtree(entry)
            elif entry.is_file():
                entry.unlink()
        shutil.copytree(source, repo, dirs_exist_ok=True)
        derive(repo)
        git(repo, "add", "--all")
        for path in force_add:
            if (repo / path).exists():
                git(repo, "add", "--force", "--", path)
        git(repo, "commit", "--quiet", "--message", f"Release {tag}")
        git(repo, "tag", tag)
    return repo


@pytest.fixture(scope="module", autouse=True)
def git_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in GIT_ENVIRONMENT.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def template_repo(template_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template_repo(
        tmp_path_factory.mktemp("releases") / "template",
        template_dir,
        [(OLDER, derive_older), (NEWER, derive_newer)],
    )


# --- The team's project -------------------------------------------------------

Edit = Callable[[str], str]


def insert_after_line(anchor: str, addition: str) -> Edit:
    """An edit adding lines after the one line that contains `anchor`."""

    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        matches = [number for number, line in enumerate(lines) if anchor in line]
        assert len(matches) == 1, f"{anchor!r} is on {len(matches)} lines; adapt"
        lines.insert(matches[0] + 1, addition)
        return "".join(lines)

    return edit


def change_first_line(text: str) -> str:
    first, rest = text.split("\n", 1)
    return f"{first} (run by the payments team)\n{rest}"


# Typical edits to generated files, each kept verbatim by the update.
TEAM_EDITS: dict[str, list[Edit]] = {
    "README.md": [change_first_line],
    "pyproject.toml": [insert_after_line("dependencies = [", '    "httpx>=0.28",\n')],
    f"src/{PACKAGE}/settings.py": [
        insert_after_line(
            "class Settings(BaseSettings):",
            "    # Where errors are reported (added by the payments team).\n"
            '    sentry_dsn: str | None = Field(default=None, validation_alias="SENTRY_DSN")\n',
        )
    ],
    f"src/{PACKAGE}/main.py": [
        insert_after_line("from .api import", "from .api import version\n"),
        insert_after_line(
            "app.include_router(items.router)",
            "    app.include_router(version.router)\n",
        ),
    ],
}
# Files the team added. uv.lock and .env are the team's own (`_skip_if_exists`).
TEAM_FILES: dict[str, str] = {
    f"src/{PACKAGE}/api/version.py": '''\
"""GET /version: the release this deployment runs."""

from fastapi import APIRouter

RELEASE = "2024.6.1"

router = APIRouter()


@router.get("/version")
async def read_version() -> dict[str, str]:
    return {"version": RELEASE}
''',
    "tests/test_version.py": '''\
"""The payments team's own test, which must survive template updates."""

import httpx


async def test_version_route_reports_the_deployed_release(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/version")

    assert response.json() == {"version": "2024.6.1"}
''',
    "uv.lock": "# The team's lock file: the template must never replace it.\nversion = 1\n",
    # Ignored by git, so it is never committed; read by settings.py.
    ".env": "SENTRY_DSN=https://key@errors.example.invalid/1\n",
}


def apply_team_edits(project: Path) -> None:
    for relative, edits in TEAM_EDITS.items():
        path = project / relative
        text = path.read_text(encoding="utf-8")
        for edit in edits:
            text = edit(text)
        path.write_text(text, encoding="utf-8")
    for relative, content in TEAM_FILES.items():
        (project / relative).write_text(content, encoding="utf-8")


def generate_and_commit(template_repo: Path, project: Path, answers: Answers) -> Path:
    render_template(template_repo, project, answers, vcs_ref=OLDER)
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "Generate from the template")
    return project


def update(project: Path, **options: Any) -> None:
    """`copier update --defaults`: new questions take their defaults."""
    copier.run_update(
        project, defaults=True, overwrite=True, unsafe=False, quiet=True, **options
    )


def project_files(project: Path) -> dict[str, bytes]:
    """Every file of a project but git's own, by path relative to it."""
    return {
        path.relative_to(project).as_posix(): path.read_bytes()
        for path in sorted(project.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def answers_of(project: Path) -> dict[str, Any]:
    recorded: dict[str, Any] = yaml.safe_load(
        (project / ".copier-answers.yml").read_text(encoding="utf-8")
    )
    return recorded


def marker_lines(files: dict[str, bytes]) -> list[str]:
    return [
        f"{path}: {line}"
        for path, content in files.items()
        for line in content.decode("utf-8", errors="replace").splitlines()
        if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line == "======="
    ]


@dataclass(frozen=True)
class Update:
    older: dict[str, bytes]  # the project before the update, team edits included
    updated: dict[str, bytes]  # the same project after it
    fresh: dict[str, bytes]  # NEWER generated from scratch with the same answers
    project: Path


@pytest.fixture(scope="module")
def team_update(
    template_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Update:
    """A project generated from OLDER, edited by its team, updated to the latest tag."""
    root = tmp_path_factory.mktemp("team")
    project = generate_and_commit(template_repo, root / PACKAGE, OLDER_ANSWERS)
    apply_team_edits(project)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "Team work")
    older = project_files(project)

    update(project)  # no vcs_ref: the newest tag, as `copier update` does

    fresh = root / "fresh"
    copier.run_copy(
        str(template_repo),
        fresh,
        data=NEWER_ANSWERS,
        vcs_ref=NEWER,
        defaults=True,
        unsafe=False,
        quiet=True,
    )
    return Update(older, project_files(project), project_files(fresh), project)


# --- What an update keeps and brings ------------------------------------------


def test_update_keeps_every_team_edit(team_update: Update) -> None:
    for relative, content in TEAM_FILES.items():
        assert team_update.updated[relative] == content.encode(), relative
    for relative, edits in TEAM_EDITS.items():
        fresh = team_update.fresh[relative].decode()
        edited = fresh
        for edit in edits:
            edited = edit(edited)
        # Exactly the fresh render plus the team's lines: both sides are kept.
        assert team_update.updated[relative].decode() == edited, relative


def test_update_applies_every_template_change(team_update: Update) -> None:
    older, updated, fresh = team_update.older, team_update.updated, team_update.fresh
    assert REMOVED_FILE in older
    assert REMOVED_FILE not in updated
    assert ADDED_FILE not in older
    assert updated[ADDED_FILE] == fresh[ADDED_FILE]
    last_lines = [
        files["README.md"].decode().splitlines()[-1]
        for files in (older, updated, fresh)
    ]
    assert last_lines[0] == OLDER_README_LAST_LINE
    assert last_lines[1] == last_lines[2]  # changed, next to the team's own edit
    # The whole tree: NEWER's render, plus only the team's edits and files.
    untouched = set(fresh) - set(TEAM_EDITS)
    assert {path: updated.get(path) for path in untouched} == {
        path: fresh[path] for path in untouched
    }
    assert set(updated) == set(fresh) | set(TEAM_FILES)


def test_update_records_the_new_release(team_update: Update) -> None:
    assert answers_of(team_update.project)["_commit"] == NEWER


def test_questions_new_in_the_release_are_answered_by_their_defaults_and_recorded(
    team_update: Update,
) -> None:
    older_answers = yaml.safe_load(team_update.older[".copier-answers.yml"])
    recorded = answers_of(team_update.project)
    for question, default in NEW_QUESTIONS.items():
        assert question not in older_answers
        assert recorded[question] == default


def test_renamed_question_keeps_the_answer_given_under_its_old_name(
    team_update: Update,
) -> None:
    answers = answers_of(team_update.project)

    assert answers["http_port"] == 8080
    assert "service_port" not in answers
    assert "127.0.0.1:8080" in team_update.updated["README.md"].decode()


def test_renamed_question_defaults_normally_in_new_projects(
    template_repo: Path, tmp_path: Path
) -> None:
    project = tmp_path / "new"
    copier.run_copy(
        str(template_repo), project, vcs_ref=NEWER, defaults=True, quiet=True
    )

    assert answers_of(project)["http_port"] == 8000


def test_update_leaves_no_conflict_markers_or_rejected_changes(
    team_update: Update,
) -> None:
    assert marker_lines(team_update.updated) == []
    assert [path for path in team_update.updated if path.endswith(".rej")] == []
    assert git(team_update.project, "diff", "--name-only", "--diff-filter=U") == ""


def test_team_owned_files_survive_the_update_byte_for_byte(
    team_update: Update,
) -> None:
    for relative in ("uv.lock", ".env"):
        assert team_update.updated[relative] == team_update.older[relative]


def test_updated_project_passes_its_own_tests(
    team_update: Update, synced_project: Path
) -> None:
    # The synced render's environment serves: the team's added dependency (httpx)
    # is already installed there, and the project's own package comes first.
    python = synced_project / ".venv" / "bin" / "python"
    run_project_tests(
        [str(python), "-m", "pytest"],
        team_update.project,
        env={"PYTHONPATH": str(team_update.project / "src")},
    )


# --- When the team and the template changed the same lines ---------------------

# The team rewrote the README line that NEWER also changes.
TEAM_LAST_LINE = "Maintained by the payments team: ask in #payments before changing."


@dataclass(frozen=True)
class Outcome:
    returncode: int
    output: str  # stdout and stderr


def uv_run_pytest(project: Path, synced_project: Path, *options: str) -> Outcome:
    """`uv run pytest` in the project, as its team runs it, in the synced render's
    environment (the project's own package first on the path); no cache is left."""
    environment = {
        **subprocess_environment(),
        "UV_PROJECT_ENVIRONMENT": str(synced_project / ".venv"),
        "PYTHONPATH": str(project / "src"),
    }
    with tempfile.TemporaryDirectory(prefix="gen-") as basetemp:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "uv", "run", "--no-sync", "pytest"),
                *("-q", "-p", "no:cacheprovider", "--basetemp", basetemp, *options),
            ],
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    return Outcome(result.returncode, result.stdout + result.stderr)


def conflict_check(project: Path, synced_project: Path) -> Outcome:
    """The project's test command up to the point where every module is imported:
    the conflict check runs first, then each test module is collected."""
    return uv_run_pytest(project, synced_project, "--collect-only")


def keep_project_side(text: str) -> str:
    """Resolve inline conflicts by keeping the project's side ("before updating")."""
    kept, side = [], "both"
    for line in text.splitlines(keepends=True):
        if line.startswith("<<<<<<< "):
            side = "project"
        elif line.rstrip() == "=======" and side == "project":
            side = "template"
        elif line.startswith(">>>>>>> "):
            side = "both"
        elif side != "template":
            kept.append(line)
    return "".join(kept)


@pytest.mark.parametrize("conflict", ["inline", "rej"])
def test_overlapping_edit_fails_the_project_checks_until_resolved(
    conflict: str, template_repo: Path, synced_project: Path, tmp_path: Path
) -> None:
    project = generate_and_commit(template_repo, tmp_path / PACKAGE, OLDER_ANSWERS)
    readme = project / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[-1] == OLDER_README_LAST_LINE + "\n"
    readme.write_text("".join([*lines[:-1], TEAM_LAST_LINE + "\n"]), encoding="utf-8")
    git(project, "commit", "--quiet", "--all", "--message", "Team's README line")

    update(project, conflict=conflict)

    check = conflict_check(project, synced_project)
    assert check.returncode != 0, check.output
    text = readme.read_text(encoding="utf-8")
    if conflict == "inline":
        # Both versions, between markers, and git lists the file as unmerged.
        assert "<<<<<<< before updating\n" + TEAM_LAST_LINE + "\n=======\n" in text
        assert ">>>>>>> after updating\n" in text
        assert git(project, "diff", "--name-only", "--diff-filter=U") == "README.md\n"
        assert "\nREADME.md:" in check.output  # the failure names file and line
        readme.write_text(keep_project_side(text), encoding="utf-8")
        git(project, "add", "README.md")
    else:
        # The template's version is in place; the team's change waits in a .rej file.
        rejected = project / "README.md.rej"
        assert TEAM_LAST_LINE in rejected.read_text(encoding="utf-8")
        assert TEAM_LAST_LINE not in text
        assert "\nREADME.md.rej: " in check.output
        lines = text.splitlines(keepends=True)
        readme.write_text(
            "".join([*lines[:-1], TEAM_LAST_LINE + "\n"]), encoding="utf-8"
        )
        rejected.unlink()

    resolved_check = conflict_check(project, synced_project)
    assert resolved_check.returncode == 0, resolved_check.output
    resolved = readme.read_text(encoding="utf-8")
    assert resolved.endswith("\n" + TEAM_LAST_LINE + "\n")
    assert "127.0.0.1:8080" in resolved  # the rest of the file was updated
    assert answers_of(project)["_commit"] == NEWER


# The team's own first line for each module NEWER changed on that line.
TEAM_DOCSTRING_PREFIX = "The payments team's: "


def test_a_conflict_in_python_modules_is_reported_by_uv_run_pytest_without_a_traceback(
    template_repo: Path, synced_project: Path, tmp_path: Path
) -> None:
    project = generate_and_commit(template_repo, tmp_path / PACKAGE, OLDER_ANSWERS)
    for relative in CHANGED_MODULES:
        module = project / relative
        text = module.read_text(encoding="utf-8")
        older_first_line = '"""' + OLDER_DOCSTRING_PREFIX
        assert text.startswith(older_first_line), relative
        module.write_text(
            text.replace(older_first_line, '"""' + TEAM_DOCSTRING_PREFIX, 1),
            encoding="utf-8",
        )
    git(project, "commit", "--quiet", "--all", "--message", "Team's docstrings")

    update(project)  # --conflict inline, the default

    unmerged = git(project, "diff", "--name-only", "--diff-filter=U").split()
    assert sorted(unmerged) == sorted(CHANGED_MODULES)
    check = uv_run_pytest(project, synced_project)
    assert check.returncode != 0, check.output
    # One line per marker, `path:line`, where the inline conflict put it.
    for relative in CHANGED_MODULES:
        assert f"\n{relative}:1: <<<<<<< before updating\n" in check.output
        assert f"\n{relative}:3: =======\n" in check.output
        assert f"\n{relative}:5: >>>>>>> after updating\n" in check.output
    assert "Traceback" not in check.output
    assert "SyntaxError" not in check.output

    for relative in CHANGED_MODULES:
        module = project / relative
        module.write_text(keep_project_side(module.read_text("utf-8")), "utf-8")
    resolved_check = conflict_check(project, synced_project)
    assert resolved_check.returncode == 0, resolved_check.output


# --- Files the team owns ----------------------------------------------------------


def derive_newer_shipping_team_files(tree: Path) -> None:
    """NEWER, had it started shipping the files `_skip_if_exists` protects."""
    derive_newer(tree)
    (tree / "template" / "uv.lock").write_text(
        "# The template's lock file.\nversion = 1\n", encoding="utf-8"
    )
    (tree / "template" / ".env").write_text("SENTRY_DSN=\n", encoding="utf-8")


def test_team_owned_files_win_even_when_the_template_starts_shipping_them(
    template_dir: Path, tmp_path: Path
) -> None:
    template_repo = build_template_repo(
        tmp_path / "template",
        template_dir,
        [(OLDER, derive_older), (NEWER, derive_newer_shipping_team_files)],
        force_add=("template/.env",),
    )
    project = generate_and_commit(template_repo, tmp_path / PACKAGE, OLDER_ANSWERS)
    team_owned = {name: TEAM_FILES[name].encode() for name in ("uv.lock", ".env")}
    for name, content in team_owned.items():
        (project / name).write_bytes(content)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "Lock dependencies")

    update(project)

    assert answers_of(project)["_commit"] == NEWER
    for name, content in team_owned.items():
        assert (project / name).read_bytes() == content, name
    # A new project does get the template's versions: they are really shipped.
    fresh = tmp_path / "fresh"
    copier.run_copy(str(template_repo), fresh, defaults=True, quiet=True)
    assert (fresh / "uv.lock").read_text(encoding="utf-8").startswith("# The template")
    assert (fresh / ".env").read_text(encoding="utf-8") == "SENTRY_DSN=\n"

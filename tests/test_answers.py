"""Every answer is validated before anything is written, with a message that says
what is wrong and how to fix it."""

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT, Render

QUESTIONS = (
    "project_name",
    "description",
    "package_name",
    "db_name",
    "db_user_var",
    "db_password_var",
    "db_host_var",
    "db_port_var",
    "db_name_var",
    "db_url_var",
    "pool_size",
    "max_overflow",
    "pool_timeout",
    "pool_recycle",
    "pool_pre_ping",
    "echo_sql",
)

# (answers, question refused, words the message must contain)
INVALID_ANSWERS: list[tuple[dict[str, Any], str, str]] = [
    ({"project_name": ""}, "project_name", "must not be empty"),
    ({"project_name": "   "}, "project_name", "must not be empty"),
    ({"description": ""}, "description", "must not be empty"),
    ({"description": "two\nlines"}, "description", "must be one line"),
    (
        {"package_name": "My-Service"},
        "package_name",
        "not a lowercase Python identifier",
    ),
    ({"package_name": "9lives"}, "package_name", "not a lowercase Python identifier"),
    ({"package_name": ""}, "package_name", "not a lowercase Python identifier"),
    ({"package_name": "class"}, "package_name", "is a Python keyword"),
    ({"package_name": "json"}, "package_name", "standard-library module"),
    ({"package_name": "asyncio"}, "package_name", "standard-library module"),
    ({"package_name": "sqlalchemy"}, "package_name", "clashes with a library"),
    ({"db_name": ""}, "db_name", "must not be empty"),
    ({"db_name": "x" * 64}, "db_name", "64 bytes long"),
    ({"db_name": "é" * 32}, "db_name", "64 bytes long"),
    ({"db_name": "bad\x00name"}, "db_name", "NUL"),
    ({"db_name": "two\nlines"}, "db_name", "control character"),
    (
        {"db_user_var": "postgres_user"},
        "db_user_var",
        "not a valid environment variable name",
    ),
    (
        {"db_password_var": "1PASSWORD"},
        "db_password_var",
        "not a valid environment variable name",
    ),
    (
        {"db_host_var": "DB-HOST"},
        "db_host_var",
        "not a valid environment variable name",
    ),
    ({"db_port_var": ""}, "db_port_var", "not a valid environment variable name"),
    (
        {"db_name_var": "DB NAME"},
        "db_name_var",
        "not a valid environment variable name",
    ),
    (
        {"db_url_var": "database_url"},
        "db_url_var",
        "not a valid environment variable name",
    ),
    ({"db_password_var": "POSTGRES_USER"}, "db_password_var", "same as db_user_var"),
    ({"db_port_var": "POSTGRES_HOST"}, "db_port_var", "same as db_host_var"),
    ({"db_name_var": "POSTGRES_PASSWORD"}, "db_name_var", "same as db_password_var"),
    ({"db_url_var": "POSTGRES_DB"}, "db_url_var", "same as db_name_var"),
    ({"db_url_var": "POSTGRES_USER"}, "db_url_var", "same as db_user_var"),
    ({"db_host_var": "DB_POOL_SIZE"}, "db_host_var", "already used by the service"),
    (
        {"db_user_var": "USER"},
        "db_user_var",
        "already used by the service or the system",
    ),
    ({"pool_size": 0}, "pool_size", "must be 1 or more"),
    ({"pool_size": -3}, "pool_size", "must be 1 or more"),
    ({"max_overflow": -1}, "max_overflow", "must be 0 or more"),
    ({"pool_timeout": 0}, "pool_timeout", "more than 0 seconds"),
    ({"pool_timeout": -1.5}, "pool_timeout", "more than 0 seconds"),
    ({"pool_recycle": -2}, "pool_recycle", "must be -1"),
]


@pytest.mark.parametrize(
    ("answers", "question", "message"),
    INVALID_ANSWERS,
    ids=[
        f"{question}={answers[question]!r}" for answers, question, _ in INVALID_ANSWERS
    ],
)
def test_invalid_answer_is_refused_with_its_message_and_writes_nothing(
    render: Render, tmp_path: Path, answers: dict[str, Any], question: str, message: str
) -> None:
    with pytest.raises(ValueError, match=f"question '{question}'") as refused:
        render(answers, name="refused")

    assert message in str(refused.value)
    # The message also says how to fix it ("use ...", "choose ...", "remove ...").
    assert any(
        hint in str(refused.value)
        for hint in (
            "use ",
            "Use ",
            "choose",
            "give",
            "say in one line",
            "add a word",
            "Remove",
            "shorten",
        )
    )
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

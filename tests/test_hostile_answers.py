"""Whatever people type into the free-text questions, the rendered files still
parse and carry the text unchanged: quotes, backslashes, YAML and TOML syntax,
Jinja-looking text and any Unicode."""

import ast
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import render_template
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Text a validator accepts: one line, not blank (surrogates cannot be stored).
one_line = st.text(
    alphabet=st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=60
).filter(lambda text: text.strip() != "")
NASTY = st.sampled_from(
    [
        "Quote \" and ' and \\ backslash",
        "{{ x }} {% if %} {# c #} ${HOME} %(here)s",
        "key: value # comment\n"[:-1],
        "[table] = 'toml' \"\"\" '''",
        "Café — naïve 日本語 🐘 \u2028 \u0085",
        "- list\n"[:-1],
        "&anchor *alias !!python/object",
    ]
)
free_text = st.one_of(NASTY, one_line)
# A database name: at most 63 bytes, no control characters.
database_names = st.text(
    alphabet=st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=20
).filter(lambda name: len(name.encode()) <= 63 and "\x7f" not in name)


def literal_assigned(module: Path, name: str) -> object:
    """The value a module assigns to `name`, read without running the module."""
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not assigned in {module}")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(project_name=free_text, description=free_text, db_name=database_names)
def test_free_text_answers_render_into_files_that_parse(
    template_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    project_name: str,
    description: str,
    db_name: str,
) -> None:
    answers = {
        "project_name": project_name,
        "description": description,
        "package_name": "hostile",
        "db_name": db_name,
    }
    project = render_template(template_dir, tmp_path_factory.mktemp("hostile"), answers)

    for module in project.rglob("*.py"):
        compile(module.read_text(encoding="utf-8"), str(module), "exec")
    package = project / "src" / "hostile"
    assert literal_assigned(package / "main.py", "TITLE") == project_name
    assert literal_assigned(package / "main.py", "DESCRIPTION") == description
    assert literal_assigned(package / "settings.py", "DEFAULT_DB_NAME") == db_name
    metadata = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert metadata["project"]["description"] == description
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text("utf-8"))
    assert {key: recorded[key] for key in answers} == answers
    assert project_name in (project / "README.md").read_text(encoding="utf-8")

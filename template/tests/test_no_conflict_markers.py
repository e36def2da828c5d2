"""What `copier update` leaves where it could not merge stops the test run, named.

The check itself is the pytest plugin in support/conflict_markers.py, which runs before
anything is imported; these tests specify it.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.conflict_markers import BASE, END, SEPARATOR, START, unresolved_conflicts

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# What `copier update --conflict inline` writes where both sides changed a line
# (built from parts, or this very file would hold markers).
CONFLICT = (
    f"{START} before updating\nNAME = 'the project'\n{SEPARATOR}\n"
    f"NAME = 'the new release'\n{END} after updating\n"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_each_marker_is_reported_as_path_and_line(tmp_path: Path) -> None:
    write(tmp_path / "src" / "module.py", '"""A module."""\n' + CONFLICT)

    assert unresolved_conflicts(tmp_path) == [
        "src/module.py:2: <<<<<<< before updating",
        "src/module.py:4: =======",
        "src/module.py:6: >>>>>>> after updating",
    ]


def test_diff3_base_lines_are_markers_too(tmp_path: Path) -> None:
    lines = [f"{START} ours", "A", f"{BASE} base", "B", SEPARATOR, "C", END]
    write(tmp_path / "a.txt", "\n".join(lines) + "\n")

    assert [line.split(": ")[0] for line in unresolved_conflicts(tmp_path)] == [
        "a.txt:1",
        "a.txt:3",
        "a.txt:5",
        "a.txt:7",
    ]


def test_a_heading_underline_is_not_a_marker(tmp_path: Path) -> None:
    write(tmp_path / "README.md", f"Title\n{SEPARATOR}\n\nText.\n")
    write(tmp_path / "docs" / "index.rst", f"Section\n{SEPARATOR}\n")

    assert unresolved_conflicts(tmp_path) == []


def test_a_rejected_change_beside_a_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "README.md.rej", "@@ -1 +1 @@\n-old\n+new\n")

    assert unresolved_conflicts(tmp_path) == [
        "README.md.rej: changes `copier update` could not apply"
    ]


@pytest.mark.parametrize(
    ("folder", "sign"),
    [
        ("any-env-name", "pyvenv.cfg"),  # a virtualenv, recognised by its config
        (".venv", "pyvenv.cfg"),
        ("tool-cache", "CACHEDIR.TAG"),
        (".dev-postgres", "PG_VERSION"),
        (".git", None),
        ("__pycache__", None),
    ],
)
def test_environments_caches_and_git_are_not_scanned(
    tmp_path: Path, folder: str, sign: str | None
) -> None:
    if sign is not None:
        write(tmp_path / folder / sign, "")
    write(tmp_path / folder / "lib" / "vendored.py", CONFLICT)
    write(tmp_path / folder / "vendored.py.rej", "")

    assert unresolved_conflicts(tmp_path) == []


def test_binary_files_are_not_scanned(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG\0" + CONFLICT.encode())

    assert unresolved_conflicts(tmp_path) == []


def run_pytest_in_copy(tmp_path: Path, files: dict[str, str]) -> str:
    """pytest, configured as this project is, in a copy holding `files`; its
    output, after checking that it failed."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    for helper in ("__init__.py", "conflict_markers.py"):
        source = PROJECT_ROOT / "tests" / "support" / helper
        write(tmp_path / "tests" / "support" / helper, source.read_text("utf-8"))
    write(
        tmp_path / "tests" / "test_nothing.py",
        "def test_nothing() -> None:\n    pass\n",
    )
    for relative, text in files.items():
        write(tmp_path / relative, text)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    return result.stdout + result.stderr


def test_a_conflict_in_conftest_stops_pytest_naming_each_marker_without_a_traceback(
    tmp_path: Path,
) -> None:
    output = run_pytest_in_copy(
        tmp_path, {"tests/conftest.py": "import os\n" + CONFLICT}
    )

    assert "tests/conftest.py:2: <<<<<<< before updating" in output
    assert "tests/conftest.py:4: =======" in output
    assert "tests/conftest.py:6: >>>>>>> after updating" in output
    assert "Traceback" not in output
    assert "SyntaxError" not in output


def test_a_conflict_in_the_check_itself_still_stops_pytest_naming_it(
    tmp_path: Path,
) -> None:
    # It cannot be imported to run, so Python's own error names the place.
    plugin = (PROJECT_ROOT / "tests" / "support" / "conflict_markers.py").read_text(
        "utf-8"
    )
    output = run_pytest_in_copy(
        tmp_path, {"tests/support/conflict_markers.py": CONFLICT + plugin}
    )

    assert 'Error while loading plugin "support.conflict_markers"' in output
    assert 'conflict_markers.py", line 1' in output

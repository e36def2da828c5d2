"""A pytest plugin that stops the run while `copier update` has left conflicts behind.

When the template and this project changed the same lines, `copier update` writes
both versions into the file between conflict markers (or, with `--conflict rej`,
leaves the template's change in a `.rej` file beside it). A marker in a `.py` file
is a SyntaxError, so the test run would die importing it, with a traceback that
names only the first one. This plugin runs first instead: pyproject.toml loads it
with `-p conflict_markers`, before any conftest or project module is imported, and
it imports nothing from the project. It scans the project and, if anything is
unresolved, stops pytest with one `path:line: marker` line per marker (exit
status 4, a usage error) and no traceback.

It lives in tests/, which `pythonpath` puts on sys.path before `-p` plugins load;
the team has no reason to edit it, so an update rarely conflicts here. If this
file itself holds markers, pytest cannot import it and stops with "Error while
loading plugin" and a SyntaxError naming this file and line; with markers in
pyproject.toml, pytest cannot read its configuration and names that file and
line. Resolve those first.

`uv run pytest -p no:conflict_markers` runs the tests anyway, e.g. to try one resolution.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Folders that are not the project's own files: git's, caches, build output.
# Virtual environments are recognised by their pyvenv.cfg, whatever their name,
# caches by the CACHEDIR.TAG that tools write into them, and PostgreSQL data
# folders (the dev server's .dev-postgres/) by their PG_VERSION.
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        "__pycache__",
        ".hypothesis",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
        "build",
        "dist",
    }
)
SKIPPED_IF_HOLDING = ("pyvenv.cfg", "CACHEDIR.TAG", "PG_VERSION")
# As git decides: a file with a NUL byte this early is binary, never merged by line.
BINARY_SNIFF_BYTES = 8000

# The lines git writes around a conflict: ours, the base (with diff3) and theirs,
# then the separator, which only counts inside a conflict: alone, "=======" is
# a Markdown or reStructuredText heading underline.
START, BASE, SEPARATOR, END = "<<<<<<<", "|||||||", "=======", ">>>>>>>"

HOW_TO_RESOLVE = (
    "Unresolved conflicts from `copier update`: keep the lines you want and delete "
    "the markers (or merge each .rej file into its file and delete it), then "
    "`git add` the file."
)


def project_files(root: Path) -> Iterator[Path]:
    """Every file under `root` but those in the skipped folders, in a stable order."""
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if name not in SKIPPED_FOLDERS
            and not name.endswith(".egg-info")
            and not any(
                os.path.exists(os.path.join(folder, name, marker))
                for marker in SKIPPED_IF_HOLDING
            )
        )
        for name in sorted(files):
            yield Path(folder, name)


def is_marker(line: str, marker: str) -> bool:
    """git's marker alone, or followed by a space and a label."""
    return line == marker or line.startswith(marker + " ")


def marker_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each conflict-marker line of `text`: its number and the line itself."""
    inside = False
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip()
        if is_marker(line, START):
            inside = True
        elif is_marker(line, END):
            inside = False
        elif not (inside and (is_marker(line, BASE) or line == SEPARATOR)):
            continue
        yield number, line


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary or unreadable file."""
    try:
        with path.open("rb") as file:
            start = file.read(BINARY_SNIFF_BYTES)
            if b"\0" in start:
                return None
            return (start + file.read()).decode("utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def unresolved_conflicts(root: Path) -> list[str]:
    """`path:line: marker` for each marker under `root`, and each `.rej` file."""
    found: list[str] = []
    for path in project_files(root):
        relative = path.relative_to(root).as_posix()
        if path.suffix == ".rej":
            found.append(f"{relative}: changes `copier update` could not apply")
            continue
        text = text_of(path)
        if text is None:
            continue  # not text, so not something git merges line by line
        found.extend(
            f"{relative}:{number}: {line}" for number, line in marker_lines(text)
        )
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    found = unresolved_conflicts(early_config.rootpath)
    if found:
        raise pytest.UsageError("\n".join([HOW_TO_RESOLVE, *found]))

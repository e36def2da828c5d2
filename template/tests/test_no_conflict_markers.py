"""No file still holds what `copier update` leaves behind when it cannot merge.

When the template and this project changed the same lines, `copier update` writes
both versions into the file between conflict markers (or, with `--conflict rej`,
puts the template's change in a `.rej` file beside it). Until each one is resolved
by hand the project is half-updated, so these tests fail, naming every place.
"""

import os
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Installed packages, caches, build output and git's own files: not project files.
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "build",
        "dist",
    }
)
# The lines git writes around each side of a conflict; a lone "=======" also
# betrays a conflict whose other markers were deleted by hand.
MARKER_PREFIXES = ("<<<<<<< ", "||||||| ", ">>>>>>> ")
SEPARATOR = "======="


def project_files() -> Iterator[Path]:
    for folder, subfolders, files in os.walk(PROJECT_ROOT):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if name not in SKIPPED_FOLDERS and not name.endswith(".egg-info")
        )
        for name in sorted(files):
            yield Path(folder, name)


def marker_lines(path: Path) -> list[str]:
    """Each conflict-marker line of a text file, as `path:line: text`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []  # not a text file, so not something git merges line by line
    relative = path.relative_to(PROJECT_ROOT)
    return [
        f"{relative}:{number}: {line}"
        for number, line in enumerate(text.splitlines(), start=1)
        if line.startswith(MARKER_PREFIXES) or line.rstrip() == SEPARATOR
    ]


def test_no_file_holds_unresolved_conflict_markers() -> None:
    found = [line for path in project_files() for line in marker_lines(path)]

    assert not found, (
        "Unresolved conflicts from `copier update`: keep the lines you want, delete "
        "the markers, then `git add` the file.\n" + "\n".join(found)
    )


def test_no_rejected_update_is_left_beside_a_file() -> None:
    rejected = [
        str(path.relative_to(PROJECT_ROOT))
        for path in project_files()
        if path.suffix == ".rej"
    ]

    assert not rejected, (
        "Changes `copier update` could not apply: merge each .rej file into the file "
        "it names, then delete it.\n" + "\n".join(rejected)
    )

"""This working tree as Copier reads it, copied to a plain folder so uncommitted
work renders as it is. The template's tests (tests/conftest.py) and the bench
render from such a copy."""

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# What Copier needs of this repo: the questions, what they include, the project tree.
TEMPLATE_PARTS = ("copier.yml", "includes", "template")


def copy_template(destination: Path) -> Path:
    """Copy the template's parts into `destination` (created if missing)."""
    destination.mkdir(parents=True, exist_ok=True)
    for part in TEMPLATE_PARTS:
        origin = REPO_ROOT / part
        if origin.is_dir():
            shutil.copytree(origin, destination / part)
        else:
            shutil.copy2(origin, destination / part)
    return destination

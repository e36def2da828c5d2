"""Folders kept between test runs, each named by a fingerprint of what it was
made from, so that a change to any of that makes a new one.

The tests keep the embedded PostgreSQL's data folder this way, prepared (initdb,
role, database, migrations) by the first run that needed it. Runs may overlap:
a folder appears whole or not at all (copied under a temporary name, then
renamed), and a run that cannot read or write the cache goes without it.
"""

import hashlib
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

# Prefixes of the folders that are not (or no longer) a finished entry.
PARTIAL = ".partial-"
STALE = ".stale-"
# A partial folder this old belongs to a run that was killed mid-copy.
ABANDONED_AFTER = 3600.0


def fingerprint(root: Path, paths: Iterable[str], extra: Iterable[str] = ()) -> str:
    """A hash of the files at `paths` under `root` (every file under a folder,
    bytecode caches left out), their names included, and of the `extra` values."""
    digest = hashlib.sha256()
    for value in extra:
        digest.update(value.encode() + b"\0")
    for path in sorted(root / name for name in paths):
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(root)).encode() + b"\0")
                digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


class FolderCache:
    """The entry for `key` in `folder`: found, saved, or discarded."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.entry = folder / key

    def find(self) -> Path | None:
        """The saved folder, if there is one."""
        return self.entry if self.entry.is_dir() else None

    def save(self, source: Path) -> None:
        """Keep a copy of `source` as the entry, unless another run saved one
        first, and remove the entries of other keys."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.folder / f"{PARTIAL}{uuid.uuid4().hex}"
            shutil.copytree(source, partial, symlinks=True)
            try:
                partial.rename(self.entry)
            except OSError:  # another run's copy is already there
                shutil.rmtree(partial, ignore_errors=True)
            self._remove_others()
        except OSError:
            pass  # e.g. a read-only checkout: each run prepares its own

    def discard(self) -> None:
        """Remove the entry (it could not be used)."""
        self._remove(self.entry)

    def _remove_others(self) -> None:
        for path in self.folder.iterdir():
            if path.name.startswith(PARTIAL):
                if time.time() - path.stat().st_mtime > ABANDONED_AFTER:
                    self._remove(path)
            elif path != self.entry:
                self._remove(path)

    def _remove(self, path: Path) -> None:
        # Renamed first: no run starts copying a folder that is being deleted.
        doomed = path if path.name.startswith((PARTIAL, STALE)) else None
        if doomed is None:
            doomed = self.folder / f"{STALE}{uuid.uuid4().hex}"
            try:
                path.rename(doomed)
            except OSError:
                return  # gone already
        shutil.rmtree(doomed, ignore_errors=True)

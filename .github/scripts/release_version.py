"""Print the newest release in CHANGELOG.md: the first `## X.Y.Z` heading after
`## Unreleased` (see the release policy there).

    python3 .github/scripts/release_version.py [CHANGELOG.md]

The release workflow tags the pushed commit `v<that version>` unless the tag
exists. Anything else where that heading belongs is refused, naming the line: a
release the workflow silently skipped would leave projects on the older one.
Standard library only, so it runs on a bare CI runner.
"""

import re
import sys
from pathlib import Path

UNRELEASED = "## Unreleased"
# A PEP 440 public version as the policy writes them: 0.2.0, 1.0.0rc1, 1.0.0.post1.
VERSION = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


class ChangelogError(Exception):
    """CHANGELOG.md does not name a release where the policy puts it."""


def newest_release(changelog: str) -> str:
    """The version of the first level-2 heading after `## Unreleased`."""
    lines = [line.rstrip() for line in changelog.splitlines()]
    if UNRELEASED not in lines:
        raise ChangelogError(
            f"no '{UNRELEASED}' heading; releases are the '## X.Y.Z' headings below it"
        )
    after_unreleased = lines[lines.index(UNRELEASED) + 1 :]
    for line in after_unreleased:
        if not line.startswith("## "):
            continue
        heading = line.removeprefix("## ").strip()
        if VERSION.fullmatch(heading):
            return heading
        raise ChangelogError(
            f"the heading after '{UNRELEASED}' is {line!r}; it must be the newest "
            "release's version alone, for example '## 0.2.0' (no 'v', no date)"
        )
    raise ChangelogError(
        f"no release yet: add a '## X.Y.Z' section below '{UNRELEASED}'"
    )


def main(arguments: list[str]) -> int:
    path = Path(arguments[0] if arguments else "CHANGELOG.md")
    try:
        print(newest_release(path.read_text(encoding="utf-8")))
    except (ChangelogError, OSError) as problem:
        print(f"{path}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Start the service: `uv run <project-name> [uvicorn options, e.g. --port 8080]`.

The settings are checked first, so a misconfigured service stops with one line per
problem instead of a traceback from inside the server.
"""

import sys

import uvicorn

from .settings import SettingsError, load_settings


def main() -> None:
    try:
        load_settings()
    except SettingsError as problems:
        sys.exit(f"{__package__} cannot start; fix these settings:\n{problems}")
    # Hand over to uvicorn's own command line, so all of its options work.
    sys.argv = ["uvicorn", f"{__package__}.main:app", *sys.argv[1:]]
    uvicorn.main()


if __name__ == "__main__":
    main()

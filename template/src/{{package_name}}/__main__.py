"""Start the service: `uv run <project-name> [uvicorn options, e.g. --port 8080]`.

The settings are checked first, so a misconfigured service stops with one line per
problem instead of a traceback from inside the server. This command only ever
serves the database the settings name; the embedded one is for `<project-name>-dev`.
"""

import sys

from .server import serve
from .settings import SettingsError, load_settings


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as problems:
        sys.exit(f"{__package__} cannot start; fix these settings:\n{problems}")
    serve(sys.argv[1:], settings)


if __name__ == "__main__":
    main()

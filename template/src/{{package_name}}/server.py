"""Serving the app with uvicorn's own command line, shared by the production
entry point (__main__.py) and the dev server (dev.py), so every uvicorn option
works in both and both log the same way."""

import os
import sys
from collections.abc import Callable, Sequence

import click
import uvicorn
from click.core import ParameterSource

from .db.budget import WORKERS_VAR
from .logs import logging_config
from .settings import Settings

# Announces where the server will listen, before it starts: (host, port).
Announce = Callable[[str, int], None]


def serve(
    options: Sequence[str],
    settings: Settings,
    defaults: Sequence[str] = (),
    announce: Announce | None = None,
) -> None:
    """Run `uvicorn <app> [defaults] [options]`: an option given in both takes
    the caller's value. Logging follows the settings unless --log-config is given."""
    arguments = [f"{__package__}.main:app", *defaults, *options]
    try:
        with uvicorn.main.make_context("uvicorn", arguments) as context:
            if context.get_parameter_source("log_config") is ParameterSource.DEFAULT:
                context.params["log_config"] = logging_config(
                    settings.log_format, settings.log_level
                )
            workers = context.params["workers"]
            if context.params["reload"]:
                workers = 1  # uvicorn ignores --workers when reloading
            if workers is not None:
                # Inherited by every worker process, where the start-up's
                # connection budget reads it (db/budget.py).
                os.environ[WORKERS_VAR] = str(workers)
            if announce is not None:
                announce(context.params["host"], context.params["port"])
            uvicorn.main.invoke(context)
    except click.exceptions.Exit as done:  # --help, --version
        sys.exit(done.exit_code)
    except click.ClickException as error:  # an unknown or malformed option
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:  # Ctrl-C, re-raised by uvicorn once it shut down
        sys.exit(130)

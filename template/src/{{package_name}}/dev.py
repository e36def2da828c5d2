"""The zero-setup dev server: `uv run <project-name>-dev [uvicorn options]`.

It starts a PostgreSQL whose data lives in .dev-postgres/ inside the project
(git-ignored, kept between runs; delete the folder to start afresh), creates
the role and the database on first start, applies the migrations and serves the
app with auto-reload on http://127.0.0.1:8000. Ctrl-C (or SIGTERM) stops the
server and PostgreSQL.

`<project-name>-dev run <command...>` runs one command against the same database
instead, e.g. `alembic revision --autogenerate -m "add prices"`.

Development only: the embedded PostgreSQL comes from a dev dependency, and the
production command (__main__.py) never falls back to it.
"""

import fcntl
import logging.config
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from alembic import command
from alembic.config import Config

try:
    from .embedded_postgres import (
        EmbeddedPostgres,
        EmbeddedPostgresError,
        quote_identifier,
        quote_literal,
    )
except ModuleNotFoundError as missing:  # installed without the dev dependencies
    raise SystemExit(
        f"the dev server needs the dev dependencies ({missing.name}): run `uv sync`"
    ) from None
from .logs import logging_config
from .server import serve
from .settings import (
    DEFAULT_DB_NAME,
    HOST_VAR,
    NAME_VAR,
    PASSWORD_VAR,
    PORT_VAR,
    URL_VAR,
    USER_VAR,
    Settings,
    SettingsError,
    load_settings,
)

DATA_FOLDER = ".dev-postgres"
# Held (flock) for as long as a dev command uses the folder; the kernel releases
# it when the process ends, however it ends.
LOCK_FILE = "dev-server.lock"
# The role the app connects as: no password, over 127.0.0.1 only.
DEV_ROLE = "dev"
# uvicorn options of the dev server; the developer's own options override them.
SERVE_DEFAULTS = (
    "--host",
    "127.0.0.1",
    "--port",
    "8000",
    "--reload",
    "--reload-dir",
    "src",
)


class DevServerError(Exception):
    """Something the developer must fix before the dev server can start."""


def project_root(start: Path) -> Path:
    """The folder holding pyproject.toml and alembic.ini, at or above `start`."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "alembic.ini").is_file():
            return folder
    raise DevServerError(f"run it inside the project: no alembic.ini above {start}")


@contextmanager
def exclusive_use(folder: Path) -> Iterator[None]:
    """Fail at once, instead of corrupting data, when another dev command uses
    the folder."""
    folder.mkdir(exist_ok=True)
    with (folder / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DevServerError(
                f"another dev server is using {folder}; stop it first "
                "(Ctrl-C in its terminal)"
            ) from None
        yield


@contextmanager
def dev_database(folder: Path) -> Iterator[EmbeddedPostgres]:
    """The dev PostgreSQL, running, with the role and database created."""
    with exclusive_use(folder):
        server = EmbeddedPostgres(folder, durable=True)
        server.trust_over_tcp(DEV_ROLE)
        # A server left running by a dev command that was killed (-9): stop it,
        # so this one starts with the settings it needs.
        server.stop_if_running()
        server.start()
        try:
            create_role_and_database(server)
            yield server
        finally:
            # Nothing interrupts the stop: not a second Ctrl-C, nor the copy of
            # the first that `uv run` sends 0.2 s later when its child still runs.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            server.stop_if_running()


def create_role_and_database(server: EmbeddedPostgres) -> None:
    role, database = DEV_ROLE, DEFAULT_DB_NAME
    # Every name is quoted (quote_literal, quote_identifier): no injection.
    find_role = f"SELECT 1 FROM pg_roles WHERE rolname = {quote_literal(role)};"  # noqa: S608
    if not server.psql(find_role):
        server.psql(f"CREATE ROLE {quote_identifier(role)} LOGIN CREATEDB;")
    find_database = (
        f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(database)};"  # noqa: S608
    )
    if not server.psql(find_database):
        owner = quote_identifier(role)
        server.psql(f"CREATE DATABASE {quote_identifier(database)} OWNER {owner};")


def use_dev_database(server: EmbeddedPostgres) -> Settings:
    """Point the service's variables at the dev database (a .env file cannot
    override them: real environment variables win) and read the settings."""
    os.environ.update(
        {
            USER_VAR: DEV_ROLE,
            PASSWORD_VAR: "",
            HOST_VAR: "127.0.0.1",
            PORT_VAR: str(server.port),
            NAME_VAR: DEFAULT_DB_NAME,
            URL_VAR: "",
            "DB_SSL_MODE": "disable",
        }
    )
    os.environ.setdefault("LOG_FORMAT", "text")
    return load_settings()


def migrate(project: Path, settings: Settings) -> None:
    config = Config(project / "alembic.ini")
    config.attributes["settings"] = settings
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def psql_command(server: EmbeddedPostgres) -> str:
    psql = str(server.bin_dir / "psql")
    port = str(server.port)
    return shlex.join(
        [psql, "-h", "127.0.0.1", "-p", port, "-U", DEV_ROLE, "-d", DEFAULT_DB_NAME]
    )


def run_command(arguments: list[str]) -> int:
    """The developer's own command, with the dev database's variables set and
    this environment's programs (alembic, pytest...) first on the PATH."""
    programs = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([programs, os.environ.get("PATH", "")])
    try:
        return subprocess.run(arguments, check=False).returncode  # noqa: S603
    except FileNotFoundError:
        raise DevServerError(f"no such command: {arguments[0]}") from None


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C does, so PostgreSQL is stopped on the way out. uvicorn
    # takes the signal over while it serves, then returns here.
    raise SystemExit(128 + signum)


def run_dev(arguments: list[str]) -> int:
    project = project_root(Path.cwd())
    os.chdir(project)  # .env, alembic.ini and --reload-dir are read from here
    folder = project / DATA_FOLDER
    with dev_database(folder) as server:
        settings = use_dev_database(server)
        logging.config.dictConfig(
            logging_config(settings.log_format, settings.log_level)
        )
        migrate(project, settings)
        if arguments[:1] == ["run"]:
            if len(arguments) == 1:
                raise DevServerError(
                    "say which command to run, e.g. `run alembic check`"
                )
            return run_command(arguments[1:])

        def announce(host: str, port: int) -> None:
            print(
                f"\nDev server (data in {folder}, kept between runs)\n"
                f"  API docs: http://{host}:{port}/docs\n"
                f"  psql:     {psql_command(server)}\n"
                "  Ctrl-C stops the server and PostgreSQL.\n",
                flush=True,
            )

        serve(arguments, settings, defaults=SERVE_DEFAULTS, announce=announce)
    return 0


def main() -> None:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        sys.exit(run_dev(sys.argv[1:]))
    except SettingsError as problems:
        sys.exit(
            f"{Path(sys.argv[0]).name} cannot start; fix these settings:\n{problems}"
        )
    except (DevServerError, EmbeddedPostgresError) as problem:
        sys.exit(f"{Path(sys.argv[0]).name}: {problem}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

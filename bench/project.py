"""The rendered project: Copier render from this working tree, `uv sync`, and the
two services the bench compares, each a uvicorn subprocess on loopback."""

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import copier
import yaml

BENCH_DIR = Path(__file__).resolve().parent
# Settings the generated service reads besides its database variables; unset, so
# the render's own defaults (the ones being measured) apply.
SERVICE_OVERRIDES = (
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "DB_POOL_TIMEOUT",
    "DB_POOL_RECYCLE",
    "DB_POOL_PRE_PING",
    "DB_ECHO_SQL",
    "DEV_MODE",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "WEB_CONCURRENCY",
)
# What the bench reports about the environment the services run in.
LIBRARIES = (
    "fastapi",
    "starlette",
    "pydantic",
    "sqlalchemy",
    "asyncpg",
    "uvicorn",
    "uvloop",
    "httptools",
    "alembic",
    "pytest",
)


def run(
    command: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, stop the bench with its whole output."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode} in {cwd}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def clean_environment() -> dict[str, str]:
    """This process's environment, less this repo's virtualenv (the project has
    its own) and the service's overrides."""
    drop = {"VIRTUAL_ENV", *SERVICE_OVERRIDES}
    return {key: value for key, value in os.environ.items() if key not in drop}


def users_environment() -> dict[str, str]:
    """clean_environment() less PYTHONDONTWRITEBYTECODE, as on users' machines:
    Python compiles a module on its first import and loads the bytecode after,
    which is most of a short command's start-up."""
    return {
        key: value
        for key, value in clean_environment().items()
        if key != "PYTHONDONTWRITEBYTECODE"
    }


def render(template: Path, destination: Path) -> Path:
    """`copier copy --defaults`, through Copier's API."""
    copier.run_copy(str(template), destination, defaults=True, unsafe=False, quiet=True)
    return destination


def git_repository(template: Path, destination: Path) -> Path:
    """The template folder as a one-commit git repository: what users render
    from, which Copier clones before rendering."""
    shutil.copytree(template, destination)
    git = shutil.which("git")
    if git is None:
        raise SystemExit("git is needed to time `copier copy` from a repository")
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        run([git, *identity, *command], cwd=destination)
    return destination


def time_copier_copy(source: Path, scratch: Path, runs: int) -> list[float]:
    """Wall time of `copier copy --defaults` as a command, `runs` times.

    PYTHONDONTWRITEBYTECODE is unset, as on users' machines: Copier's own
    modules are compiled on the first run and loaded from bytecode after it.
    """
    env = users_environment()
    command = [sys.executable, "-m", "copier", "copy", "--defaults", "--quiet"]
    if (source / ".git").exists():
        command += ["--vcs-ref", "HEAD"]
    times = []
    for number in range(runs):
        destination = scratch / f"copy-{number}"
        started = time.perf_counter()
        run([*command, str(source), str(destination)], cwd=scratch, env=env)
        times.append(time.perf_counter() - started)
        shutil.rmtree(destination)
    return times


@dataclass(frozen=True)
class Project:
    """A synced render, and what the bench needs to know about it."""

    root: Path
    answers: dict[str, Any]

    @property
    def venv_bin(self) -> Path:
        return self.root / ".venv" / "bin"

    @property
    def python(self) -> Path:
        return self.venv_bin / "python"

    @property
    def package(self) -> str:
        return str(self.answers["package_name"])

    @property
    def command(self) -> Path:
        """The production entry point, `uv run <project-name>`."""
        return self.venv_bin / self.package.replace("_", "-")

    @property
    def embedded_postgres(self) -> Path:
        """The module its tests and dev server run PostgreSQL with."""
        return self.root / "src" / self.package / "embedded_postgres.py"

    @property
    def pool_size(self) -> int:
        """The pool's size as rendered: the service's default, which the bench
        measures (DB_POOL_SIZE is unset, see SERVICE_OVERRIDES)."""
        return int(self.answers["pool_size"])

    @property
    def max_overflow(self) -> int:
        return int(self.answers["max_overflow"])

    def database_environment(self, dsn_parts: dict[str, str]) -> dict[str, str]:
        """The service's own variables (the names answered at render time)."""
        names = {
            "user": self.answers.get("db_user_var", "POSTGRES_USER"),
            "password": self.answers.get("db_password_var", "POSTGRES_PASSWORD"),
            "host": self.answers.get("db_host_var", "POSTGRES_HOST"),
            "port": self.answers.get("db_port_var", "POSTGRES_PORT"),
            "database": self.answers.get("db_name_var", "POSTGRES_DB"),
        }
        variables = {names[part]: value for part, value in dsn_parts.items()}
        url_var = self.answers.get("db_url_var", "DATABASE_URL")
        environment = clean_environment()
        environment.pop(url_var, None)
        return {**environment, **variables}

    def library_versions(self) -> dict[str, str]:
        script = (
            "import importlib.metadata as m, json, sys\n"
            "versions = {'python': sys.version.split()[0]}\n"
            f"for name in {list(LIBRARIES)!r}:\n"
            "    try: versions[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(versions))\n"
        )
        output = run([str(self.python), "-c", script], cwd=self.root).stdout
        versions: dict[str, str] = json.loads(output)
        return versions

    def has_modules(self, *modules: str) -> bool:
        check = ";".join(f"import {module}" for module in modules)
        result = subprocess.run(
            [str(self.python), "-c", check], capture_output=True, check=False
        )
        return result.returncode == 0


def sync(root: Path) -> Project:
    """`uv sync` the render, as its README says."""
    run(
        [sys.executable, "-m", "uv", "sync", "--no-progress"],
        cwd=root,
        env=clean_environment(),
    )
    answers = yaml.safe_load((root / ".copier-answers.yml").read_text())
    return Project(root, answers)


def install_fast_loop(project: Project) -> bool:
    """uvloop and httptools in the project's environment (uvicorn[standard]'s
    choices), unless it has them; False if they cannot be installed."""
    if project.has_modules("uvloop", "httptools"):
        return True
    subprocess.run(
        [
            *(sys.executable, "-m", "uv", "pip", "install", "--quiet"),
            *("--python", str(project.python), "uvloop", "httptools"),
        ],
        cwd=project.root,
        env=clean_environment(),
        capture_output=True,
        check=False,
    )
    return project.has_modules("uvloop", "httptools")


@dataclass
class Service:
    """A uvicorn subprocess serving one side of the comparison."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str, timeout: float = 60) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                status, _ = self.request("GET", ready_path)
            except OSError:
                status = 0
            if status == 200:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not answer {ready_path} with 200 within {timeout} s:\n"
            + self.log_file.read_text(errors="replace")[-4000:]
        )

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body else {}
            payload = json.dumps(body).encode() if body else None
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (user and system), from
        /proc; None where there is no /proc."""
        if self.process is None:
            return None
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        # utime and stime: the 12th and 13th fields after the ")" closing the name.
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def uvicorn_options(port: int, fast_loop: bool) -> list[str]:
    """The same on both sides: one worker on loopback, the loop and HTTP parser
    chosen explicitly (uvicorn's "auto" would pick them silently)."""
    loop, http_parser = ("uvloop", "httptools") if fast_loop else ("asyncio", "h11")
    return [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        loop,
        "--http",
        http_parser,
    ]

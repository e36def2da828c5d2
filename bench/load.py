"""Load: wrk for throughput and latency, and an exact-count client for the
statement log (wrk stops on a clock, with requests still in flight)."""

import http.client
import json
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "wrk"
RESULT_MARKER = "BENCH_RESULT "
INSTALL_HINT = (
    "wrk, the HTTP load generator, is not installed. On Debian or Ubuntu: "
    "`sudo apt-get install -y wrk`; on macOS: `brew install wrk`."
)


@dataclass(frozen=True)
class Endpoint:
    """One thing the bench measures on both sides."""

    key: str
    label: str
    method: str
    # "{id}" stands for a seeded row's id.
    path: str
    # A Lua file in bench/wrk/ that writes the requests; else wrk fetches `path`.
    script: str | None = None

    def path_for(self, item_id: int) -> str:
        return self.path.format(id=item_id)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int  # connect, read, write errors and timeouts
    bad_statuses: int  # answers other than 2xx/3xx

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds


def find_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit(INSTALL_HINT)
    return wrk


def wrk_version(wrk: str) -> str:
    # `wrk -v` prints its version line, then its usage, and exits 1.
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).splitlines()[0].split(" Copyright")[0]


def run_wrk(
    wrk: str,
    base_url: str,
    endpoint: Endpoint,
    script_args: list[str],
    seconds: float,
    threads: int,
    connections: int,
) -> LoadResult:
    script = (LUA_DIR / "report.lua").read_text()
    if endpoint.script is not None:
        script = (LUA_DIR / endpoint.script).read_text() + "\n" + script
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script_file:
        script_file.write(script)
        script_file.flush()
        command = [
            wrk,
            f"--threads={threads}",
            f"--connections={connections}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=10s",
            f"--script={script_file.name}",
            base_url + endpoint.path_for(1),
            "--",
            *script_args,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [
        line for line in result.stdout.splitlines() if line.startswith(RESULT_MARKER)
    ]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    summary = json.loads(lines[0].removeprefix(RESULT_MARKER))
    return LoadResult(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        socket_errors=sum(
            summary[kind] for kind in ("connect", "read", "write", "timeout")
        ),
        bad_statuses=summary["status"],
    )


def send_exactly(
    port: int,
    endpoint: Endpoint,
    requests: int,
    connections: int,
    name_prefix: str,
    seed_rows: int,
) -> int:
    """Send exactly `requests` requests over `connections` keep-alive
    connections in parallel; return how many were answered 2xx."""
    per_connection = max(1, requests // connections)

    def worker(number: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        answered = 0
        try:
            for index in range(per_connection):
                item_id = (number * per_connection + index) % seed_rows + 1
                path, body, headers = endpoint.path_for(item_id), None, {}
                if endpoint.method == "POST":
                    name = f"{name_prefix}-{number}-{index}"
                    body = json.dumps({"name": name, "description": "counted"})
                    headers = {"Content-Type": "application/json"}
                connection.request(endpoint.method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                answered += 200 <= response.status < 300
        finally:
            connection.close()
        return answered

    with ThreadPoolExecutor(max_workers=connections) as pool:
        return sum(pool.map(worker, range(connections)))

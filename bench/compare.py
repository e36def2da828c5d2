"""The side-by-side HTTP comparison: the generated service and the raw asyncpg
baseline, on one PostgreSQL, measured in interleaved rounds at each concurrency
(by default the generated pool's size, and more clients than that)."""

import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .load import Endpoint, LoadResult, run_wrk, send_exactly
from .postgres import (
    BenchPostgres,
    StatementLog,
    embedded_postgres_module,
    parse_statement_log,
)
from .project import (
    BENCH_DIR,
    Project,
    Service,
    clean_environment,
    run,
    uvicorn_options,
)

SIDES = ("generated", "raw")
# Rows the table holds while reads are measured (ids 1..SEED_ROWS).
SEED_ROWS = 1000
# Connections the baseline's asyncpg pool opens at start-up and keeps: asyncpg's
# default, what a hand-written service would use.
RAW_POOL_SIZE = 10
# Concurrent clients above the pool, unless asked otherwise (at least twice the
# pool's size).
CLIENTS_ABOVE_POOL = 32
# How the baseline's connections name themselves, to tell them apart in the log.
RAW_APPLICATION_NAME = "bench_raw"


def endpoints(ready_path: str) -> list[Endpoint]:
    return [
        Endpoint("read", "GET /items/{id}", "GET", "/items/{id}", "get_item.lua"),
        Endpoint("list", "GET /items?limit=50", "GET", "/items?limit=50"),
        Endpoint("create", "POST /items", "POST", "/items", "create_item.lua"),
        Endpoint("ready", f"GET {ready_path}", "GET", ready_path),
    ]


# What a measurement is of: an endpoint's key, the concurrent clients, a side.
Key = tuple[str, int, str]


@dataclass(frozen=True)
class GeneratedPool:
    """The generated service's pool as rendered (the render's answers)."""

    size: int
    max_overflow: int

    def __str__(self) -> str:
        return f"pool_size={self.size}, max_overflow={self.max_overflow}"


def default_concurrencies(pool: GeneratedPool) -> list[int]:
    """Clients at the pool's size, where no request waits for a connection, and
    above it, where requests queue (or, with max_overflow, the pool grows)."""
    return [pool.size, max(CLIENTS_ABOVE_POOL, 2 * pool.size)]


@dataclass(frozen=True)
class Run:
    """One wrk run of one side on one endpoint at one concurrency."""

    round: int
    result: LoadResult
    new_connections: int
    # The server process's CPU time per answered request (None without /proc).
    cpu_ms_per_request: float | None


@dataclass(frozen=True)
class Counted:
    """The statement-log run of one side on one endpoint at one concurrency."""

    requests: int
    log: StatementLog
    new_connections: int

    @property
    def round_trips(self) -> float:
        return (sum(self.log.statements.values()) + self.log.prepares) / self.requests


@dataclass
class Comparison:
    endpoints: list[Endpoint]
    concurrencies: list[int]
    fast_loop: bool
    postgres_version: str
    raw_pool_size: int
    generated_pool: GeneratedPool
    runs: dict[Key, list[Run]] = field(default_factory=dict)
    counted: dict[Key, Counted] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    seconds: float
    warmup_seconds: float
    rounds: int
    threads: int
    # Concurrent clients (wrk connections), each measured in every round.
    concurrencies: list[int]
    # Requests per client in the statement-log run.
    counted_per_client: int
    fast_loop: bool


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def seed(postgres: BenchPostgres) -> None:
    postgres.psql(
        "INSERT INTO items (name, description) SELECT 'seed-' || n, "
        "'seeded by the bench' FROM generate_series(1, :rows) AS n;\n"
        "VACUUM ANALYZE items;",
        database="bench",
        variables={"rows": str(SEED_ROWS)},
    )
    highest = int(postgres.psql("SELECT max(id) FROM items;", database="bench"))
    if highest != SEED_ROWS:
        raise RuntimeError(f"seeded ids should end at {SEED_ROWS}, not {highest}")


def reset_items(postgres: BenchPostgres) -> None:
    """Back to the seeded rows, so every list run counts the same table."""
    postgres.psql(
        "DELETE FROM items WHERE id > :rows;\nVACUUM ANALYZE items;",
        database="bench",
        variables={"rows": str(SEED_ROWS)},
    )


def shape(body: bytes, name: str) -> str:
    """A created item's JSON with the name and every digit masked: the same
    for both sides when keys, order, types and formats agree."""
    return re.sub(r"[0-9]", "0", body.decode().replace(name, "<name>"))


def check_same_answers(
    generated: Service, raw: Service, ready_path: str, log: Callable[[str], None]
) -> None:
    """Both sides answer the same requests with the same bytes (a created item:
    the same shape), or the comparison would not be fair."""
    example = ""
    for path in ("/items/1", "/items?limit=50", ready_path):
        answers = [side.request("GET", path) for side in (generated, raw)]
        if answers[0] != answers[1] or answers[0][0] != 200:
            raise RuntimeError(f"GET {path} differs:\n{answers[0]!r}\n{answers[1]!r}")
        if path == "/items/1":
            example = answers[0][1].decode()
    shapes = []
    for side in (generated, raw):
        name = f"check-{side.name}"
        status, body = side.request("POST", "/items", {"name": name})
        if status != 201:
            raise RuntimeError(f"POST /items on {side.name}: {status} {body!r}")
        shapes.append(shape(body, name))
    if shapes[0] != shapes[1]:
        raise RuntimeError(f"created items differ in shape:\n{shapes[0]}\n{shapes[1]}")
    log(f"same answers on both sides, e.g. GET /items/1: {example}")


def openapi_paths(service: Service) -> set[str]:
    status, body = service.request("GET", "/openapi.json")
    if status != 200:
        return set()
    paths: dict[str, object] = json.loads(body)["paths"]
    return set(paths)


def compare(
    project: Project,
    work: Path,
    wrk: str,
    options: Options,
    log: Callable[[str], None],
) -> Comparison:
    postgres = BenchPostgres(
        embedded_postgres_module(project.embedded_postgres), work / "postgres"
    )
    postgres.start()
    services: list[Service] = []
    try:
        host, port = "127.0.0.1", str(postgres.port)
        parts = {"user": "bench", "password": postgres.password}
        parts |= {"host": host, "port": port, "database": "bench"}
        service_env = project.database_environment(parts)
        run(
            [str(project.venv_bin / "alembic"), "upgrade", "head"],
            project.root,
            service_env,
        )
        seed(postgres)

        generated_port, raw_port = free_port(), free_port()
        generated = Service(
            "generated",
            [str(project.command), *uvicorn_options(generated_port, options.fast_loop)],
            project.root,
            service_env,
            generated_port,
            work / "generated.log",
        )
        raw_env = clean_environment() | {
            "BENCH_DATABASE_URL": postgres.dsn,
            "BENCH_RAW_POOL_SIZE": str(RAW_POOL_SIZE),
            "BENCH_APPLICATION_NAME": RAW_APPLICATION_NAME,
        }
        raw = Service(
            "raw",
            [
                *(str(project.python), "-m", "uvicorn", "raw_app:app"),
                *("--app-dir", str(BENCH_DIR)),
                *uvicorn_options(raw_port, options.fast_loop),
            ],
            work,
            raw_env,
            raw_port,
            work / "raw.log",
        )
        services = [generated, raw]
        for service in services:
            service.start("/openapi.json")
        ready_path = "/ready" if "/ready" in openapi_paths(generated) else "/health"
        check_same_answers(generated, raw, ready_path, log)
        reset_items(postgres)

        comparison = Comparison(
            endpoints(ready_path),
            options.concurrencies,
            options.fast_loop,
            postgres.version(),
            RAW_POOL_SIZE,
            generated_pool(project),
        )
        by_side = {"generated": generated, "raw": raw}
        _warm_up(comparison, by_side, postgres, wrk, options, log)
        _measure(comparison, by_side, postgres, wrk, options, log)
        _count_statements(comparison, by_side, postgres, options, log)
        return comparison
    finally:
        for service in services:
            service.stop()
        postgres.stop()


def logins(postgres: BenchPostgres, log_text: str, side: str) -> int:
    """New connections one side opened in this stretch of the log."""
    by_name = postgres.new_connections(log_text)
    raw = by_name[RAW_APPLICATION_NAME]
    return raw if side == "raw" else by_name.total() - raw


def generated_pool(project: Project) -> GeneratedPool:
    return GeneratedPool(project.pool_size, project.max_overflow)


def _wrk_args(endpoint: Endpoint, run_name: str) -> list[str]:
    if endpoint.key == "create":
        return [run_name]  # the names' prefix: unique per run
    if endpoint.key == "read":
        return [str(SEED_ROWS)]
    return []


def _warm_up(
    comparison: Comparison,
    services: dict[str, Service],
    postgres: BenchPostgres,
    wrk: str,
    options: Options,
    log: Callable[[str], None],
) -> None:
    """Fill both pools and both statement caches before anything is recorded,
    at the highest concurrency."""
    clients = max(comparison.concurrencies)
    log(f"warming up, {options.warmup_seconds:g} s per endpoint and side")
    for endpoint in comparison.endpoints:
        for side in SIDES:
            run_wrk(
                wrk,
                f"http://127.0.0.1:{services[side].port}",
                endpoint,
                _wrk_args(endpoint, f"{side}-warm-up"),
                options.warmup_seconds,
                options.threads,
                clients,
            )
        if endpoint.key == "create":
            reset_items(postgres)


def _measure(
    comparison: Comparison,
    services: dict[str, Service],
    postgres: BenchPostgres,
    wrk: str,
    options: Options,
    log: Callable[[str], None],
) -> None:
    """Each round runs every endpoint at every concurrency on both sides back
    to back, the order of the sides alternating from round to round."""
    for round_number in range(options.rounds):
        order = SIDES if round_number % 2 == 0 else SIDES[::-1]
        for endpoint in comparison.endpoints:
            for clients in comparison.concurrencies:
                for side in order:
                    run = _run(
                        services[side],
                        postgres,
                        wrk,
                        options,
                        endpoint,
                        clients,
                        round_number,
                    )
                    key = (endpoint.key, clients, side)
                    comparison.runs.setdefault(key, []).append(run)
                    cpu = run.cpu_ms_per_request
                    cpu_text = f"CPU {cpu:.2f} ms/request  " if cpu is not None else ""
                    log(
                        f"round {round_number + 1}/{options.rounds} "
                        f"{endpoint.label:<22} c{clients:<3} {side:<9} "
                        f"{run.result.requests_per_second:8.0f} req/s  "
                        f"p50 {run.result.p50_ms:6.1f} ms  "
                        f"p99 {run.result.p99_ms:6.1f} ms  {cpu_text}"
                        f"new connections {run.new_connections}"
                        f"{_problems(run.result)}"
                    )
            if endpoint.key == "create":
                reset_items(postgres)


def _run(
    service: Service,
    postgres: BenchPostgres,
    wrk: str,
    options: Options,
    endpoint: Endpoint,
    clients: int,
    round_number: int,
) -> Run:
    """One wrk run, with the logins and the server CPU time it cost."""
    offset = postgres.log_offset()
    cpu_before = service.cpu_seconds()
    result = run_wrk(
        wrk,
        f"http://127.0.0.1:{service.port}",
        endpoint,
        _wrk_args(endpoint, f"{service.name}-{round_number}-c{clients}"),
        options.seconds,
        options.threads,
        clients,
    )
    cpu_after = service.cpu_seconds()
    connections = logins(postgres, postgres.log_since(offset), service.name)
    cpu_ms = None
    if cpu_before is not None and cpu_after is not None:
        cpu_ms = (cpu_after - cpu_before) * 1000 / max(result.requests, 1)
    return Run(round_number, result, connections, cpu_ms)


def _problems(result: LoadResult) -> str:
    problems = []
    if result.bad_statuses:
        problems.append(f"{result.bad_statuses} non-2xx answers")
    if result.socket_errors:
        problems.append(f"{result.socket_errors} socket errors")
    return "  (" + ", ".join(problems) + ")" if problems else ""


def _count_statements(
    comparison: Comparison,
    services: dict[str, Service],
    postgres: BenchPostgres,
    options: Options,
    log: Callable[[str], None],
) -> None:
    """A separate run with every statement logged: exactly
    `counted_per_client` requests per client, per endpoint, concurrency and
    side."""
    with postgres.statement_log():
        for endpoint in comparison.endpoints:
            for clients in comparison.concurrencies:
                for side in SIDES:
                    postgres.settle()
                    offset = postgres.log_offset()
                    answered = send_exactly(
                        services[side].port,
                        endpoint,
                        clients * options.counted_per_client,
                        clients,
                        f"counted-{side}-c{clients}",
                        SEED_ROWS,
                    )
                    postgres.settle()
                    text = postgres.log_since(offset)
                    counted = Counted(
                        answered,
                        parse_statement_log(text),
                        logins(postgres, text, side),
                    )
                    comparison.counted[(endpoint.key, clients, side)] = counted
                    log(
                        f"statement log {endpoint.label:<22} c{clients:<3} "
                        f"{side:<9} {counted.round_trips:5.2f} round trips per "
                        f"request ({answered} requests answered 2xx)"
                    )
            if endpoint.key == "create":
                reset_items(postgres)

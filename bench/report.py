"""What the bench writes: a markdown report, a PNG chart and the raw numbers as
JSON, with the machine they came from."""

import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .compare import SIDES, Comparison, Counted, Key, Run
from .load import Endpoint
from .suite import SuiteResult

# Statements below this many per request are summed up as "others".
SHOWN_STATEMENT_SHARE = 0.05
STATEMENT_WIDTH = 60
COLOURS = {"generated": "#d9822b", "raw": "#4c72b0"}


@dataclass
class Results:
    started: str  # ISO 8601, UTC
    command: str
    settings: dict[str, Any]
    machine: dict[str, str] = field(default_factory=dict)
    comparison: Comparison | None = None
    suite: SuiteResult | None = None
    # `copier copy` times by where it renders from.
    copier_seconds: dict[str, list[float]] | None = None
    elapsed_seconds: float = 0.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def operating_system() -> str:
    try:
        name = platform.freedesktop_os_release()["PRETTY_NAME"]
    except OSError:
        name = platform.system()
    return f"{name}, kernel {platform.release()}"


def machine_basics() -> dict[str, str]:
    return {
        "CPU": f"{cpu_model()}, {os.cpu_count()} cores",
        "Memory": memory(),
        "OS": operating_system(),
        "Bench Python": platform.python_version(),
    }


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


# --- Numbers -----------------------------------------------------------------


def median_of(runs: list[Run], attribute: str) -> float:
    values: list[float] = [getattr(run.result, attribute) for run in runs]
    return statistics.median(values)


def ratios(comparison: Comparison, endpoint: Endpoint, clients: int) -> list[float]:
    """generated / raw req/s, round by round (the two runs of a round are
    neighbours in time, so drift on a busy machine cancels out)."""
    generated = comparison.runs[(endpoint.key, clients, "generated")]
    raw = comparison.runs[(endpoint.key, clients, "raw")]
    return [
        ours.result.requests_per_second / theirs.result.requests_per_second
        for ours, theirs in zip(generated, raw, strict=True)
    ]


def cpu_text(runs: list[Run]) -> str:
    values = [run.cpu_ms_per_request for run in runs]
    known = [value for value in values if value is not None]
    return f"{statistics.median(known):.2f}" if known else "-"


def connections_text(runs: list[Run]) -> str:
    counts = [run.new_connections for run in runs]
    middle = statistics.median(counts)
    text = f"{middle:g}"
    if min(counts) != max(counts):
        text += f" ({min(counts)}-{max(counts)})"
    return text


# --- Markdown ------------------------------------------------------------------


def markdown(results: Results, chart_name: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{results.command}` on {results.started} "
        f"in {results.elapsed_seconds / 60:.1f} min. Numbers from a busy machine "
        "are indicative: compare the ratios, measured side by side in one run, "
        "rather than absolute numbers across machines.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in results.machine.items()),
        "",
    ]
    if results.comparison is not None:
        lines += http_section(results.comparison, results.settings)
        lines += [f"![Benchmark chart]({chart_name})", ""]
        lines += statements_section(results.comparison, results.settings)
    if results.suite is not None:
        lines += suite_section(results.suite)
    if results.copier_seconds:
        lines += copier_section(results.copier_seconds)
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def clients_text(comparison: Comparison, clients: int) -> str:
    """A concurrency, and where it stands against the generated pool."""
    size = comparison.generated_pool.size
    if clients < size:
        return f"{clients} (< pool_size)"
    if clients == size:
        return f"{clients} (= pool_size)"
    return f"{clients} (> pool_size)"


def http_section(comparison: Comparison, settings: dict[str, Any]) -> list[str]:
    loop = "uvloop + httptools" if comparison.fast_loop else "asyncio + h11"
    concurrencies = " and ".join(f"-c{clients}" for clients in comparison.concurrencies)
    lines = [
        "## HTTP: the generated service against FastAPI + raw asyncpg",
        "",
        f"wrk -t{settings['threads']} at {concurrencies} concurrent clients, "
        f"{settings['seconds']:g} s per run, {plural(settings['rounds'], 'round')} "
        "(every endpoint at every concurrency on both sides per round, the "
        "sides' order alternating), loopback; one uvicorn worker per side with "
        f"{loop}, each app's default logging (access lines on). Generated pool: "
        f"{comparison.generated_pool} (the render's defaults); raw: an asyncpg "
        f"pool of {comparison.raw_pool_size} connections opened at start-up. "
        "Medians over the rounds; the ratio is generated / raw requests per "
        "second, round by round (median, and range). Server CPU: the service "
        "process's CPU time (user + system) during a run, per answered request "
        "(while a side's one worker uses a full core, its requests/s is about "
        "the inverse). Round trips from the statement log (below); new "
        "connections are logins logged by PostgreSQL during each run (see the "
        "note under the table).",
        "",
        "| Endpoint | Clients | Generated req/s | Raw req/s | Ratio "
        "| p50 ms gen / raw | p99 ms gen / raw "
        "| Server CPU ms per request gen / raw "
        "| Round trips per request gen / raw "
        "| New connections per run gen / raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for endpoint in comparison.endpoints:
        for clients in comparison.concurrencies:
            lines.append(http_row(comparison, endpoint, clients))
    lines += ["", new_connections_note(comparison), ""]
    return lines


def http_row(comparison: Comparison, endpoint: Endpoint, clients: int) -> str:
    generated = comparison.runs[(endpoint.key, clients, "generated")]
    raw = comparison.runs[(endpoint.key, clients, "raw")]
    per_round = ratios(comparison, endpoint, clients)
    ratio = f"**{statistics.median(per_round):.2f}**"
    if len(per_round) > 1:
        ratio += f" ({min(per_round):.2f}-{max(per_round):.2f})"
    trips = [comparison.counted.get((endpoint.key, clients, side)) for side in SIDES]
    trips_text = " / ".join(
        f"{counted.round_trips:.2f}" if counted else "-" for counted in trips
    )
    problems = sum(
        run.result.bad_statuses + run.result.socket_errors for run in generated + raw
    )
    label = endpoint.label + (f" ({problems} errors)" if problems else "")
    return (
        f"| `{label}` | {clients_text(comparison, clients)} "
        f"| {median_of(generated, 'requests_per_second'):,.0f} "
        f"| {median_of(raw, 'requests_per_second'):,.0f} "
        f"| {ratio} "
        f"| {median_of(generated, 'p50_ms'):.1f} / {median_of(raw, 'p50_ms'):.1f} "
        f"| {median_of(generated, 'p99_ms'):.1f} / {median_of(raw, 'p99_ms'):.1f} "
        f"| {cpu_text(generated)} / {cpu_text(raw)} "
        f"| {trips_text} "
        f"| {connections_text(generated)} / {connections_text(raw)} |"
    )


def new_connections_note(comparison: Comparison) -> str:
    """Why a run opens new connections, or does not: the pools' design."""
    pool = comparison.generated_pool
    if pool.max_overflow == 0:
        expected = (
            f"With {pool}, 0 is expected at every concurrency; another count "
            "means connections were lost and replaced (see the service's log)."
        )
    else:
        expected = (
            f"With {pool}, 0 is expected up to {pool.size} clients; above "
            "that, the count is the overflow's churn."
        )
    return (
        "**New connections.** Both pools were filled by a warm-up at the "
        "highest concurrency before anything was recorded. With at most "
        "pool_size concurrent requests, each finds an idle pooled connection, "
        "so a steady run opens none. Above pool_size it depends on "
        "max_overflow. With max_overflow=0 (the render's default), requests "
        "beyond pool_size wait in line for a returned connection (at most "
        "pool_timeout, in the order they asked) and no connection is opened: "
        "the wait shows in p50 and p99, not here. With max_overflow > 0, the "
        "pool opens up to max_overflow extra connections for the excess, and "
        "closes an extra connection as soon as it is returned while pool_size "
        "others sit idle (SQLAlchemy's QueuePool keeps at most pool_size), so a "
        "steady load above pool_size keeps opening and closing them, each a new "
        "login with a full scram-sha-256 handshake. The raw side's asyncpg pool "
        f"is fixed at {comparison.raw_pool_size} connections: above that, "
        f"requests wait and it opens none. {expected}"
    )


def statement_text(sql: str) -> str:
    if len(sql) > STATEMENT_WIDTH:
        sql = sql[: STATEMENT_WIDTH - 1] + "…"
    return "`" + sql.replace("`", "'").replace("|", "\\|") + "`"


def statements_section(comparison: Comparison, settings: dict[str, Any]) -> list[str]:
    if not comparison.counted:
        return []
    lines = [
        "### Statements per request",
        "",
        "A separate run with every statement logged (`log_min_duration_statement "
        f"= 0`): exactly {settings['counted_requests_per_client']} requests per "
        "client, per endpoint, concurrency and side, each client a keep-alive "
        "connection. A round trip is an executed statement or a prepare "
        "(asyncpg prepares each statement once per connection, and a new "
        "connection runs its own set-up statements); server time is what "
        "PostgreSQL logged for all phases, per request. Each counted run starts "
        "after a pause (the other side's run), so the generated pool's pre-ping "
        "pings each connection it hands out once (`SELECT 1`, see the render's "
        "db/engine.py): up to pool_size round trips per counted run that steady "
        "load does not pay.",
        "",
        "| Endpoint | Clients | Side | Round trips | Server ms "
        "| Statements, times per request |",
        "|---|---|---|---:|---:|---|",
    ]
    for endpoint in comparison.endpoints:
        for clients in comparison.concurrencies:
            for side in SIDES:
                counted = comparison.counted[(endpoint.key, clients, side)]
                lines.append(
                    f"| `{endpoint.label}` | {clients} | {side} "
                    f"| {counted.round_trips:.2f} "
                    f"| {counted.log.server_ms / counted.requests:.3f} "
                    f"| {statements_text(counted)} |"
                )
    lines.append("")
    return lines


def statements_text(counted: Counted) -> str:
    shown, others = [], 0.0
    for sql, times in counted.log.statements.items():
        share = times / counted.requests
        if share >= SHOWN_STATEMENT_SHARE:
            shown.append(f"{statement_text(sql)} {share:.2f}")
        else:
            others += share
    if counted.log.prepares:
        shown.append(f"prepare {counted.log.prepares / counted.requests:.2f}")
    if others:
        shown.append(f"others {others:.2f}")
    return " · ".join(shown)


def suite_section(suite: SuiteResult) -> list[str]:
    startup = ", ".join(f"{value:.1f}" for value in suite.startup_runs)
    many = ", ".join(f"{value:.1f}" for value in suite.many_runs)
    return [
        "## The generated test suite",
        "",
        "Each file run as `pytest <file>` in a fresh process (median of the runs). "
        "First run: one test in the fresh render, which prepares the migrated "
        "data folder later runs start from (.test-postgres/) and writes the "
        "imported modules' bytecode (PYTHONDONTWRITEBYTECODE unset, as on "
        "users' machines). Start-up: "
        "interpreter, imports, the embedded PostgreSQL from that folder and one "
        f"test. Per test: the {suite.tests}-test run less start-up, divided by "
        f"the {suite.tests - 1} extra tests, each a POST and a GET through the "
        "`client` fixture.",
        "",
        "| Measure | Time | Runs (s) |",
        "|---|---:|---|",
        f"| First run, one test | {suite.first_run:.2f} s | |",
        f"| Start-up, one test | {suite.startup:.2f} s | {startup} |",
        f"| {suite.tests} tests | {statistics.median(suite.many_runs):.2f} s | {many} |",
        f"| Per test | {suite.per_test * 1000:.1f} ms | |",
        "",
    ]


def copier_section(seconds: dict[str, list[float]]) -> list[str]:
    lines = [
        "## Rendering",
        "",
        "`copier copy --defaults` as a command (Copier run by Python), from this "
        "working tree: as a one-commit git repository, which Copier clones first "
        "(`--vcs-ref HEAD`), as users render it, and as a plain folder. "
        "PYTHONDONTWRITEBYTECODE unset, as on users' machines.",
        "",
        "| Rendered from | Median | Runs (s) |",
        "|---|---:|---|",
    ]
    for source, times in seconds.items():
        runs = ", ".join(f"{value:.2f}" for value in times)
        lines.append(f"| {source} | {statistics.median(times):.2f} s | {runs} |")
    lines.append("")
    return lines


# --- Chart ---------------------------------------------------------------------


def chart(results: Results, path: Path) -> None:
    comparison = results.comparison
    if comparison is None:
        return
    figure = Figure(figsize=(14, 8.5), layout="constrained")
    panels = figure.subplots(2, 2).flatten()
    groups = [
        (endpoint, clients)
        for endpoint in comparison.endpoints
        for clients in comparison.concurrencies
    ]
    labels = [f"{endpoint.label}\n{clients} clients" for endpoint, clients in groups]
    positions = list(range(len(groups)))
    width = 0.38

    def runs_median(attribute: str) -> Callable[[str, int, str], float]:
        return lambda key, clients, side: median_of(
            comparison.runs[(key, clients, side)], attribute
        )

    def new_connections(key: str, clients: int, side: str) -> float:
        counts = [run.new_connections for run in comparison.runs[(key, clients, side)]]
        return statistics.median(counts)

    def round_trips(key: str, clients: int, side: str) -> float:
        counted = comparison.counted.get((key, clients, side))
        return counted.round_trips if counted else 0.0

    measures: list[tuple[str, Callable[[str, int, str], float], str]] = [
        (
            "Requests per second (higher is better)",
            runs_median("requests_per_second"),
            "%.0f",
        ),
        ("p99 latency, ms (lower is better)", runs_median("p99_ms"), "%.0f"),
        ("Round trips per request (statement log)", round_trips, "%.1f"),
        ("New connections per run (median)", new_connections, "%.0f"),
    ]
    for panel, (title, value_of, label_format) in zip(panels, measures, strict=True):
        for offset, side in ((-width / 2, "generated"), (width / 2, "raw")):
            values = [
                value_of(endpoint.key, clients, side) for endpoint, clients in groups
            ]
            bars = panel.bar(
                [position + offset for position in positions],
                values,
                width,
                label="generated" if side == "generated" else "FastAPI + raw asyncpg",
                color=COLOURS[side],
            )
            panel.bar_label(bars, fmt=label_format, fontsize=7)
        panel.set_title(title, fontsize=10)
        panel.set_xticks(positions, labels, rotation=20, fontsize=7)
        # From 0, with room for a label even when every bar is 0.
        panel.set_ylim(0, max(panel.get_ylim()[1], 1))
    panels[0].legend(fontsize=8)
    ratio_text = " · ".join(
        f"{endpoint.key} "
        + " / ".join(
            f"{statistics.median(ratios(comparison, endpoint, clients)):.2f}"
            for clients in comparison.concurrencies
        )
        for endpoint in comparison.endpoints
    )
    concurrencies = " / ".join(f"c{clients}" for clients in comparison.concurrencies)
    loop = "uvloop + httptools" if comparison.fast_loop else "asyncio + h11"
    figure.suptitle(
        "Generated service vs FastAPI + raw asyncpg, requests/s ratio at "
        f"{concurrencies}: {ratio_text}\n{results.machine.get('CPU', '')}; wrk "
        f"-t{results.settings['threads']}; generated {comparison.generated_pool}, "
        f"raw pool {comparison.raw_pool_size}; {loop}; {results.started}",
        fontsize=10,
    )
    figure.savefig(path, dpi=110)


# --- JSON ------------------------------------------------------------------------


def raw_numbers(results: Results) -> dict[str, Any]:
    data: dict[str, Any] = {
        "started": results.started,
        "command": results.command,
        "elapsed_seconds": results.elapsed_seconds,
        "settings": results.settings,
        "machine": results.machine,
        "copier_seconds": results.copier_seconds,
        "suite": asdict(results.suite) if results.suite else None,
    }
    comparison = results.comparison
    if comparison is not None:
        data["http"] = {
            "postgres": comparison.postgres_version,
            "fast_loop": comparison.fast_loop,
            "generated_pool": asdict(comparison.generated_pool),
            "raw_pool_size": comparison.raw_pool_size,
            "concurrencies": comparison.concurrencies,
            "endpoints": {
                endpoint.key: {
                    "label": endpoint.label,
                    # By concurrent clients, then side.
                    "clients": {
                        str(clients): {
                            side: {
                                "runs": [
                                    asdict(run)
                                    for run in comparison.runs[
                                        (endpoint.key, clients, side)
                                    ]
                                ],
                                "counted": _counted(
                                    comparison, (endpoint.key, clients, side)
                                ),
                            }
                            for side in SIDES
                        }
                        for clients in comparison.concurrencies
                    },
                }
                for endpoint in comparison.endpoints
            },
        }
    return data


def _counted(comparison: Comparison, key: Key) -> dict[str, Any] | None:
    counted = comparison.counted.get(key)
    if counted is None:
        return None
    return {
        "requests": counted.requests,
        "round_trips_per_request": counted.round_trips,
        "prepares": counted.log.prepares,
        "server_ms": counted.log.server_ms,
        "new_connections": counted.new_connections,
        "statements": dict(counted.log.statements),
    }


def write(results: Results, directory: Path, name: str = "latest") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    chart_path = directory / f"{name}.png"
    chart(results, chart_path)
    report = directory / f"{name}.md"
    report.write_text(markdown(results, chart_path.name))
    numbers = json.dumps(raw_numbers(results), indent=1, default=str)
    (directory / f"{name}.json").write_text(numbers + "\n")
    return report

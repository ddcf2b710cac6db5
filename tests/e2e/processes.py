"""Real processes for end-to-end tests: the `hc-coordinator` and `hc-agent` commands, free ports,
waiting for a server to answer, and stopping a process with a signal.

Commands run from the same virtualenv as the tests: the console script next to sys.executable
when it is installed there, else `python -m <package>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiohttp import web


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class HttpTarget:
    """A probe target: answers `status` with "ok" on every path, and counts the requests."""

    url: str = ""
    status: int = 200
    hits: list[str] = field(default_factory=list)


@contextlib.contextmanager
def http_target() -> Iterator[HttpTarget]:
    """An aiohttp server on 127.0.0.1, on a thread and event loop of its own, so that a test
    that blocks (a subprocess, a CliRunner running its own loop) does not stall it."""
    state = HttpTarget()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def answer(request: web.Request) -> web.Response:
        state.hits.append(request.path)
        return web.Response(status=state.status, text="ok")

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        return runner

    def main() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, name="http-target", daemon=True)
    thread.start()
    if not started.wait(10):
        raise AssertionError("the HTTP target did not start")
    try:
        yield state
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _command(script: str, module: str) -> list[str]:
    installed = Path(sys.executable).with_name(script)
    return [str(installed)] if installed.exists() else [sys.executable, "-m", module]


def agent_command(*args: str) -> list[str]:
    return [*_command("hc-agent", "agent"), *args]


def coordinator_command(*args: str) -> list[str]:
    return [*_command("hc-coordinator", "coordinator.cli"), *args]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without HC_* settings of the machine running the tests, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HC_")}
    env.update(extra or {})
    return env


def run(command: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 60) -> str:
    """Runs a command to its end; returns its stdout, or fails with what it printed."""
    done = subprocess.run(list(command), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_for_http(url: str, process: subprocess.Popen[str] | None = None, timeout: float = 30) -> None:
    """Waits until `url` answers 200; fails early when `process` exits first."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited {process.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout}s (last: {last})")


def stop_process(process: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Sends `sig` and waits for the exit; kills it past `timeout`. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class Coordinator:
    url: str
    process: subprocess.Popen[str]
    env: dict[str, str]
    cwd: Path
    log_file: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def database_file(self) -> Path:
        """The SQLite file `serve` keeps in its HC_DATA_DIR (the working directory here)."""
        return self.cwd / "coordinator.db"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def cli(self, *args: str) -> str:
        """Runs `hc-coordinator <args>` on this coordinator's database."""
        return run(coordinator_command(*args), env=self.env, cwd=self.cwd).strip()

    def stop(self) -> int:
        return stop_process(self.process)


def start_coordinator(data_dir: Path, env: Mapping[str, str] | None = None, port: int | None = None) -> Coordinator:
    """`hc-coordinator serve` on `port` (default: a free one), keeping its SQLite file in `data_dir`.

    Starting it again on the same `data_dir` and `port` is a restart: the log file is appended to."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    full_env = clean_env({"HC_DATA_DIR": str(data_dir), "HC_LOG_LEVEL": "warning", **(env or {})})
    log_file = data_dir / "coordinator.log"
    # A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks the server.
    with log_file.open("a") as log:
        process = subprocess.Popen(
            coordinator_command("serve", "--host", "127.0.0.1", "--port", str(port)),
            env=full_env,
            cwd=data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", process)
    except AssertionError as exc:
        stop_process(process)
        raise AssertionError(f"{exc}\n{log_file.read_text(errors='replace')}") from None
    return Coordinator(url=url, process=process, env=full_env, cwd=data_dir, log_file=log_file)

"""Workers end with the server process: by the kernel's parent-death signal on Linux, and by the
lifeline pipe everywhere, each shown on its own."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from devprov.cli.worker import parent_gone

ROOT = Path(__file__).resolve().parents[2]


def test_parent_gone_returns_when_the_writing_end_closes() -> None:
    reader, writer = multiprocessing.get_context("spawn").Pipe(duplex=False)

    async def scenario() -> tuple[bool, bool]:
        waiting = asyncio.ensure_future(parent_gone(reader))
        await asyncio.sleep(0.3)
        before = waiting.done()  # the twin: the server lives, the worker keeps serving
        writer.close()
        await asyncio.wait_for(waiting, 5)
        return before, waiting.done()

    assert asyncio.run(scenario()) == (False, True)
    reader.close()


def _lifeline_only(lifeline: Connection, parent: int) -> None:
    """A worker without the parent-death signal: only the lifeline can end it."""
    print("ready", flush=True)
    asyncio.run(parent_gone(lifeline))


def test_the_lifeline_alone_ends_a_worker_whose_server_was_killed() -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import time
                from devprov.cli.worker import start_worker
                from tests.cli.test_worker import _lifeline_only
                worker = start_worker(_lifeline_only)
                print(worker.process.pid, flush=True)
                time.sleep(600)
                """
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    worker = int(server.stdout.readline())
    assert server.stdout.readline() == "ready\n"
    server.kill()
    server.wait()
    deadline = time.monotonic() + 1.0
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    survived = _alive(worker)
    if survived:
        os.kill(worker, signal.SIGKILL)
    server.stdout.close()
    assert not survived, "the worker outlived its server without the parent-death signal"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
@pytest.mark.parametrize(
    ("parent", "expected"),
    [
        pytest.param("os.getppid()", "set 15\n", id="ok/parent-alive"),
        pytest.param("1", "", id="fail/parent-already-gone"),
    ],
)
def test_end_with_parent(parent: str, expected: str) -> None:
    """The parent-death signal is SIGTERM; a worker whose parent died before it could ask for
    it (it is then someone else's child) exits at once."""
    script = f"""
        import ctypes, os
        from devprov.cli.worker import end_with_parent
        end_with_parent({parent})
        libc = ctypes.CDLL(None)
        signal = ctypes.c_int()
        libc.prctl(2, ctypes.byref(signal), 0, 0, 0)  # PR_GET_PDEATHSIG
        print("set", signal.value)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, expected), done.stderr

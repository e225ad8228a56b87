"""Worker processes of ``devprov serve --workers N``: started by the server, ended with it.

A worker serves on the listening sockets the server process bound (``devprov.http.listener``),
passed as file descriptors when it starts. It must not outlive that process: a worker left
behind by ``kill -9`` would keep the port and answer with whatever state it last loaded. Two
mechanisms end it, both as SIGTERM would (stop listening, finish the requests in flight):

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` has the kernel signal the worker when the
  process that started it dies (prctl(2));
- everywhere, a pipe whose only writing end the server holds: when the server dies, however it
  dies, the kernel closes that end and the worker reads end-of-file (pipe(7)).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

# <linux/prctl.h>: the signal the calling process gets when its parent dies.
PR_SET_PDEATHSIG = 1


@dataclass
class Worker:
    """A started worker and the server's end of its lifeline."""

    process: BaseProcess
    lifeline: Connection


def start_worker(target: Callable[..., None], *args: Any) -> Worker:
    """Start ``target(*args, lifeline, parent_pid)`` in a new process: spawned, so it shares no
    state with this one beyond its arguments (sockets among them are passed as descriptors);
    ``target`` calls :func:`end_with_parent` and watches :func:`parent_gone`."""
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(*args, reader, os.getpid()), daemon=True)
    process.start()
    reader.close()  # the worker holds the reading end; this process only the writing one
    return Worker(process, writer)


def stop_workers(workers: list[Worker]) -> None:
    """Ask each worker to stop as SIGTERM does: stop listening, finish the requests in flight."""
    for worker in workers:
        worker.process.terminate()


def wait_for_workers(workers: list[Worker], timeout: float) -> None:
    """Wait up to ``timeout`` seconds for each worker to end; then let go of its lifeline."""
    for worker in workers:
        worker.process.join(timeout=timeout)
        worker.lifeline.close()


def end_with_parent(parent: int) -> None:
    """In a worker: have the kernel send SIGTERM when the server process dies (Linux), and exit
    at once if it died before this call took effect."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        raise SystemExit(0)


async def parent_gone(lifeline: Connection) -> None:
    """In a worker: return when the server process has closed its end of the lifeline, that is,
    when it has ended."""
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    descriptor = lifeline.fileno()

    def readable() -> None:
        try:
            data = os.read(descriptor, 64)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(descriptor)
            gone.set()

    loop.add_reader(descriptor, readable)
    try:
        await gone.wait()
    finally:
        loop.remove_reader(descriptor)

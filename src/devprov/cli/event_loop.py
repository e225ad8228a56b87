"""The event loop ``devprov serve`` and its worker processes run on: uvloop's where it is
installed, asyncio's own otherwise (docs/performance.md#the-device-path-outside-the-use-case).

uvloop runs the same protocols and transports in C (libuv): the TLS stays pyOpenSSL's over memory
BIOs, the transports carry bytes only. Measured on the HTTPS server, it takes about a tenth off
the server's CPU per new connection. Where it cannot be imported (a platform without a wheel)
the server runs as before; the listeners accept alike on both (devprov.transport.accept).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop of :func:`loop_factory`."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)

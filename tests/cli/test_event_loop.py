"""cli.event_loop: devprov serve's loop is uvloop's where uvloop imports, asyncio's otherwise."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from devprov.cli import event_loop


async def loop_type() -> type[asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_serve_runs_on_uvloop_where_it_is_installed() -> None:
    assert issubclass(event_loop.run(loop_type()), uvloop.Loop)


def test_without_uvloop_serve_runs_on_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert event_loop.loop_factory() is None
    ran = event_loop.run(loop_type())
    assert issubclass(ran, asyncio.BaseEventLoop) and not issubclass(ran, uvloop.Loop)

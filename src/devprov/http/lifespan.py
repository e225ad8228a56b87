"""The ASGI lifespan protocol, as the HTTPS server runs it for its app.

Startup runs before the first listener opens and shutdown after the last connection closed;
what startup leaves in ``state`` every request's scope gets a shallow copy of.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from devprov.http.asgi import AsgiApp, Message

# The server's one logger: operators configure it by this name, whichever module logs.
logger = logging.getLogger("devprov.http.server")


class LifespanStartupFailed(RuntimeError):
    """The app answered lifespan.startup with lifespan.startup.failed."""


class Lifespan:
    """The app's lifespan protocol. An app that raises instead is taken not to support it."""

    def __init__(self, app: AsgiApp) -> None:
        self.state: dict[str, Any] = {}
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Run the app's startup; raises :class:`LifespanStartupFailed` if it reports failure."""
        self._task = asyncio.ensure_future(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._started.wait()
        if self._failure is not None:
            raise LifespanStartupFailed(self._failure)

    async def shutdown(self) -> None:
        """Run the app's shutdown, if its lifespan is still running, and end it."""
        if self._task is None:
            return
        if not self._task.done():
            await self._inbox.put({"type": "lifespan.shutdown"})
            await self._stopped.wait()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        try:
            await self._app(scope, self._inbox.get, self._send)
        except Exception:
            if self._started.is_set():
                logger.exception("ASGI lifespan failed")
            else:  # as uvicorn's lifespan "auto": an app without lifespan raises on the scope
                logger.info("ASGI lifespan protocol appears unsupported")
                logger.debug("the app's answer to the lifespan scope", exc_info=True)
        finally:
            self._started.set()
            self._stopped.set()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            logger.error("%s: %s", kind, message.get("message", ""))
        if kind == "lifespan.startup.failed":
            self._failure = str(message.get("message", "")) or "lifespan startup failed"
        if kind.startswith("lifespan.startup."):
            self._started.set()
        elif kind.startswith("lifespan.shutdown."):
            self._stopped.set()

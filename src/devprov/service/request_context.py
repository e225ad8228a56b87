"""The request being served, for the log: its tracking id, carried in a context variable so that
every line logged while serving it can name it without passing it down every call.

asyncio gives each task a copy of the context it was created in, and Starlette's worker threads
run in a copy of the caller's: the id set for one request is never seen by another.
"""

from __future__ import annotations

from contextvars import ContextVar

# The tracking id of the request being served (DPS's x-ms-request-id, or an MQTT request's);
# None outside any request.
request_id: ContextVar[str | None] = ContextVar("devprov_request_id", default=None)

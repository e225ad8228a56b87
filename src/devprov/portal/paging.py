"""How the portal's lists are paged: the page size a request asks for, and the query a "Next
page" link keeps.

Every list is read one page at a time from the database, by a cursor (the last key shown), never
by OFFSET and never with a count, so a page costs the same at the start of 100,000 records as
deep inside them (docs/portal.md#enrollments).
"""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request

# Rows per page unless the URL says ``size``: a screenful on a laptop.
DEFAULT_PAGE_SIZE = 50
# The most a URL may ask for: one page must stay quick to read and render.
MAX_PAGE_SIZE = 200


def page_size(request: Request) -> int:
    """``?size=`` within 1 to MAX_PAGE_SIZE; the default for anything else."""
    value = request.query_params.get("size", "")
    if not value.isdigit():
        return DEFAULT_PAGE_SIZE
    return max(1, min(int(value), MAX_PAGE_SIZE))


def query_string(request: Request, *names: str) -> str:
    """The request's parameters among ``names`` that have a value, URL-encoded, to carry into
    the next page's link (``after`` is the pager's own)."""
    kept = [(n, request.query_params[n]) for n in names if request.query_params.get(n)]
    return urllib.parse.urlencode(kept)

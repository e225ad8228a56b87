"""Helpers of the portal page tests: forms posted with the page's CSRF token, and the links a
page shows."""

from __future__ import annotations

import html
import re
from typing import Any

from starlette.testclient import TestClient

from tests.portal.conftest import csrf_of

_LINK = re.compile(r'<a [^>]*?href="([^"]+)"[^>]*>([^<]*)</a>')


def post_form(
    client: TestClient,
    page: str,
    action: str,
    data: dict[str, str],
    files: dict[str, Any] | None = None,
) -> Any:
    """POST ``data`` to ``action`` with the CSRF token of ``page`` (as a browser would)."""
    token = csrf_of(client.get(page).text)
    return client.post(action, data={"csrf": token, **data}, files=files)


def link_named(text: str, name: str) -> str | None:
    """The href of the link whose text is ``name``, unescaped; None without one."""
    for href, label in _LINK.findall(text):
        if html.unescape(label).strip() == name:
            return html.unescape(href)
    return None

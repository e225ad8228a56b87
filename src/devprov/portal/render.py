"""Rendering pages: one Jinja2 environment with autoescaping on, and the context every page gets.

Autoescaping is on for every template, so a certificate name or subject with HTML in it is shown
as text; nothing is marked safe by hand. The layout (``base.html``) needs the signed-in session
(for the sign-out form's CSRF token) and the service being looked at, when there is one.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from devprov.portal.session import Session

PREFIX = "/portal"

_environment = Environment(
    loader=PackageLoader("devprov.portal", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a misspelt name in a template fails its test, not silently
    trim_blocks=True,
    lstrip_blocks=True,
)


def url(path: str = "") -> str:
    """The portal's own URL for ``path`` (``url("services")`` is ``/portal/services``)."""
    return f"{PREFIX}/{path.lstrip('/')}"


_environment.globals["url"] = url


def render(
    request: Request,
    template: str,
    *,
    session: Session | None,
    service: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    page = _environment.get_template(template).render(
        request=request,
        session=session,
        service=service,
        **context,
    )
    return HTMLResponse(page, status_code=status_code, headers=SECURITY_HEADERS)


# Every page: no framing (clickjacking), no sniffing, nothing cached, scripts and styles only from
# the portal itself (https://owasp.org/www-project-secure-headers/).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

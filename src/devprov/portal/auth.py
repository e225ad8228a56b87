"""Signing in and out of the portal.

Sign-in takes the data directory's admin token (the one ``devprov serve`` printed when it created
it, and ``devprov info`` shows). A successful sign-in sets the session cookie and goes to the page
the operator asked for (only a portal path: an open redirect would hand the session's first page
to another site). Sign-out is a POST with the session's CSRF token, so another site cannot sign an
operator out.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from devprov.portal.page import Endpoint, Page, Portal, read_form
from devprov.portal.render import PREFIX, render, url
from devprov.portal.session import COOKIE, LIFETIME, PATH


def safe_next(value: object) -> str:
    """``value`` when it is a path inside the portal, else the portal's first page."""
    if (
        isinstance(value, str)
        and value.startswith(f"{PREFIX}/")
        and not value.startswith("//")
        and "\\" not in value
        and all(ord(c) > 0x20 for c in value)
    ):
        return value
    return url("services")


def sign_in_page(portal: Portal) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            if portal.sessions.read(request.cookies.get(COOKIE)) is not None:
                return RedirectResponse(safe_next(request.query_params.get("next")), 303)
            return render(
                request,
                "sign_in.html",
                session=None,
                next=safe_next(request.query_params.get("next")),
                error=None,
            )
        form = await read_form(request)
        token = form.get("token")
        target = safe_next(form.get("next"))
        if isinstance(token, str) and token and portal.container.is_admin_token(token.strip()):
            _, cookie = portal.sessions.issue("admin")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE,
                cookie,
                max_age=int(LIFETIME.total_seconds()),
                path=PATH,
                secure=True,
                httponly=True,
                samesite="strict",
            )
            return response
        return render(
            request,
            "sign_in.html",
            session=None,
            status_code=401,
            next=target,
            error="That admin token is not this server's. Nothing was signed in.",
        )

    return endpoint


async def sign_out(request: Request, page: Page) -> Response:
    response = RedirectResponse(url("sign-in"), status_code=303)
    response.delete_cookie(COOKIE, path=PATH, secure=True, httponly=True, samesite="strict")
    return response

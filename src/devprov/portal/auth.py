"""Signing in and out of the portal.

Sign-in takes the data directory's admin token (the one ``devprov serve`` printed when it created
it, and ``devprov info`` shows), or the name and password of a user ``devprov user add`` made. A
failure never says which of the two was wrong, and failures are limited per client address and
per user name (core.sign_in_limit): past the limit the answer is 429 with Retry-After, and
nothing is checked. The form carries a token of its own, bound to a pre-session cookie, so that
another site cannot sign a browser in (session.py). A successful sign-in sets the session cookie
and goes to the page the operator asked for (only a portal path: an open redirect would hand the
session's first page to another site). Sign-out is a POST with the session's CSRF token, so
another site cannot sign an operator out, and it deletes the session, so a copy of the cookie
stops working too.
"""

from __future__ import annotations

import logging
import math

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from devprov.core.error import DevprovError
from devprov.core.sign_in_limit import address_key, user_key
from devprov.portal.page import CSRF_FIELD, Endpoint, Page, Portal, error_page, read_form
from devprov.portal.render import PREFIX, render, url
from devprov.portal.session import (
    COOKIE,
    LIFETIME,
    PATH,
    SIGN_IN_COOKIE,
    SIGN_IN_FORM_LIFETIME,
    Session,
)

log = logging.getLogger("devprov.portal")

# Both cookies: sent over HTTPS only, never to scripts, never on requests another site starts.
_SECURE = True

REFUSED_ADMIN = "That admin token is not this server's. Nothing was signed in."
REFUSED_USER = (
    "That user name and password do not match a user of this server. Nothing was signed in."
)
STALE_FORM = (
    "The sign-in form had expired, or did not come from this server, so nothing was checked. "
    "Sign in again with this form."
)


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
        try:
            if request.method == "GET":
                if await portal.sessions.read(request.cookies.get(COOKIE)) is not None:
                    return RedirectResponse(safe_next(request.query_params.get("next")), 303)
                return await _form(portal, request, safe_next(request.query_params.get("next")))
            return await _sign_in(portal, request, await read_form(request))
        except DevprovError as exc:
            return error_page(request, None, exc)

    return endpoint


async def _sign_in(portal: Portal, request: Request, form: FormData) -> Response:
    target = safe_next(form.get("next"))
    with_token = "token" in form
    user = "" if with_token else _text(form.get("user")).strip()
    if not await portal.sessions.is_sign_in_form(
        request.cookies.get(SIGN_IN_COOKIE), form.get(CSRF_FIELD)
    ):
        return await _form(portal, request, target, user=user, error=STALE_FORM, status_code=403)
    address = request.client.host if request.client else None
    keys = [address_key(address)] + ([] if with_token else [user_key(user)])
    wait = portal.sign_in_limit.retry_after(keys, now=portal.clock())
    if wait is not None:
        minutes = max(1, math.ceil(wait.total_seconds() / 60))
        error = (
            "Too many failed sign-ins from this address or for this user name. Nothing was "
            f"checked; try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
        response = await _form(portal, request, target, user=user, error=error, status_code=429)
        response.headers["Retry-After"] = str(max(1, math.ceil(wait.total_seconds())))
        return response
    if with_token:
        token = _text(form.get("token")).strip()
        valid = bool(token) and portal.container.is_admin_token(token)
        opened = await portal.sessions.issue("admin") if valid else None
    else:
        opened = await portal.sessions.sign_in_user(user, _text(form.get("password")))
    if opened is None:
        portal.sign_in_limit.fail(keys, now=portal.clock())
        log.info(
            "portal sign-in refused from %s (%s)", address, "admin token" if with_token else "user"
        )
        error = REFUSED_ADMIN if with_token else REFUSED_USER
        return await _form(portal, request, target, user=user, error=error, status_code=401)
    if not with_token:
        portal.sign_in_limit.forget(user_key(user))  # not the address's count: see the limit
    return _signed_in(target, *opened)


def _signed_in(target: str, session: Session, cookie: str) -> Response:
    log.info("portal sign-in of %s", session.operator)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(LIFETIME.total_seconds()),
        path=PATH,
        secure=_SECURE,
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(
        SIGN_IN_COOKIE, path=PATH, secure=_SECURE, httponly=True, samesite="strict"
    )
    return response


async def _form(
    portal: Portal,
    request: Request,
    target: str,
    *,
    user: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The sign-in page, with a new form token and its pre-session cookie."""
    cookie, token = await portal.sessions.new_sign_in_form()
    response = render(
        request,
        "sign_in.html",
        session=None,
        status_code=status_code,
        next=target,
        error=error,
        user=user,
        sign_in_token=token,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        cookie,
        max_age=int(SIGN_IN_FORM_LIFETIME.total_seconds()),
        path=PATH,
        secure=_SECURE,
        httponly=True,
        samesite="strict",
    )
    return response


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


async def sign_out(request: Request, page: Page) -> Response:
    await page.portal.sessions.end(request.cookies.get(COOKIE))
    log.info("portal sign-out of %s", page.session.operator)
    response = RedirectResponse(url("sign-in"), status_code=303)
    response.delete_cookie(COOKIE, path=PATH, secure=_SECURE, httponly=True, samesite="strict")
    return response

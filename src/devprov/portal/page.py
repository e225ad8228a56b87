"""What every portal page shares: the signed-in guard, CSRF on every form, errors in the page.

A handler is ``async def handler(request: Request, page: Page) -> Response``; :func:`guarded`
turns it into a Starlette endpoint that
- redirects to the sign-in page when the request has no valid session (nothing of the portal is
  visible without one);
- refuses a POST whose form lacks the session's CSRF token (403, and nothing is changed);
- shows a :class:`DevprovError` the handler did not handle itself as a message in the page, with
  the HTTP status of its kind (core.error.STATUS), never as a stack trace.
"""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from devprov.bootstrap import Container
from devprov.core.error import STATUS, DevprovError
from devprov.portal.render import render, url
from devprov.portal.session import COOKIE, Session, SessionSigner

P = ParamSpec("P")
T = TypeVar("T")

CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Portal:
    """What the portal's handlers are built with."""

    container: Container
    sessions: SessionSigner


@dataclass(frozen=True)
class Page:
    """One signed-in request: the session, and the use cases to call on the storage threads."""

    portal: Portal
    session: Session

    @property
    def container(self) -> Container:
        return self.portal.container

    @property
    def actor(self) -> str:
        """Who the audit log names for a change made from this page."""
        return f"portal:{self.session.operator}"

    async def run(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A use case on a storage thread (never on the event loop: storage.executor)."""
        return await self.container.storage.run(call, *args, **kwargs)

    def render(
        self,
        request: Request,
        template: str,
        *,
        service: str | None = None,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        return render(
            request,
            template,
            session=self.session,
            service=service,
            status_code=status_code,
            **context,
        )


Handler = Callable[[Request, Page], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += f"?{request.url.query}"
    query = urllib.parse.urlencode({"next": target}) if request.method == "GET" else ""
    return RedirectResponse(url("sign-in") + (f"?{query}" if query else ""), status_code=303)


def guarded(portal: Portal, handler: Handler) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        session = portal.sessions.read(request.cookies.get(COOKIE))
        if session is None:
            return sign_in_redirect(request)
        page = Page(portal, session)
        if request.method != "POST":
            return await _answer(request, page, handler)
        # Starlette spools each uploaded file to a temporary file and leaves closing it to the
        # application: closed here, whatever the handler did.
        form = await read_form(request)
        try:
            if not has_csrf_token(form, session):
                return page.render(
                    request,
                    "error.html",
                    status_code=403,
                    title="Form refused",
                    message=(
                        "The form did not carry this session's security token, so nothing was "
                        "changed. Reload the page and send the form again."
                    ),
                    code="CsrfTokenMissing",
                )
            return await _answer(request, page, handler)
        finally:
            await form.close()

    return endpoint


async def _answer(request: Request, page: Page, handler: Handler) -> Response:
    """The handler's response, or the page of the DevprovError it let through."""
    try:
        return await handler(request, page)
    except DevprovError as exc:
        service = request.path_params.get("service")
        return page.render(
            request,
            "error.html",
            service=service if isinstance(service, str) else None,
            status_code=STATUS[exc.kind],
            title="That did not work",
            message=exc.message,
            code=f"{exc.code} ({exc.number})",
        )


def has_csrf_token(form: FormData, session: Session) -> bool:
    sent = form.get(CSRF_FIELD)
    return isinstance(sent, str) and hmac.compare_digest(sent, session.csrf_token)


# The most form fields and files one portal form may carry: the largest form, an enrollment
# with its certificates, has fewer than 40 fields and two files.
MAX_FORM_FIELDS = 64
MAX_FORM_FILES = 4


async def read_form(request: Request) -> FormData:
    """The request's form (parsed once; Starlette keeps it for the handler)."""
    return await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)

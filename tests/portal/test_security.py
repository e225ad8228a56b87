"""The portal's security rules, each with its negative control: nothing without a session (every
route of the app's own table), CSRF on every form and on sign-in, the cookie flags, the sign-in
limit, server-side sessions (sign-out, a second instance, a removed user), escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.core.sign_in_limit import FAILURES_PER_WINDOW, WINDOW
from devprov.http.app import build_app, build_starlette_app
from devprov.portal import app as portal_app
from devprov.portal.session import COOKIE, SIGN_IN_COOKIE
from tests import factory as f
from tests.conftest import Clock
from tests.portal.conftest import BASE_URL, csrf_of, sign_in, sign_in_form

PASSWORD = "a long enough passphrase"
# What the paths' parameters are filled with: a service that exists, and names that need not.
PARAMETERS = {"service": "default"}
# Routes open without a session, and why: the sign-in page itself, and the stylesheet and
# script every page (the sign-in page too) loads, which hold nothing of any installation.
OPEN = ("/portal/sign-in", "/portal/static")


def portal_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route under /portal in a route table, mounts followed."""
    for route in routes:
        if isinstance(route, Mount):
            path = prefix + route.path
            if path.startswith("/portal") and not path.startswith(OPEN):
                yield from portal_routes(route.routes, path)
        elif isinstance(route, Route):
            path = prefix + route.path
            if path.startswith("/portal") and not path.startswith(OPEN):
                yield path, set(route.methods or {"GET"}) - {"HEAD"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PARAMETERS.get(m.group(1), "x"), path)


def every_portal_request(container: Container) -> list[tuple[str, str]]:
    found = [
        (method, concrete(path))
        for path, methods in portal_routes(build_starlette_app(container).routes)
        for method in sorted(methods)
    ]
    assert ("GET", "/portal/services") in found and ("POST", "/portal/sign-out") in found
    return found


def test_every_portal_route_redirects_to_sign_in_without_a_session(
    anonymous: TestClient, container: Container
) -> None:
    for method, path in every_portal_request(container):
        answer = anonymous.request(method, path, data={"csrf": "x"} if method == "POST" else None)
        assert answer.status_code == 303, (method, path)
        assert answer.headers["location"].startswith("/portal/sign-in"), (method, path)
        assert "set-cookie" not in answer.headers, (method, path)


def test_every_portal_route_answers_with_a_session(signed_in: TestClient, container) -> None:
    """The twin of the test above: the same GETs, signed in, are not sent to sign in."""
    for method, path in every_portal_request(container):
        if method == "GET":
            answer = signed_in.get(path)
            assert not answer.headers.get("location", "").startswith("/portal/sign-in"), path


@pytest.mark.parametrize("sent", [None, "wrong"], ids=["fail/missing", "fail/wrong"])
def test_every_form_post_without_the_sessions_csrf_token_is_refused(
    signed_in: TestClient, container: Container, sent: str | None
) -> None:
    before = container.audit.events(limit=1000)
    for method, path in every_portal_request(container):
        if method == "POST":
            answer = signed_in.post(path, data={} if sent is None else {"csrf": sent})
            assert answer.status_code == 403, path
            assert "security token" in answer.text
    assert signed_in.get("/portal/services").status_code == 200  # still signed in
    assert container.audit.events(limit=1000) == before  # nothing changed


def test_a_post_with_the_sessions_csrf_token_is_taken(signed_in: TestClient) -> None:
    token = csrf_of(signed_in.get("/portal/services").text)
    assert signed_in.post("/portal/sign-out", data={"csrf": token}).status_code == 303


def test_the_cookies_are_secure_http_only_strict_and_scoped(
    anonymous: TestClient, container: Container
) -> None:
    form = anonymous.get("/portal/sign-in")
    answer = sign_in(anonymous, token=container.data.admin_token() or "")
    cookies = {c.split("=", 1)[0]: c for c in [*form.headers.get_list("set-cookie")]}
    cookies |= {
        c.split("=", 1)[0]: c
        for c in answer.headers.get_list("set-cookie")
        if not c.startswith(f"{SIGN_IN_COOKIE}=")
    }
    assert set(cookies) == {COOKIE, SIGN_IN_COOKIE}
    for cookie in cookies.values():
        for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/portal"):
            assert flag in cookie, cookie


# --- login CSRF ----------------------------------------------------------------------------------


def test_a_sign_in_without_the_forms_token_is_refused(
    anonymous: TestClient, container: Container
) -> None:
    token = container.data.admin_token() or ""
    answer = anonymous.post("/portal/sign-in", data={"token": token})
    assert answer.status_code == 403
    assert "did not come from this server" in answer.text
    assert anonymous.cookies.get(COOKIE) is None
    # The page it answered with carries a fresh form, which signs in.
    retry = anonymous.post("/portal/sign-in", data={"token": token, "csrf": csrf_of(answer.text)})
    assert retry.status_code == 303


def test_a_sign_in_with_another_forms_token_is_refused(
    anonymous: TestClient, container: Container
) -> None:
    other = TestClient(build_app(container), base_url=BASE_URL, follow_redirects=False)
    with other:
        stolen = sign_in_form(other)["csrf"]  # a form loaded by another browser
    sign_in_form(anonymous)
    answer = anonymous.post(
        "/portal/sign-in", data={"token": container.data.admin_token(), "csrf": stolen}
    )
    assert answer.status_code == 403
    assert anonymous.cookies.get(COOKIE) is None


# --- the sign-in limit ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limited(container: Container) -> Container:
    container.operators.add("alice", PASSWORD, actor="test")
    return container


@pytest.fixture
def portal(limited: Container, clock: Clock) -> Starlette:
    """The portal alone (one process's sign-in limit), on a clock the test moves."""
    return Starlette(routes=portal_app.routes(limited, clock=clock))


def portal_client(portal: Starlette, address: str) -> TestClient:
    """A browser at ``address``."""
    return TestClient(portal, base_url=BASE_URL, follow_redirects=False, client=(address, 40000))


def test_failed_sign_ins_are_limited_until_the_window_passes(
    portal: Starlette, limited: Container, clock: Clock
) -> None:
    token = limited.data.admin_token() or ""
    with portal_client(portal, "192.0.2.1") as client:
        for _ in range(FAILURES_PER_WINDOW):
            assert sign_in(client, token="wrong").status_code == 401
        refused = sign_in(client, token=token)  # the right token: not even checked
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) == int(WINDOW.total_seconds())
        assert "Too many failed sign-ins" in refused.text
        assert client.cookies.get(COOKIE) is None
        clock.advance(seconds=WINDOW.total_seconds())
        assert sign_in(client, token=token).status_code == 303


def test_fewer_failures_than_the_limit_leave_sign_in_open(portal: Starlette) -> None:
    with portal_client(portal, "192.0.2.1") as client:
        for _ in range(FAILURES_PER_WINDOW - 1):
            assert sign_in(client, user="alice", password="wrong").status_code == 401
        assert sign_in(client, user="alice", password=PASSWORD).status_code == 303


def test_a_user_name_is_limited_from_every_address(portal: Starlette, limited: Container) -> None:
    for i in range(FAILURES_PER_WINDOW):
        with portal_client(portal, f"192.0.2.{i + 1}") as client:
            assert sign_in(client, user="ALICE", password="wrong").status_code == 401
    with portal_client(portal, "198.51.100.1") as client:
        assert sign_in(client, user="alice", password=PASSWORD).status_code == 429
        limited.operators.add("bob", PASSWORD, actor="test")
        assert sign_in(client, user="bob", password=PASSWORD).status_code == 303


def test_a_success_does_not_reset_the_addresss_count_for_other_names(portal: Starlette) -> None:
    with portal_client(portal, "192.0.2.9") as client:
        for i in range(FAILURES_PER_WINDOW - 1):
            assert sign_in(client, user=f"guess{i}", password="wrong").status_code == 401
        assert sign_in(client, user="alice", password=PASSWORD).status_code == 303
        client.cookies.clear()
        assert sign_in(client, user="guess9", password="wrong").status_code == 401
        assert sign_in(client, user="guess10", password="wrong").status_code == 429


def test_a_failure_never_says_which_of_name_and_password_was_wrong(portal: Starlette) -> None:
    with portal_client(portal, "192.0.2.20") as client:
        unknown = sign_in(client, user="nobody", password=PASSWORD)
        wrong = sign_in(client, user="alice", password="wrong")
    assert unknown.status_code == wrong.status_code == 401
    message = "That user name and password do not match a user of this server."
    assert message in unknown.text and message in wrong.text
    assert 'value="alice"' in wrong.text  # what was typed is kept, never the password
    assert "wrong" not in wrong.text.replace(message, "")


# --- server-side sessions --------------------------------------------------------------------


def test_sign_out_ends_the_session_for_a_copied_cookie(signed_in: TestClient) -> None:
    copied = signed_in.cookies[COOKIE]
    token = csrf_of(signed_in.get("/portal/services").text)
    assert signed_in.post("/portal/sign-out", data={"csrf": token}).status_code == 303
    signed_in.cookies.set(COOKIE, copied, domain="testserver.local", path="/portal")
    answer = signed_in.get("/portal/services")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/portal/sign-in")


def test_a_session_made_by_one_instance_works_on_another(
    signed_in: TestClient, container: Container, tmp_path: Path
) -> None:
    second = open_container(tmp_path / "data")
    try:
        with TestClient(build_app(second), base_url=BASE_URL, follow_redirects=False) as other:
            other.cookies.set(
                COOKIE, signed_in.cookies[COOKIE], domain="testserver.local", path="/portal"
            )
            page = other.get("/portal/services")
            assert page.status_code == 200
            # The forms of one instance are taken by the other: one key in the database.
            assert csrf_of(page.text) == csrf_of(signed_in.get("/portal/services").text)
            other.cookies.set(COOKIE, "not-a-session", domain="testserver.local", path="/portal")
            assert other.get("/portal/services").status_code == 303
    finally:
        second.engine.dispose()


def test_removing_a_user_ends_their_session(anonymous: TestClient, container: Container) -> None:
    container.operators.add("carol", PASSWORD, actor="test")
    assert sign_in(anonymous, user="carol", password=PASSWORD).status_code == 303
    page = anonymous.get("/portal/services")
    assert page.status_code == 200 and "Signed in as user:carol" in page.text
    container.operators.remove("carol", actor="test")
    assert anonymous.get("/portal/services").status_code == 303


# --- escaping ----------------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"


def test_a_next_path_with_html_in_it_is_shown_escaped(anonymous: TestClient) -> None:
    page = anonymous.get("/portal/sign-in", params={"next": f'/portal/x"{SCRIPT}'})
    assert page.status_code == 200
    assert SCRIPT not in page.text
    assert "&#34;&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_a_certificate_subject_with_html_in_it_is_shown_escaped(
    signed_in: TestClient, container: Container
) -> None:
    ca = f.root(SCRIPT)
    container.registry.upload(
        "default", "html-subject", ca.pem, is_verified=False, if_match=None, actor="test"
    )
    listed = signed_in.get("/portal/s/default/certificates")
    shown = signed_in.get("/portal/s/default/certificates/html-subject")
    for page in (listed, shown):
        assert page.status_code == 200
        assert "html-subject" in page.text
        assert SCRIPT not in page.text
        # RFC 4514 writes the subject's < and > as \< and \>; the template escapes both.
        assert "CN=\\&lt;script\\&gt;alert(1)\\&lt;/script\\&gt;" in page.text


def test_a_replaced_admin_token_ends_the_admin_sessions(
    signed_in: TestClient, container: Container, tmp_path: Path
) -> None:
    reopened = open_container(tmp_path / "data", initialize=True)
    reopened.engine.dispose()
    assert signed_in.get("/portal/services").status_code == 200  # the same token: kept
    container.data.admin_token_file.unlink()  # lost: the next start makes a new one
    reopened = open_container(tmp_path / "data", initialize=True)
    reopened.engine.dispose()
    assert signed_in.get("/portal/services").status_code == 303

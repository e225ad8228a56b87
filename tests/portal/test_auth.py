"""Signing in and out, the session cookie, and CSRF on every form."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container
from devprov.portal.session import COOKIE
from tests.portal.conftest import csrf_of


def test_a_page_without_a_session_redirects_to_sign_in(anonymous: TestClient) -> None:
    answer = anonymous.get("/portal/services")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/sign-in?next=%2Fportal%2Fservices"


def test_the_admin_token_signs_in_with_a_strict_secure_cookie(
    anonymous: TestClient, container: Container
) -> None:
    answer = anonymous.post(
        "/portal/sign-in", data={"token": container.data.admin_token(), "next": "/portal/services"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/services"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/portal"):
        assert flag in cookie
    page = anonymous.get("/portal/services")
    assert page.status_code == 200
    assert "default" in page.text


def test_a_wrong_token_is_refused_and_sets_no_cookie(anonymous: TestClient) -> None:
    answer = anonymous.post("/portal/sign-in", data={"token": "not-the-token"})
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert "not this server" in answer.text
    assert anonymous.get("/portal/services").status_code == 303


@pytest.mark.parametrize(
    "target",
    ["https://elsewhere.example/", "//elsewhere.example/portal/", "/other", "/portal/\\x"],
)
def test_sign_in_never_redirects_outside_the_portal(
    anonymous: TestClient, container: Container, target: str
) -> None:
    answer = anonymous.post(
        "/portal/sign-in", data={"token": container.data.admin_token(), "next": target}
    )
    assert answer.headers["location"] == "/portal/services"


def test_a_forged_cookie_is_no_session(anonymous: TestClient, signed_in: TestClient) -> None:
    value = signed_in.cookies[COOKIE]
    signed_in.cookies.set(COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert signed_in.get("/portal/services").status_code == 303


def test_a_post_without_the_csrf_token_is_refused(signed_in: TestClient) -> None:
    answer = signed_in.post("/portal/sign-out", data={})
    assert answer.status_code == 403
    assert "security token" in answer.text
    assert signed_in.get("/portal/services").status_code == 200  # still signed in


def test_sign_out_ends_the_session(signed_in: TestClient) -> None:
    token = csrf_of(signed_in.get("/portal/services").text)
    answer = signed_in.post("/portal/sign-out", data={"csrf": token})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/sign-in"
    assert signed_in.get("/portal/services").status_code == 303


def test_pages_carry_the_security_headers(signed_in: TestClient) -> None:
    answer = signed_in.get("/portal/services")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"

"""A small client of the management API, used by ``devprov certificate``.

HTTP failures come back as devprov errors of the matching kind, so the CLI's one exit-code table
applies to remote errors too.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx

from devprov.cli.common import ServerTarget
from devprov.core.error import (
    AuthenticationError,
    ConflictError,
    DevprovError,
    InternalError,
    InvalidInputError,
    NotFoundError,
    NotPermittedError,
    PreconditionFailedError,
    TooLargeError,
    UnavailableError,
)

_BY_STATUS: dict[int, type[DevprovError]] = {
    400: InvalidInputError,
    401: AuthenticationError,
    403: NotPermittedError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    413: TooLargeError,
    503: UnavailableError,
}

TIMEOUT_SECONDS = 30.0


class ServerUnreachableError(UnavailableError):
    """The CLI cannot reach the server (not running, wrong URL or CA)."""

    code = "ServerUnreachable"
    number = 503150


class ManagementClient:
    def __init__(self, target: ServerTarget) -> None:
        self._target = target
        self._base = (
            f"{target.url}/subscriptions/local/resourceGroups/devprov/providers/Microsoft.Devices"
            f"/provisioningServices/{target.service}/certificates"
        )
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(target.ca_file)) if target.ca_file else True
        )
        self._http = httpx.Client(
            verify=verify,
            timeout=TIMEOUT_SECONDS,
            headers={"Authorization": f"Bearer {target.token}"},
            params={"api-version": "2025-02-01-preview"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, method: str, path: str, *, etag: str | None = None, body: Any = None
    ) -> dict[str, Any] | None:
        headers = {"If-Match": f'"{etag}"'} if etag else {}
        try:
            response = self._http.request(method, self._base + path, headers=headers, json=body)
        except httpx.ConnectError as exc:
            raise ServerUnreachableError(
                f"cannot reach devprov at {self._target.url}: {exc}; is 'devprov serve' running?"
            ) from exc
        except httpx.HTTPError as exc:
            raise ServerUnreachableError(f"request to {self._target.url} failed: {exc}") from exc
        if response.status_code >= 400:
            raise remote_error(response)
        if not response.content:
            return None
        data = response.json()
        return data if isinstance(data, dict) else {"value": data}

    def get(self, name: str) -> dict[str, Any] | None:
        """The certificate, or None when the server has none by that name."""
        try:
            return self._call("GET", f"/{name}")
        except NotFoundError:
            return None

    def list(self) -> list[dict[str, Any]]:
        data = self._call("GET", "") or {}
        value = data.get("value", [])
        return value if isinstance(value, list) else []

    def upload(self, name: str, pem: str, *, verified: bool, etag: str | None) -> dict[str, Any]:
        body = {"properties": {"certificate": pem, "isVerified": verified}}
        return self._call("PUT", f"/{name}", etag=etag, body=body) or {}

    def delete(self, name: str, etag: str) -> None:
        self._call("DELETE", f"/{name}", etag=etag)

    def generate_code(self, name: str, etag: str) -> dict[str, Any]:
        return self._call("POST", f"/{name}/generateVerificationCode", etag=etag) or {}

    def verify(self, name: str, pem: str, etag: str) -> dict[str, Any]:
        return self._call("POST", f"/{name}/verify", etag=etag, body={"certificate": pem}) or {}


def remote_error(response: httpx.Response) -> DevprovError:
    """The devprov error for a failed response, from ARM's error shape or DPS's (``errorCode``)."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = {}
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = error.get("code") if isinstance(error, dict) else None
    if code is None and isinstance(body, dict):
        code = body.get("errorCode")
    message = (body.get("message") if isinstance(body, dict) else None) or response.text
    kind = _BY_STATUS.get(response.status_code, InternalError)
    return kind(f"{code or response.status_code}: {message}")

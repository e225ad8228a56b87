"""A small client of the management API, used by ``devprov certificate``.

HTTP failures come back as devprov errors of the matching kind, so the CLI's one exit-code table
applies to remote errors too.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, TypeVar

import httpx

from devprov.cli.common import ServerTarget
from devprov.cli.files import read_input
from devprov.core.error import (
    AuthenticationError,
    ConflictError,
    DevprovError,
    InternalError,
    InvalidInputError,
    MalformedCertificateError,
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

E = TypeVar("E", bound=BaseException)


class ServerUnreachableError(UnavailableError):
    """The CLI cannot reach the server (not running, wrong URL or port)."""

    code = "ServerUnreachable"
    number = 503150


class ServerNotTrustedError(AuthenticationError):
    """The server's TLS certificate does not chain to the CA the CLI trusts (--ca-file), or does
    not name the host of --url; the message names the file."""

    code = "ServerNotTrusted"
    number = 401160


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: the certificate chains, but not to this name.
_HOSTNAME_MISMATCH = 62


def trust(ca_file: Path | None) -> ssl.SSLContext:
    """A client TLS context trusting only ``ca_file``, or the system's CAs when None.

    The file is read here, so that one that is missing or holds no certificate is named in the
    error (an ``SSLContext`` rather than httpx's ``verify=<path>``, which is deprecated).
    """
    if ca_file is None:
        return ssl.create_default_context()
    data = read_input(ca_file, "--ca-file")
    try:
        return ssl.create_default_context(cadata=_cadata(data))
    except (ssl.SSLError, ValueError) as exc:
        raise MalformedCertificateError(
            f"--ca-file {ca_file} holds no CA certificate ({exc}); give the server's CA, "
            "the serverCaFile that 'devprov info' prints"
        ) from exc


def _cadata(data: bytes) -> str | bytes:
    """PEM as text, DER as bytes: the two forms ``cadata`` takes."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data
    return text if "-----BEGIN" in text else data


def _cause(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of ``kind`` in ``exc``'s chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def transport_error(exc: httpx.HTTPError, url: str, ca_file: Path | None) -> DevprovError:
    """The devprov error for a request that got no HTTP answer: an untrusted server certificate
    (named with the CA file), or a server that cannot be reached."""
    refused = _cause(exc, ssl.SSLCertVerificationError)
    if refused is not None:
        reason = refused.verify_message or str(refused)
        if refused.verify_code == _HOSTNAME_MISMATCH:
            return ServerNotTrustedError(
                f"the server at {url} presented a certificate that does not name its host "
                f"({reason}); use a --url whose host the certificate names (localhost, the "
                "machine's name, or a 'devprov serve --san' name)"
            )
        trusted = f"the CA file {ca_file}" if ca_file else "the system's trusted CAs"
        return ServerNotTrustedError(
            f"the server at {url} presented a certificate that does not chain to {trusted} "
            f"({reason}); pass the server's CA with --ca-file (the serverCaFile that "
            "'devprov info' prints on the server's machine)"
        )
    if isinstance(exc, httpx.ConnectError):
        return ServerUnreachableError(
            f"cannot reach devprov at {url}: {exc}; is 'devprov serve' running, and on this --url?"
        )
    return ServerUnreachableError(f"request to {url} failed: {exc}")


class ManagementClient:
    def __init__(self, target: ServerTarget) -> None:
        self._target = target
        self._base = (
            f"{target.url}/subscriptions/local/resourceGroups/devprov/providers/Microsoft.Devices"
            f"/provisioningServices/{target.service}/certificates"
        )
        self._http = httpx.Client(
            verify=trust(target.ca_file),
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
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._target.url, self._target.ca_file) from exc
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


def remote_detail(error: DevprovError) -> str:
    """``<number>: <message>`` of an error :func:`remote_error` made: a known error's own number,
    or the server's code that an unknown one already starts its message with."""
    if type(error) in (*_BY_STATUS.values(), InternalError):
        return error.message
    return f"{error.number}: {error.message}"


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
    message = (
        (body.get("message") if isinstance(body, dict) else None)
        or (error.get("message") if isinstance(error, dict) else None)  # ARM's OData error
        or response.text
    )
    kind = _BY_STATUS.get(response.status_code, InternalError)
    # The server's own error, when this devprov knows it: the CLI then prints its code and exits
    # with its kind's status, as for a local error. Imported here: it loads every module.
    from devprov.cli.errors import known_error  # noqa: PLC0415

    leaf = known_error(code if isinstance(code, (str, int)) else None)
    if leaf is not None and leaf.kind is kind.kind:
        return leaf(message)
    return kind(f"{code or response.status_code}: {message}")

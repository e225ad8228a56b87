"""A client of the DPS service API (enrollments, enrollment groups, registration states).

It authenticates as DPS's service SDKs do, with a shared access signature built from a policy key
(docs/dps-wire.md#service-sas-tokens): by default the ``provisioningserviceowner`` policy of
``--service``, read from the local data directory; or the key of a connection string, for a server
elsewhere. HTTP failures come back as devprov errors of the matching kind
(``cli.client.remote_error``), so the CLI's one exit-code table applies.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from devprov.bootstrap import DEFAULT_PORT, DEFAULT_SERVICE, DataDirMissingError
from devprov.cli.client import TIMEOUT_SECONDS, remote_error, transport_error, trust
from devprov.cli.common import ServerTarget, add_data_dir, container, data_dir
from devprov.cli.files import input_file
from devprov.core.error import InternalError, InvalidInputError, ServiceNotFoundError
from devprov.core.sas import build_sas_token
from devprov.service.model import OWNER_POLICY
from devprov.service.provisioning import PolicyNotFoundError

# The only api-version the Python service SDK knows
# (docs/dps-wire.md#service-host-api-versions-and-headers); devprov accepts any.
SERVICE_API_VERSION = "2021-10-01"

# Seconds a token is good for: the Python service SDK signs each request for an hour (PY-SVC).
TOKEN_LIFETIME_SECONDS = 3600

# Page size asked for when the user gives none; the server caps it at its own maximum.
DEFAULT_PAGE_SIZE = 100

# A server that keeps answering with a continuation must not keep the CLI looping forever.
MAX_PAGES = 10_000


class MalformedConnectionStringError(InvalidInputError):
    """A connection string lacks HostName, SharedAccessKeyName or SharedAccessKey."""

    code = "MalformedConnectionString"
    number = 400180


class UnexpectedResponseError(InternalError):
    """The server answered in a way the CLI did not expect."""

    code = "UnexpectedResponse"
    number = 500150


@dataclass(frozen=True)
class ServiceTarget:
    """Where the service API is and which policy key signs the requests."""

    url: str  # https://host:port, no trailing slash
    ca_file: Path | None
    host: str  # the token's sr: the connection string's HostName, or the URL's host:port
    policy: str
    key: str


def add_service_options(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    parser.add_argument(
        "--url",
        help="the server's URL (default: the connection string's host, or where the "
        "data directory's server listens)",
    )
    parser.add_argument(
        "--ca-file",
        type=input_file,
        help="the CA file to trust (default: the data directory's server CA)",
    )
    parser.add_argument(
        "--service", default=DEFAULT_SERVICE, help="provisioning service (default: default)"
    )
    parser.add_argument(
        "--policy",
        default=OWNER_POLICY,
        help=f"the local shared access policy that signs requests (default: {OWNER_POLICY})",
    )
    parser.add_argument(
        "--connection-string",
        metavar="CS",
        help="'HostName=...;SharedAccessKeyName=...;SharedAccessKey=...' instead of local keys",
    )


def parse_connection_string(text: str) -> tuple[str, str, str]:
    """(host, policy name, key) of ``HostName=..;SharedAccessKeyName=..;SharedAccessKey=..``.

    Names compare case-insensitively, as the Python service SDK reads them
    (docs/sdk-clients.md#service-sdk-construction-and-credentials).
    Raises :class:`MalformedConnectionStringError`; the message never contains the key.
    """
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        if not equals:
            raise MalformedConnectionStringError(
                f"connection string part {name.strip()[:32]!r} is not Name=Value"
            )
        fields[name.strip().lower()] = value.strip()
    wanted = ("hostname", "sharedaccesskeyname", "sharedaccesskey")
    missing = [name for name in wanted if not fields.get(name)]
    if missing:
        raise MalformedConnectionStringError(
            "the connection string needs HostName, SharedAccessKeyName and SharedAccessKey; "
            f"missing: {', '.join(missing)}"
        )
    return fields["hostname"], fields["sharedaccesskeyname"], fields["sharedaccesskey"]


def local_url(args: argparse.Namespace) -> str:
    """``--url``, or where the data directory's server last listened."""
    endpoint = data_dir(args).endpoint() or {}
    url = args.url or str(endpoint.get("url") or f"https://localhost:{DEFAULT_PORT}")
    return url.rstrip("/")


def local_ca_file(args: argparse.Namespace) -> Path | None:
    if args.ca_file:
        return Path(args.ca_file)
    ca_file = data_dir(args).ca_file
    return ca_file if ca_file.exists() else None


def service_target(args: argparse.Namespace) -> ServiceTarget:
    if args.connection_string:
        host, policy, key = parse_connection_string(args.connection_string)
        url = (args.url or f"https://{host}").rstrip("/")
        return ServiceTarget(url, local_ca_file(args), host, policy, key)
    policies = container(args).directory.policies(args.service)
    chosen = next((p for p in policies if p.name == args.policy), None)
    if chosen is None:
        raise PolicyNotFoundError(
            f"service '{args.service}' has no shared access policy '{args.policy}' "
            f"(it has: {', '.join(p.name for p in policies) or 'none'})"
        )
    url = local_url(args)
    return ServiceTarget(
        url, local_ca_file(args), urlsplit(url).netloc, chosen.name, chosen.primary_key
    )


def registry_target(args: argparse.Namespace) -> ServerTarget | None:
    """The management API of the server the service options reach, when the local data
    directory holds its admin token; None for a server named by a connection string, whose
    registry this machine cannot read."""
    if args.connection_string:
        return None
    token = data_dir(args).admin_token()
    if not token:
        return None
    return ServerTarget(local_url(args), token, local_ca_file(args), args.service)


def owner_target(args: argparse.Namespace, server: ServerTarget) -> ServiceTarget | None:
    """The service API of ``server``, signed with the key of the local data directory's owner
    policy (or its policy with the most rights); None when this machine holds no such key."""
    try:
        policies = container(args).directory.policies(server.service)
    except (DataDirMissingError, ServiceNotFoundError):
        return None
    chosen = next((p for p in policies if p.name == OWNER_POLICY), None) or max(
        policies, key=lambda p: len(p.rights), default=None
    )
    if chosen is None:
        return None
    host = urlsplit(server.url).netloc
    return ServiceTarget(server.url, server.ca_file, host, chosen.name, chosen.primary_key)


def _quoted(etag: str) -> str:
    return etag if etag == "*" or etag.startswith('"') else f'"{etag}"'


class ServiceClient:
    """DPS's service API over httpx; one SAS token per request, as the SDKs sign them."""

    def __init__(self, target: ServiceTarget, *, clock: Callable[[], float] = time.time) -> None:
        self._target = target
        self._clock = clock
        self._http = httpx.Client(
            base_url=target.url,
            verify=trust(target.ca_file),
            timeout=TIMEOUT_SECONDS,
            params={"api-version": SERVICE_API_VERSION},
            headers={"Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _token(self) -> str:
        expiry = int(self._clock()) + TOKEN_LIFETIME_SECONDS
        return build_sas_token(self._target.key, self._target.host, expiry, self._target.policy)

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Authorization": self._token(), **(headers or {})}
        try:
            response = self._http.request(method, path, json=body, headers=sent, params=params)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._target.url, self._target.ca_file) from exc
        if response.status_code >= 400:
            raise remote_error(response)
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        data = response.json() if response.content else {}
        return data if isinstance(data, dict) else {"value": data}

    # --- enrollments and enrollment groups: collection is "enrollments" or "enrollmentGroups" ---

    def get(self, collection: str, id: str) -> dict[str, Any]:
        return self._json(self._send("GET", f"/{collection}/{quote(id, safe='')}"))

    def put(
        self, collection: str, id: str, body: dict[str, Any], *, etag: str | None
    ) -> dict[str, Any]:
        headers = {"If-Match": _quoted(etag)} if etag else {}
        response = self._send(
            "PUT", f"/{collection}/{quote(id, safe='')}", body=body, headers=headers
        )
        return self._json(response)

    def delete(self, collection: str, id: str, *, etag: str) -> None:
        self._send(
            "DELETE", f"/{collection}/{quote(id, safe='')}", headers={"If-Match": _quoted(etag)}
        )

    def attestation_mechanism(self, collection: str, id: str) -> dict[str, Any]:
        path = f"/{collection}/{quote(id, safe='')}/attestationmechanism"
        return self._json(self._send("POST", path))

    def query(self, collection: str, *, page_size: int | None = None) -> list[dict[str, Any]]:
        """Every enrollment (group), page by page, following ``x-ms-continuation`` (2.4)."""
        return self._pages(f"/{collection}/query", {"query": "*"}, page_size)

    # --- registration states ---------------------------------------------------------------

    def get_registration(self, registration_id: str) -> dict[str, Any]:
        return self._json(self._send("GET", f"/registrations/{quote(registration_id, safe='')}"))

    def delete_registration(
        self, registration_id: str, *, etag: str, delete_identity: bool = False
    ) -> None:
        path = f"/registrations/{quote(registration_id, safe='')}"
        # deleteIdentity is devprov's own parameter (docs/hubs.md#disabling-and-deleting).
        params = {"deleteIdentity": "true"} if delete_identity else None
        self._send("DELETE", path, headers={"If-Match": _quoted(etag)}, params=params)

    def query_registrations(
        self, group_id: str, *, page_size: int | None = None
    ) -> list[dict[str, Any]]:
        return self._pages(f"/registrations/{quote(group_id, safe='')}/query", None, page_size)

    def _pages(
        self, path: str, body: dict[str, Any] | None, page_size: int | None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        continuation: str | None = None
        for _ in range(MAX_PAGES):
            headers = {"x-ms-max-item-count": str(page_size or DEFAULT_PAGE_SIZE)}
            if continuation:
                headers["x-ms-continuation"] = continuation
            response = self._send("POST", path, body=body, headers=headers)
            page = response.json()
            if not isinstance(page, list):
                raise UnexpectedResponseError(f"{path} answered with something other than a list")
            items += [item for item in page if isinstance(item, dict)]
            continuation = response.headers.get("x-ms-continuation")
            if not continuation:
                return items
        raise UnexpectedResponseError(f"{path} still had more after {MAX_PAGES} pages")

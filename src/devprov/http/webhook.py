"""The custom allocation webhook client (DPS's custom allocation policy).

DPS POSTs a JSON AllocationRequest to the webhook and takes the hub it names; an error, a
timeout or a bad answer fails the registration (docs/dps-wire.md#custom-allocation-failures).
The client keeps to the rules of ``core.outbound``:

- one deadline for the whole call (``WEBHOOK_DEADLINE_SECONDS``): resolving the host, connecting,
  the TLS handshake, sending and receiving each get only what is left of it, so a server that
  drips its answer a byte at a time cannot hold a worker thread for longer;
- the answer is counted while it streams in and refused past ``MAX_WEBHOOK_RESPONSE_BYTES``,
  unread beyond that; a compressed answer is refused (the request asks for none);
- the host is resolved once, every address it resolves to is checked against the destination
  policy before any connection, and the connection goes to a checked address (no second lookup
  that a rebinding DNS could answer differently); TLS still verifies the host name;
- redirects are not followed (a 3xx fails, as any status DPS does not accept); proxy settings
  of the environment are not used (a proxy would connect to an unchecked address);
- every message names the URL redacted (``redact_url``), never its key or userinfo.

It speaks HTTP/1.1 through httpcore, whose network backend is the seam where the address check
and the deadline are enforced.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
import httpcore

from devprov.core.error import WebhookDestinationRefusedError, WebhookFailedError
from devprov.core.outbound import (
    MAX_WEBHOOK_RESPONSE_BYTES,
    WEBHOOK_DEADLINE_SECONDS,
    Network,
    parse_address,
    redact_text,
    redact_url,
    validate_destination,
)

# A host name to the addresses it has, within ``timeout`` seconds; raises httpcore.ConnectError
# or httpcore.ConnectTimeout.
Resolver = Callable[[str, int, float], list[str]]

# The logger under which httpcore traces requests and answers.
HTTPCORE_LOGGER = "httpcore"

# Writes go out in pieces this large, each bounded by what is left of the deadline.
WRITE_CHUNK_BYTES = 16 * 1024

# Name lookups outlive a call's deadline when the resolver hangs (getaddrinfo cannot be
# interrupted); past this many still pending, a call fails at once instead of adding a thread, so
# that a dead resolver cannot pile up threads. Far above what a working resolver leaves pending.
MAX_PENDING_LOOKUPS = 32
_PENDING_LOOKUPS = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)

# The failures httpcore reports for a call; each becomes a WebhookFailedError.
HTTPCORE_ERRORS: tuple[type[Exception], ...] = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


def resolve_host(
    host: str,
    port: int,
    timeout: float,
    *,
    getaddrinfo: Callable[..., list[Any]] = socket.getaddrinfo,
) -> list[str]:
    """The addresses of ``host``, in the resolver's order, without duplicates. The lookup runs on
    a thread of its own because getaddrinfo takes no timeout."""
    try:
        return [str(parse_address(host))]  # an address literal needs no lookup
    except ValueError:
        pass
    if not _PENDING_LOOKUPS.acquire(blocking=False):
        raise httpcore.ConnectError(
            f"cannot resolve {host}: {MAX_PENDING_LOOKUPS} name lookups are already pending"
        )
    found: list[list[str]] = []
    failed: list[OSError] = []

    def lookup() -> None:
        try:
            infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            failed.append(exc)
            return
        finally:
            _PENDING_LOOKUPS.release()
        found.append(list(dict.fromkeys(str(info[4][0]) for info in infos)))

    thread = threading.Thread(target=lookup, name="webhook-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise httpcore.ConnectTimeout(f"resolving {host} took longer than the deadline")
    if failed:
        raise httpcore.ConnectError(f"cannot resolve {host}: {failed[0]}")
    return found[0]


def _remaining(deadline: float, timeout: type[httpcore.TimeoutException]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise timeout("the deadline passed")
    return left


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and handshake ends by the call's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _remaining(self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_CHUNK_BYTES):
            piece = buffer[start : start + WRITE_CHUNK_BYTES]
            self._stream.write(piece, _remaining(self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _remaining(self._deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, left), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _CheckedBackend(httpcore.NetworkBackend):
    """Resolves the host once, checks every address, connects to a checked one."""

    def __init__(self, deadline: float, allowed: Sequence[Network], resolve: Resolver) -> None:
        self._deadline = deadline
        self._allowed = allowed
        self._resolve = resolve
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._resolve(host, port, _remaining(self._deadline, httpcore.ConnectTimeout))
        validate_destination(host, [parse_address(a) for a in addresses], self._allowed)
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            left = _remaining(self._deadline, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(address, port, left, None, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise failure or httpcore.ConnectError(f"{host} has no address")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.UnsupportedProtocol("a webhook is reached over TCP")


@dataclass(frozen=True)
class _Target:
    """A webhook URL taken apart for httpcore."""

    url: httpcore.URL
    headers: list[tuple[bytes, bytes]]


def _target(url: str) -> _Target:
    """Parse the webhook URL; userinfo becomes Basic authentication, as HTTP clients do."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise WebhookFailedError(f"the custom allocation webhook {shown} is no URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise WebhookFailedError(f"the custom allocation webhook {shown} is no http(s) URL")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rpartition("@")[2]
    if not authority.isascii():
        authority = host.decode() + (f":{port}" if port else "")
    headers = [
        (b"Host", authority.encode()),
        (b"Content-Type", b"application/json"),
        (b"Accept", b"application/json"),
        (b"Accept-Encoding", b"identity"),
        (b"User-Agent", b"devprov"),
    ]
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers.append((b"Authorization", b"Basic " + base64.b64encode(credentials.encode())))
    return _Target(
        httpcore.URL(
            scheme=scheme.encode(),
            host=host,
            port=port or (443 if scheme == "https" else 80),
            target=target.encode("utf-8", "surrogateescape"),
        ),
        headers,
    )


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class HttpAllocationWebhook:
    """Calls custom allocation webhooks; raises WebhookFailedError or
    WebhookDestinationRefusedError, with the URL redacted in the message."""

    def __init__(
        self,
        *,
        verify: bool | str = True,
        timeout: float = WEBHOOK_DEADLINE_SECONDS,
        allowed: Sequence[Network] = (),
        max_response_bytes: int = MAX_WEBHOOK_RESPONSE_BYTES,
        resolve: Resolver = resolve_host,
    ) -> None:
        # httpcore traces every call at DEBUG, the answer's headers included, and a webhook's
        # answer may echo its key (a redirect's Location): that trace never runs, whatever the
        # process's logging configuration.
        logging.getLogger(HTTPCORE_LOGGER).setLevel(logging.INFO)
        self._timeout = timeout
        self._allowed = tuple(allowed)
        self._max = max_response_bytes
        self._resolve = resolve
        self._ssl = ssl.create_default_context(
            cafile=verify if isinstance(verify, str) else certifi.where()
        )
        if verify is False:
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE

    def call(self, url: str, body: Mapping[str, Any]) -> object:
        deadline = time.monotonic() + self._timeout
        target = _target(url)
        content = json.dumps(dict(body), separators=(",", ":")).encode()
        headers = [*target.headers, (b"Content-Length", str(len(content)).encode())]
        backend = _CheckedBackend(deadline, self._allowed, self._resolve)
        try:
            with (
                httpcore.ConnectionPool(ssl_context=self._ssl, network_backend=backend) as pool,
                pool.stream("POST", target.url, headers=headers, content=content) as response,
            ):
                raw = self._read(url, response, deadline)
        except WebhookDestinationRefusedError as exc:
            raise WebhookDestinationRefusedError(
                f"the custom allocation webhook {redact_url(url)} was not called: {exc.message}"
            ) from None
        except httpcore.TimeoutException:
            raise WebhookFailedError(
                f"the custom allocation webhook {redact_url(url)} did not answer within its "
                f"{self._timeout:g} s deadline"
            ) from None
        except HTTPCORE_ERRORS as exc:
            raise WebhookFailedError(
                f"the custom allocation webhook {redact_url(url)} failed: "
                f"{redact_text(str(exc) or type(exc).__name__, url)}"
            ) from None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
            raise WebhookFailedError(
                f"the custom allocation webhook {redact_url(url)} answered with invalid JSON"
            ) from None

    def _read(self, url: str, response: httpcore.Response, deadline: float) -> bytes:
        """The answer's body, refused on a status other than 2xx, a compressed body, or one past
        the size cap, which is not read beyond the cap."""
        shown = redact_url(url)
        status = response.status
        if 300 <= status < 400:
            location = redact_url(_header(response, b"location") or "")
            raise WebhookFailedError(
                f"the custom allocation webhook {shown} answered {status}, a redirect to "
                f"{location or 'nowhere'}; devprov does not follow redirects"
            )
        if not 200 <= status < 300:
            raise WebhookFailedError(f"the custom allocation webhook {shown} answered {status}")
        encoding = (_header(response, b"content-encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise WebhookFailedError(
                f"the custom allocation webhook {shown} answered with Content-Encoding "
                f"{encoding[:40]!r}; devprov asks for, and accepts, none"
            )
        too_large = WebhookFailedError(
            f"the custom allocation webhook {shown} answered with more than {self._max} bytes"
        )
        declared = _header(response, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self._max:
            raise too_large
        received = bytearray()
        for chunk in response.iter_stream():
            received += chunk
            if len(received) > self._max:
                raise too_large
            _remaining(deadline, httpcore.ReadTimeout)
        return bytes(received)


__all__ = [
    "HttpAllocationWebhook",
    "WebhookDestinationRefusedError",
    "WebhookFailedError",
    "resolve_host",
]

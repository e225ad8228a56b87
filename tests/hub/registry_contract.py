"""A local IoT Hub identity registry for tests: the registry REST contract devprov's
azure-iothub adapter is checked against (docs/hubs.md#azure-iot-hub-registry-contract).

A real HTTPS server on 127.0.0.1, its certificate issued by a CA made for the test, holding
devices and twins in memory with entity tags. It implements GET/PUT/DELETE /devices/{id} and
GET/PATCH /twins/{id}; it authenticates every request's service SAS token (signature made with
the policy's key, sr the hub's name, skn the policy, se not past) and compares every request
with what Microsoft's SDK sends for that operation (tests/hub/data/azure_iot_hub_sdk.json):
query, the headers whose value matters, the token's fields, the body's keys and value types.
A request that differs is answered 400 and recorded in ``violations``.

It can be told to answer every request with a status (401, 500) or to stall (never answer).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from devprov.core.error import DevprovError
from devprov.core.issuance import build_server_certificate
from devprov.core.sas import parse_sas_token, resource_matches_service, verify_sas_token
from tests import factory

SDK_REQUESTS = Path(__file__).parent / "data" / "azure_iot_hub_sdk.json"
HUB_NAME = "contract-hub.azure-devices.net"
POLICY = "registryReadWrite"

# Values compared as they are, not by type: what a field's value means, not the data it carries.
_LITERAL_KEYS = {"type"}


def shape(value: Any, key: str = "") -> Any:
    """The keys and value types of a JSON value (literal values for ``_LITERAL_KEYS``)."""
    if isinstance(value, dict):
        return {name: shape(item, name) for name, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if key in _LITERAL_KEYS:
        return value
    return type(value).__name__


def load_sdk_requests() -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = json.loads(SDK_REQUESTS.read_text())["requests"]
    return requests


def _operation(method: str, path: str, if_match: bool) -> str:
    collection = path.split("/")[1]
    if collection == "twins":
        return "update_twin"
    if method == "GET":
        return "get_device"
    if method == "DELETE":
        return "delete_device"
    return "update_device" if if_match else "create_device"


def contract_violation(
    sdk: list[dict[str, Any]], method: str, path: str, headers: dict[str, str], body: Any
) -> str | None:
    """Why a request differs from every request the SDK sends for its operation, or None."""
    parts = urlsplit(path)
    operation = _operation(method, parts.path, "If-Match" in headers)
    candidates = [
        entry
        for entry in sdk
        if entry["method"] == method and entry["operation"].startswith(operation)
    ]
    if not candidates:
        return f"the SDK sends no {method} {parts.path}"
    reasons = []
    for entry in candidates:
        reason = _difference(entry, parts.query, headers, body)
        if reason is None:
            return None
        reasons.append(f"{entry['call']}: {reason}")
    return "; ".join(reasons)


def _difference(
    entry: dict[str, Any], query: str, headers: dict[str, str], body: Any
) -> str | None:
    if dict(parse_qsl(query)) != entry["query"]:
        return f"query {query!r} is not {entry['query']}"
    for name, value in entry["headers"].items():
        if headers.get(name) != value:
            return f"header {name} is {headers.get(name)!r}, not {value!r}"
    extra = {"Content-Type", "If-Match"} - set(entry["headers"])
    if sent := [name for name in extra if name in headers]:
        return f"headers {sorted(sent)} are sent where the SDK sends none"
    fields = [
        part.split("=", 1)[0]
        for part in headers.get("Authorization", " ").split(" ", 1)[1].split("&")
    ]
    if fields != entry["authorization_fields"]:
        return f"Authorization fields {fields} are not {entry['authorization_fields']}"
    if shape(body) != shape(entry["body"]):
        return f"body {shape(body)} is not shaped as {shape(entry['body'])}"
    return None


@dataclass
class RegistryContract:
    """The running registry: its address, its CA, the policy key, and what it holds."""

    port: int
    ca_file: Path
    key: str
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    twins: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    forced_status: int | None = None  # answer every request with this status
    # Devices a GET does not see: made by another writer between the adapter's GET and its PUT.
    unseen: set[str] = field(default_factory=set)
    stall: threading.Event | None = None  # hold every request, unanswered, until it is set
    lock: threading.Lock = field(default_factory=threading.Lock)
    _etags: int = 0

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def connection_string(self, *, key: str | None = None, policy: str = POLICY) -> str:
        return f"HostName={HUB_NAME};SharedAccessKeyName={policy};SharedAccessKey={key or self.key}"

    def settings(self, **overrides: str) -> dict[str, str]:
        return {
            "connection_string": self.connection_string(),
            "endpoint": self.endpoint,
            "ca_file": str(self.ca_file),
        } | overrides

    def next_etag(self) -> str:
        self._etags += 1
        return base64.b64encode(self._etags.to_bytes(8, "big")).decode()


def _error(code: str, text: str) -> dict[str, str]:
    """IoT Hub's error body."""
    return {
        "Message": f"ErrorCode:{code};{text}",
        "ExceptionMessage": f"Tracking ID:{secrets.token_hex(16)}-TimeStamp:{datetime.now(UTC):%m/%d/%Y %H:%M:%S}",
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    contract: RegistryContract
    sdk: list[dict[str, Any]]

    def _answer(self, status: int, body: Any = None, etag: str | None = None) -> None:
        content = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        if etag is not None:
            self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        headers = {name: value for name, value in self.headers.items()}
        contract = self.contract
        with contract.lock:
            contract.requests.append((self.command, self.path, headers, body))
        if contract.stall is not None:
            contract.stall.wait(30)
            return
        if contract.forced_status is not None:
            self._answer(contract.forced_status, _error("Forced", "the test asked for this answer"))
            return
        if (refusal := self._authenticate(headers)) is not None:
            self._answer(401, _error("IotHubUnauthorizedAccess", refusal))
            return
        violation = contract_violation(self.sdk, self.command, self.path, headers, body)
        if violation is not None:
            with contract.lock:
                contract.violations.append(f"{self.command} {self.path}: {violation}")
            self._answer(400, _error("ArgumentInvalid", violation))
            return
        with contract.lock:
            self._registry(headers, body)

    def _authenticate(self, headers: dict[str, str]) -> str | None:
        try:
            token = parse_sas_token(headers.get("Authorization", ""))
            if token.key_name != POLICY:
                return f"no policy {token.key_name!r}"
            if not resource_matches_service(token.resource, {HUB_NAME}):
                return f"sr {token.resource!r} is not {HUB_NAME}"
            verify_sas_token(token, [self.contract.key], now=datetime.now(UTC))
        except DevprovError as exc:
            return exc.message
        return None

    def _registry(self, headers: dict[str, str], body: Any) -> None:
        parts = urlsplit(self.path)
        _, collection, quoted = parts.path.split("/", 2)
        device_id = unquote(quoted)
        contract = self.contract
        device = contract.devices.get(device_id)
        if_match = headers.get("If-Match")
        if device is None and (self.command != "PUT" or if_match is not None):
            self._answer(404, _error("DeviceNotFound", f"Device {device_id} not found"))
            return
        if (
            if_match is not None
            and device is not None
            and if_match not in ('"*"', f'"{device["etag"]}"')
        ):
            self._answer(412, _error("PreconditionFailed", "ETag mismatch"))
            return
        if self.command == "GET" and collection == "devices" and device_id in contract.unseen:
            self._answer(404, _error("DeviceNotFound", f"Device {device_id} not found"))
        elif self.command == "GET":
            answer = contract.twins[device_id] if collection == "twins" else device
            self._answer(200, answer, answer["etag"])
        elif self.command == "DELETE":
            del contract.devices[device_id], contract.twins[device_id]
            self._answer(204)
        elif collection == "twins":
            self._patch_twin(device_id, body)
        else:
            self._put_device(device_id, device, body)

    def _put_device(self, device_id: str, device: dict[str, Any] | None, body: Any) -> None:
        contract = self.contract
        if device is not None and "If-Match" not in self.headers:
            self._answer(
                409,
                _error(
                    "DeviceAlreadyExists", f"A device with ID '{device_id}' is already registered"
                ),
            )
            return
        if body.get("deviceId") != device_id:
            self._answer(400, _error("ArgumentInvalid", "deviceId differs from the path"))
            return
        stored = {**body, "etag": contract.next_etag(), "generationId": secrets.token_hex(8)}
        auth = stored["authentication"]
        # The hub lists every authentication field, null where unused.
        stored["authentication"] = {
            "symmetricKey": {"primaryKey": None, "secondaryKey": None}
            | auth.get("symmetricKey", {}),
            "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None}
            | auth.get("x509Thumbprint", {}),
            "type": auth["type"],
        }
        contract.devices[device_id] = stored
        contract.twins.setdefault(
            device_id,
            {"deviceId": device_id, "etag": "", "tags": {}, "properties": {"desired": {}}},
        )
        contract.twins[device_id]["etag"] = contract.next_etag()
        self._answer(200, stored, stored["etag"])

    def _patch_twin(self, device_id: str, patch: Any) -> None:
        twin = self.contract.twins[device_id]
        _merge(twin["tags"], patch.get("tags") or {})
        _merge(twin["properties"]["desired"], (patch.get("properties") or {}).get("desired") or {})
        twin["etag"] = self.contract.next_etag()
        self._answer(200, twin, twin["etag"])

    do_GET = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7396), as IoT Hub applies a twin patch: null removes a key."""
    for name, value in patch.items():
        if value is None:
            target.pop(name, None)
        elif isinstance(value, dict) and isinstance(target.get(name), dict):
            _merge(target[name], value)
        else:
            target[name] = value


@contextmanager
def registry_contract(directory: Path) -> Iterator[RegistryContract]:
    """Run the registry until the block ends; its CA is written to ``directory``."""
    ca = factory.root("Registry Contract Root")
    server_key = factory.ec_key()
    now = datetime.now(UTC) - timedelta(minutes=1)
    certificate = build_server_certificate(
        server_key.public_key(), ["127.0.0.1"], ca.issuer, serial=factory.serial(), now=now, days=1
    )
    (directory / "registry-ca.pem").write_bytes(ca.pem)
    (directory / "registry.pem").write_bytes(
        factory.pem(certificate) + factory.Ca(certificate, server_key).key_pem()
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "registry.pem")

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    contract = RegistryContract(
        port=int(server.server_address[1]),
        ca_file=directory / "registry-ca.pem",
        key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    handler = type("Handler", (_Handler,), {"contract": contract, "sdk": load_sdk_requests()})
    server.RequestHandlerClass = handler
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield contract
    finally:
        if contract.stall is not None:
            contract.stall.set()
        server.shutdown()
        server.server_close()
        thread.join(5)

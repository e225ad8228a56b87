"""``devprov device register``: a device simulator on DPS's HTTPS device API
(docs/dps-wire.md#https-register-operation-status-and-status-lookup).

It registers exactly as a device does: ``PUT /{idScope}/registrations/{id}/register``, then polls
``GET .../operations/{operationId}`` after each ``Retry-After`` until the status is no longer
``assigning``. An X.509 device presents its certificate chain in the TLS handshake (a full-chain
file, leaf first, as ``load_cert_chain`` sends it, like the Python device SDK); a symmetric-key
device sends a SAS token whose sr is ``{idScope}/registrations/{id}`` (3.4).
"""

from __future__ import annotations

import argparse
import json
import shlex
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devprov.bootstrap import DEFAULT_SERVICE
from devprov.cli.client import (
    ServerNotTrustedError,
    remote_detail,
    remote_error,
    transport_error,
    trust,
)
from devprov.cli.common import add_data_dir, container
from devprov.cli.device_csr import (
    CertificateAsk,
    NoCertificateIssuedError,
    add_options,
    prepare,
    save,
)
from devprov.cli.enrollment_body import read_json_option
from devprov.cli.files import input_file, json_or_file
from devprov.cli.output import add_json_flag, emit
from devprov.cli.service_client import UnexpectedResponseError, local_ca_file, local_url
from devprov.core.error import AuthenticationError, InvalidInputError, UnavailableError
from devprov.core.issuance import PrivateKey
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.service.pki.file import load_certificates, load_private_key, read_password_file

# DEV-SPEC's stable api-version (docs/dps-wire.md#device-endpoints-and-api-versions); devprov
# accepts any.
DEVICE_API_VERSION = "2021-10-01"

# A device token's lifetime: the Python device SDK's default (docs/dps-wire.md#device-sas-tokens).
DEVICE_TOKEN_SECONDS = 3600

# The poll delay when the server names none: the Python and Node SDKs wait 2 s (3.6, 4.2).
DEFAULT_RETRY_AFTER_SECONDS = 2.0

DEFAULT_TIMEOUT_SECONDS = 30.0

# Exit codes of the outcomes the service reports in the operation (not HTTP errors, which go
# through the CLI's one table: 401 -> 4 and so on).
EXIT_ASSIGNED = 0
EXIT_DISABLED = 5  # the enrollment forbids the device: "not permitted"
EXIT_FAILED = 1  # the service accepted the device but could not assign it (no hub, webhook)

EPILOG = """exit codes: 0 assigned; 5 the enrollment is disabled; 1 the registration failed
(the error code and message say why), or no certificate was issued to --issue/--csr; 4 the
device's credentials were refused (devprov audit
on the server says why); 10 no answer within --timeout; others as for every devprov command."""


class DeviceCredentialsError(InvalidInputError):
    """`device register`: the certificate, key or key password cannot be used."""

    code = "UnusableDeviceCredentials"
    number = 400200


class DeviceRefusedError(AuthenticationError):
    """`device register`: the service answered 401; `devprov audit` tells why."""

    code = "DeviceRefused"
    number = 401150


class RegistrationTimeoutError(UnavailableError):
    """`device register`: no outcome within --timeout."""

    code = "RegistrationTimedOut"
    number = 503160


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("device", help="act as a device: register with the device API")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    text = "register as a device would, poll until assigned, print the assignment"
    sub = actions.add_parser("register", help=text, description=text, epilog=EPILOG)
    sub.add_argument("registration_id", metavar="REGISTRATION_ID")
    how = sub.add_argument_group("credentials (one of)")
    how.add_argument(
        "--cert",
        type=input_file,
        metavar="FULLCHAIN",
        help="the device's chain, leaf first (NAME-full-chain.pem)",
    )
    how.add_argument(
        "--key", type=input_file, metavar="KEY", help="the device's private key (with --cert)"
    )
    how.add_argument(
        "--key-password-file", type=input_file, metavar="FILE", help="password of --key"
    )
    how.add_argument("--symmetric-key", metavar="KEY", help="the device's own key (base64)")
    how.add_argument(
        "--group-key",
        metavar="KEY",
        help="an enrollment group's key: the device key is derived from it and the id",
    )
    sub.add_argument(
        "--payload",
        type=json_or_file,
        metavar="JSON|@FILE",
        help="custom data for the allocation",
    )
    sub.add_argument(
        "--id-scope", help="the service's ID scope (default: the --service's, from --data-dir)"
    )
    sub.add_argument(
        "--force-registration",
        action="store_true",
        help="register afresh even when already assigned (forceRegistration=true)",
    )
    sub.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds to wait for the outcome (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    add_data_dir(sub)
    sub.add_argument(
        "--url", help="the server's URL (default: where the data directory's server listens)"
    )
    sub.add_argument(
        "--ca-file",
        type=input_file,
        help="the CA file to trust (default: the data directory's server CA)",
    )
    sub.add_argument(
        "--service", default=DEFAULT_SERVICE, help="provisioning service (default: default)"
    )
    add_options(sub)
    add_json_flag(sub)
    sub.set_defaults(func=_register, parser=sub)


# --- credentials ---------------------------------------------------------------------------


def _check_options(args: argparse.Namespace) -> None:
    chosen = [flag for flag in ("cert", "symmetric_key", "group_key") if getattr(args, flag)]
    if len(chosen) != 1:
        args.parser.error("give exactly one of --cert (with --key), --symmetric-key, --group-key")
    if args.cert and not args.key:
        args.parser.error("--cert needs --key, the device's private key")
    if (args.key or args.key_password_file) and not args.cert:
        args.parser.error("--key and --key-password-file go with --cert")
    if args.timeout <= 0:
        args.parser.error("--timeout must be positive")


def _tls(args: argparse.Namespace) -> ssl.SSLContext:
    context = trust(local_ca_file(args))
    if not args.cert:
        return context
    given = read_password_file(args.key_password_file) if args.key_password_file else None
    # Read here first, so that each file's own fault is named (not a certificate, encrypted
    # without --key-password-file, another certificate's key) before OpenSSL reads them again.
    chain = load_certificates(args.cert)
    key = load_private_key(args.key, given, flag="--key-password-file")
    if not _same_key(key, chain[0]):
        raise DeviceCredentialsError(
            f"the key in {args.key} does not belong to the certificate in {args.cert} "
            "(the first certificate of the chain file must be the device's own)"
        )

    def password() -> bytes:
        # A callable, so that OpenSSL never prompts on the terminal for an encrypted key.
        return given or b""

    try:
        context.load_cert_chain(args.cert, args.key, password)
    except (OSError, ssl.SSLError) as exc:
        raise DeviceCredentialsError(
            f"cannot use {args.cert} with {args.key}: {exc} (is the key the certificate's, "
            "and its password right?)"
        ) from exc
    return context


def _same_key(key: PrivateKey, certificate: x509.Certificate) -> bool:
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == certificate.public_key().public_bytes(*spki)


def _authorization(args: argparse.Namespace, scope: str, now: float) -> str | None:
    if args.cert:
        return None  # X.509 devices authenticate in the TLS handshake and send no token
    key = args.symmetric_key or derive_device_key(args.group_key, args.registration_id)
    resource = f"{scope}/registrations/{args.registration_id}"
    return build_sas_token(key, resource, int(now) + DEVICE_TOKEN_SECONDS, "registration")


# --- the flow ------------------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS


class DeviceSession:
    """One device's register-and-poll exchange with the device API."""

    def __init__(
        self,
        http: httpx.Client,
        scope: str,
        registration_id: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        ca_file: Path | None = None,
    ) -> None:
        self._http = http
        self._ca_file = ca_file
        self._base = f"/{quote(scope, safe='')}/registrations/{quote(registration_id, safe='')}"
        self._sleep = sleep
        self._clock = clock

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, self._base + path, **kwargs)
        except httpx.TimeoutException as exc:
            raise RegistrationTimeoutError(f"no answer from the device API: {exc}") from exc
        except httpx.HTTPError as exc:
            url = str(self._http.base_url).rstrip("/")
            raise transport_error(exc, url, self._ca_file) from exc
        if response.status_code >= 400:
            raise remote_error(response)
        return response

    def register(self, body: dict[str, Any], *, force: bool, timeout: float) -> dict[str, Any]:
        deadline = self._clock() + timeout
        params = {"forceRegistration": "true"} if force else {}
        response = self._send("PUT", "/register", json=body, params=params)
        operation = _operation(response)
        while operation.get("status") == "assigning":
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise RegistrationTimeoutError(
                    f"still assigning after {timeout:g} s (operation {operation['operationId']})"
                )
            self._sleep(min(_retry_after(response), remaining))
            response = self._send("GET", f"/operations/{quote(operation['operationId'], safe='')}")
            operation = _operation(response)
        return operation


def _operation(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise UnexpectedResponseError(f"the device API answered {response.text[:200]!r}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("operationId"), str):
        raise UnexpectedResponseError(f"the device API answered without an operationId: {data}")
    return data


def _register(args: argparse.Namespace) -> int:
    _check_options(args)
    payload = read_json_option(args.payload, "--payload") if args.payload else None
    tls = _tls(args)
    ask = prepare(args)
    scope = args.id_scope or container(args).directory.get(args.service).id_scope
    body: dict[str, Any] = {"registrationId": args.registration_id}
    if payload is not None:
        body["payload"] = payload
    if ask is not None:
        body["csr"] = ask.csr
    url = local_url(args)
    headers = {"Accept": "application/json"}
    authorization = _authorization(args, scope, time.time())
    if authorization:
        headers["Authorization"] = authorization
    with httpx.Client(
        base_url=url,
        verify=tls,
        timeout=args.timeout,
        headers=headers,
        params={"api-version": DEVICE_API_VERSION},
    ) as http:
        session = DeviceSession(http, scope, args.registration_id, ca_file=local_ca_file(args))
        try:
            operation = session.register(body, force=args.force_registration, timeout=args.timeout)
        except ServerNotTrustedError:
            raise  # the device did not trust the server; the service refused nothing
        except AuthenticationError as exc:
            raise DeviceRefusedError(
                f"the service refused the credentials of '{args.registration_id}' "
                f"({remote_detail(exc)}); "
                f"'devprov audit --service {args.service}' on the server says why"
            ) from exc
    return _report(args, scope, operation, ask)


# --- output --------------------------------------------------------------------------------


def _enrollment(state: dict[str, Any]) -> str:
    for method in ("x509", "symmetricKey"):
        group = (state.get(method) or {}).get("enrollmentGroupId")
        if group:
            return f"enrollment group '{group}'"
    return "individual enrollment" if state else "-"


def _report(
    args: argparse.Namespace, scope: str, operation: dict[str, Any], ask: CertificateAsk | None
) -> int:
    status = str(operation.get("status"))
    state: dict[str, Any] = operation.get("registrationState") or {}
    rid = state.get("registrationId") or args.registration_id
    enrollment = _enrollment(state)
    if status == "assigned":
        substatus = f" ({state['substatus']})" if state.get("substatus") else ""
        lines = [
            f"assigned: '{rid}' is device '{state.get('deviceId')}' on {state.get('assignedHub')}",
            f"  status:      {status}{substatus}",
            f"  hub:         {state.get('assignedHub')}",
            f"  device id:   {state.get('deviceId')}",
        ]
        code = EXIT_ASSIGNED
        if ask is not None:
            try:
                lines += save(ask, args, operation)
            except NoCertificateIssuedError as exc:
                lines.append(f"  certificate: none: {exc.message}")
                code = EXIT_FAILED
    elif status == "disabled":
        lines = [f"disabled: '{rid}' was not assigned: its {enrollment} is disabled"]
        code = EXIT_DISABLED
    else:
        lines = [f"{status}: '{rid}' was not assigned"]
        code = EXIT_FAILED
    if state.get("errorCode") or state.get("errorMessage"):
        lines.append(f"  error:       {state.get('errorCode')}: {state.get('errorMessage')}")
        # A device is told DPS's generic error; the server keeps the precise one.
        lines.append(f"  the reason:  devprov registration show {shlex.quote(str(rid))}")
    lines += [
        f"  enrollment:  {enrollment}",
        f"  id scope:    {scope}",
        f"  operation:   {operation.get('operationId')}",
    ]
    if state.get("payload"):
        lines.append(f"  payload:     {json.dumps(state['payload'], sort_keys=True)}")
    emit(args, operation, "\n".join(lines))
    return code

"""DPS shared access signatures: parsing, building and verifying SAS tokens, and policy rights.

A token is ``SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>[&skn=<key name>]``
(docs/dps-wire.md#service-sas-tokens for the service API, docs/dps-wire.md#device-sas-tokens for
devices). The signature is
``base64(HMAC-SHA256(base64decode(key), sr + "\\n" + se))``, where ``sr`` is the text exactly as
it appears in the token: Python and C send and sign it URL-encoded, Node sends and signs it raw,
and signing what was sent covers all five clients observed
(docs/sdk-clients.md#sas-tokens-across-the-sdks).

Where the DPS documents are silent, devprov follows Azure's own token parser,
``Microsoft.Azure.Devices.Client.SharedAccessSignature`` and its ``SharedAccessSignatureConstants``
(Azure/azure-iot-sdks, csharp/Microsoft.Azure.Devices.Client/Common/Security/), "the C# parser"
below. Pure: the validation time is passed in as ``now``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from urllib.parse import quote, unquote, urlsplit

from devprov.core.error import (
    InvalidSasSignatureError,
    InvalidSymmetricKeyError,
    MalformedSasTokenError,
    MissingRightError,
    SasTokenExpiredError,
)

SAS_SCHEME = "SharedAccessSignature"

# The longest token a known client builds stays under 2 KiB: a device sr is the id scope plus
# "/registrations/" plus at most 128 characters (docs/dps-wire.md#device-sas-tokens,
# docs/dps-wire.md#registration-and-enrollment-ids), a service sr a URL of a host name (at most 253
# characters, RFC 1035 2.3.4) and port; URL-encoding at most triples either; sig is 44 characters
# before encoding, se a dozen digits, skn at most MAX_KEY_NAME_LENGTH characters. 4 KiB admits all
# of them and turns a megabyte "token" away before any work is done on it.
MAX_SAS_TOKEN_LENGTH = 4096

# HTTPS's default port (RFC 9110 4.2.2): a client given a host name alone connects to it.
HTTPS_PORT = 443

# The C# parser's MaxKeyNameLength.
MAX_KEY_NAME_LENGTH = 256

# 9999-12-31T23:59:59Z: the last second a .NET DateTime (the C# parser adds se to the epoch as
# one) or a Python datetime can hold. A larger se is no expiry any implementation can represent.
MAX_EXPIRY = 253_402_300_799

# docs/dps-wire.md#attestation-mechanisms: keys a user supplies must be valid base64 of 16 to 64
# bytes.
MIN_SYMMETRIC_KEY_BYTES = 16
MAX_SYMMETRIC_KEY_BYTES = 64
_MAX_KEY_TEXT = 4 * math.ceil(MAX_SYMMETRIC_KEY_BYTES / 3)  # padded base64 of the longest key

# Everything after the scheme is printable ASCII without spaces: every value is URL-encoded, or,
# for Node's raw device sr, made of registration id characters and '/'.
_FIELD_TEXT = re.compile(r"[!-~]+")
# Decimal digits, no sign, no leading zero. The signature covers se as sent while verification
# re-signs the integer, so a padded se could only fail as a bad signature; no SDK pads it.
_EXPIRY = re.compile(r"0|[1-9][0-9]{0,19}")
# The only signature any SDK makes: standard, padded base64 of a 32-byte HMAC-SHA256.
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{43}=")


@dataclass(frozen=True)
class SasToken:
    resource: str  # sr exactly as received, still URL-encoded if it was: it is what was signed
    signature: str  # sig, URL-decoded with unquote (not unquote_plus: base64 has '+')
    expiry: int  # se, seconds since the Unix epoch
    key_name: str | None  # skn, URL-decoded; None when absent (the Python device SDK sends none)


class Right(Enum):
    """The rights of a DPS shared access policy, spelled as ARM spells them
    (docs/dps-wire.md#shared-access-policies-and-rights)."""

    SERVICE_CONFIG = "ServiceConfig"
    ENROLLMENT_READ = "EnrollmentRead"
    ENROLLMENT_WRITE = "EnrollmentWrite"
    DEVICE_CONNECT = "DeviceConnect"
    REGISTRATION_STATUS_READ = "RegistrationStatusRead"
    REGISTRATION_STATUS_WRITE = "RegistrationStatusWrite"


# --- parsing ---------------------------------------------------------------------------------


def _fields(text: str) -> dict[str, str]:
    """``k=v&k=v`` with names compared case-insensitively and empty fields skipped, as the C#
    parser does; a repeated name is refused (the C# parser's Dictionary.Add throws)."""
    fields: dict[str, str] = {}
    for part in text.split("&"):
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals or not name:
            raise MalformedSasTokenError(f"the SAS token field {part[:32]!r} is not name=value")
        key = name.lower()
        if key in fields:
            raise MalformedSasTokenError(f"the SAS token has more than one {key!r} field")
        fields[key] = value
    missing = [name for name in ("sr", "sig", "se") if not fields.get(name)]
    if missing:
        raise MalformedSasTokenError(f"the SAS token lacks {', '.join(missing)}")
    return fields


def _expiry(text: str) -> int:
    # Digits only: int() would also take "+1", " 1", "1_000" and other scripts' digits.
    if not _EXPIRY.fullmatch(text) or int(text) > MAX_EXPIRY:
        raise MalformedSasTokenError(
            f"the SAS token's se {text[:24]!r} is not a number of seconds since 1970"
        )
    return int(text)


def _key_name(text: str | None) -> str | None:
    if text is None:
        return None
    name = unquote(text)
    if not 1 <= len(name) <= MAX_KEY_NAME_LENGTH:
        raise MalformedSasTokenError(
            f"the SAS token's skn must have 1 to {MAX_KEY_NAME_LENGTH} characters"
        )
    return name


def parse_sas_token(header: str) -> SasToken:
    """Parse an Authorization header value or MQTT password.

    Fields may come in any order (docs/dps-wire.md#service-sas-tokens); names other than sr, sig,
    se and skn are ignored, as the C# parser ignores them.

    Raises :class:`MalformedSasTokenError` (an authentication error: DPS answers 401).
    """
    if len(header) > MAX_SAS_TOKEN_LENGTH:
        raise MalformedSasTokenError(
            f"the SAS token has {len(header)} characters; at most {MAX_SAS_TOKEN_LENGTH} are accepted"
        )
    scheme, space, rest = header.partition(" ")
    if scheme != SAS_SCHEME or not space:
        raise MalformedSasTokenError(f"the credential is not a '{SAS_SCHEME} ...' token")
    if not _FIELD_TEXT.fullmatch(rest):
        raise MalformedSasTokenError(
            "a SAS token's fields are printable ASCII without spaces (values are URL-encoded)"
        )
    fields = _fields(rest)
    signature = unquote(fields["sig"])
    if not _SIGNATURE.fullmatch(signature):
        raise MalformedSasTokenError("the SAS token's sig is not base64 of an HMAC-SHA256")
    return SasToken(
        resource=fields["sr"],
        signature=signature,
        expiry=_expiry(fields["se"]),
        key_name=_key_name(fields.get("skn")),
    )


# --- keys, signatures, tokens ----------------------------------------------------------------


def parse_symmetric_key(value: str) -> bytes:
    """The bytes of a base64 symmetric key of 16 to 64 bytes
    (docs/dps-wire.md#attestation-mechanisms).

    Raises :class:`InvalidSymmetricKeyError`; the message never contains the key.
    """
    if len(value) > _MAX_KEY_TEXT:
        raise InvalidSymmetricKeyError(
            f"a symmetric key is at most {_MAX_KEY_TEXT} base64 characters "
            f"({MAX_SYMMETRIC_KEY_BYTES} bytes); this one has {len(value)}"
        )
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError as exc:  # binascii.Error, and non-ASCII text
        raise InvalidSymmetricKeyError("the symmetric key is not valid base64") from exc
    if not MIN_SYMMETRIC_KEY_BYTES <= len(key) <= MAX_SYMMETRIC_KEY_BYTES:
        raise InvalidSymmetricKeyError(
            f"a symmetric key must be {MIN_SYMMETRIC_KEY_BYTES} to {MAX_SYMMETRIC_KEY_BYTES} "
            f"bytes; this one has {len(key)}"
        )
    return key


def _hmac_b64(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def build_signature(key_b64: str, resource: str, expiry: int) -> str:
    """``base64(HMAC-SHA256(key, resource + "\\n" + expiry))``, ``resource`` signed exactly as given.

    Raises :class:`InvalidSymmetricKeyError` for a malformed key.
    """
    return _hmac_b64(parse_symmetric_key(key_b64), f"{resource}\n{expiry}")


def build_sas_token(
    key_b64: str,
    resource: str,
    expiry: int,
    key_name: str | None = None,
    *,
    encode_resource: bool = True,
) -> str:
    """A token as the SDKs build them, fields in the order sr, sig, se, skn (Python and C).

    ``encode_resource`` sends and signs ``quote(resource, safe="")``, as the Python device SDK
    does (docs/sdk-clients.md#python-device-mqtt-connect-and-sas-token); False sends and signs the
    raw text, as Node does (docs/sdk-clients.md#node-device-http-transport).
    """
    if not 0 <= expiry <= MAX_EXPIRY:
        raise ValueError(f"se must be 0 to {MAX_EXPIRY}")
    sr = quote(resource, safe="") if encode_resource else resource
    if not sr or not _FIELD_TEXT.fullmatch(sr) or "&" in sr:
        raise ValueError(f"{resource[:64]!r} cannot be sent unencoded as a SAS token's sr")
    token = f"{SAS_SCHEME} sr={sr}&sig={quote(build_signature(key_b64, sr, expiry), safe='')}"
    token += f"&se={expiry}"
    if key_name is not None:
        token += f"&skn={quote(key_name, safe='')}"
    return token


def derive_device_key(group_key_b64: str, registration_id: str) -> str:
    """A device's key in a symmetric-key enrollment group (docs/dps-wire.md#group-key-derivation):
    ``base64(HMAC-SHA256(base64decode(group key), registration id))``.

    The id is used as the device sends it: the device derived its key from its own spelling.
    Raises :class:`InvalidSymmetricKeyError` for a malformed group key.
    """
    return _hmac_b64(parse_symmetric_key(group_key_b64), registration_id)


# --- verification ----------------------------------------------------------------------------


def verify_sas_token(
    token: SasToken,
    keys: Sequence[str],
    *,
    now: datetime,
    clock_skew: timedelta = timedelta(0),
) -> None:
    """Check the signature against each key (primary, secondary), then the expiry.

    The signature comes first so that an expired token is reported as such only when it is
    genuine. Every key is tried, each with a constant-time comparison, so the time taken does not
    tell which key matched. The caller picks ``keys``: a policy's by ``token.key_name``, or an
    enrollment's; the resource is checked by :func:`resource_matches_device` or
    :func:`resource_matches_service`.

    ``se`` is the last second the token is good for: it is expired when ``se + clock_skew <
    now``, so a token is still accepted at exactly ``se``. That is the C# parser's ``IsExpired``
    (``ExpiresOn + MaxClockSkew < DateTime.UtcNow``). The C# parser grants five minutes of skew;
    devprov grants none unless asked, since every SDK renews its token well before ``se``
    (Python 120 s before, docs/dps-wire.md#device-sas-tokens).

    Raises :class:`InvalidSasSignatureError`, :class:`SasTokenExpiredError`, and
    :class:`InvalidSymmetricKeyError` for a malformed key in ``keys``.
    """
    verify_sas_token_against(token, [keys], now=now, clock_skew=clock_skew)


def verify_sas_token_against(
    token: SasToken,
    key_sets: Sequence[Sequence[str]],
    *,
    now: datetime,
    clock_skew: timedelta = timedelta(0),
) -> int:
    """The index of the first of ``key_sets`` (each an owner's primary and secondary key) whose
    key signed ``token``; then the expiry of the token, as :func:`verify_sas_token` checks it.

    Several owners share a key name (a policy name exists in every service, a device may belong
    to several enrollment groups), so which owner signed is known only once every signature is
    checked. Only then is the expiry judged: an expired token is reported as expired however many
    owners were tried before or after the one that signed it, and a forged one as a bad
    signature, never as expired.

    Raises :class:`InvalidSasSignatureError` when no key signed the token,
    :class:`SasTokenExpiredError` when one did and ``se`` is past, and
    :class:`InvalidSymmetricKeyError` for a malformed key.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    if not key_sets or not all(key_sets):
        raise ValueError("verify_sas_token_against needs at least one key per owner")
    parsed = [[parse_symmetric_key(key) for key in keys] for keys in key_sets]
    message = f"{token.resource}\n{token.expiry}"
    presented = token.signature.encode("utf-8")
    signer: int | None = None
    for index, keys in enumerate(parsed):
        matched = False
        for key in keys:  # every key of an owner, so the time does not tell which one matched
            expected = _hmac_b64(key, message).encode("ascii")
            matched |= hmac.compare_digest(expected, presented)
        if matched:
            signer = index
            break
    if signer is None:
        count = sum(len(keys) for keys in key_sets)
        owners = "" if len(key_sets) == 1 else f" of {len(key_sets)} owners"
        raise InvalidSasSignatureError(
            f"the SAS token's signature matches none of the {count} key(s){owners} it was checked "
            "against (wrong key, or sr or se changed after signing)"
        )
    if token.expiry + clock_skew.total_seconds() < now.timestamp():
        raise SasTokenExpiredError(
            f"the SAS token expired at se={token.expiry}, before {now.isoformat()}"
        )
    return signer


# --- resources -------------------------------------------------------------------------------


def resource_matches_device(token_resource: str, id_scope: str, registration_id: str) -> bool:
    """True when a device token's sr, URL-decoded, is ``{idScope}/registrations/{registrationId}``
    (docs/dps-wire.md#device-sas-tokens), compared case-insensitively as DPS compares scopes and ids
    (docs/dps-wire.md#registration-and-enrollment-ids).

    Decoding once accepts the encoded form (Python, C) and the raw one (Node): ids cannot hold '%'.
    """
    expected = f"{id_scope}/registrations/{registration_id}"
    return unquote(token_resource).lower() == expected.lower()


def _normalised(text: str) -> str:
    text = unquote(text).lower()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    return text.rstrip("/")


def resource_matches_service(
    token_resource: str, host_names: Collection[str], *, path: str = ""
) -> bool:
    """True when a service token's sr covers ``path`` on one of ``host_names``.

    DPS's sr is the lower-case resource URI from the host name on, and covers by path segment:
    "``/a/b`` covers ``/a/b/c`` but not ``/a/bc``" (docs/dps-wire.md#service-sas-tokens). sr and
    host names are URL-decoded, lower-cased and stripped of ``https://``/``http://`` and trailing
    slashes, since the Python service client signs whatever endpoint text the user gave it, scheme
    and port included (docs/sdk-clients.md#service-sdk-sas-tokens: ``localhost%3A8443``,
    ``https%3A%2F%2Flocalhost%3A8443``).

    With the default ``path`` the sr must name a host exactly; pass the request path (without its
    query) to honour tokens scoped below the host (``host/enrollments`` covers ``/enrollments/x``).

    A self-hosted server cannot know every name it is reached by (an alias, an address, a port
    rewritten by a proxy), so it decides which names it accepts: ``host_names`` with and without
    port, e.g. ``{"localhost:8443", "localhost", "127.0.0.1:8443", "127.0.0.1"}``; devprov's
    server passes its certificate's host names plus the request's Host header. The Host header
    is the client's word, so this check catches a token minted for another service by mistake;
    what authenticates the caller is the key.
    """
    resource = _normalised(token_resource)
    if not resource:
        return False
    suffix = unquote(path).lower()
    if suffix and not suffix.startswith("/"):
        suffix = f"/{suffix}"
    for host in host_names:
        name = _normalised(host)
        target = f"{name}{suffix}".rstrip("/")
        if name and (target == resource or target.startswith(f"{resource}/")):
            return True
    return False


# --- connection strings ----------------------------------------------------------------------


def build_host_name(url: str) -> str:
    """The ``HostName`` of a connection string for the server at ``url`` (``https://host:port``;
    the scheme may be left out): the host alone on port 443, ``host:port`` on any other port.

    Node's service SDK puts HostName straight into a DNS lookup and connects to 443, so
    ``localhost:443`` fails (``ENOTFOUND``) where ``localhost`` works; the Python service SDK
    takes either (docs/dps-wire.md#service-connection-strings). A port that is not a
    number is left as given: this renders, it does not validate.
    """
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = parts.netloc.rpartition("@")[2]
    try:
        port = parts.port
    except ValueError:
        return host
    return host.rpartition(":")[0] if port == HTTPS_PORT else host


def build_connection_string(url: str, policy: str, key: str) -> str:
    """``HostName=<host[:port]>;SharedAccessKeyName=<policy>;SharedAccessKey=<key>`` for the
    server at ``url`` (docs/dps-wire.md#service-connection-strings), with
    :func:`build_host_name`'s HostName."""
    return f"HostName={build_host_name(url)};SharedAccessKeyName={policy};SharedAccessKey={key}"


# --- rights ----------------------------------------------------------------------------------


def require_right(granted: Collection[str], needed: Right, policy: str) -> None:
    """Raise :class:`MissingRightError` unless ``granted`` holds ``needed``.

    Names compare case-insensitively. No right implies another: DPS documents none
    (docs/dps-wire.md#service-sas-tokens), so EnrollmentWrite does not grant EnrollmentRead.
    """
    if isinstance(granted, str):
        raise TypeError("granted is a collection of right names, not one string")
    if not any(right.strip().lower() == needed.value.lower() for right in granted):
        raise MissingRightError(
            f"the shared access policy {policy!r} does not grant {needed.value}"
        )

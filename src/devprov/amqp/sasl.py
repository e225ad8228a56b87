"""The server's side of AMQP's SASL layer (OASIS AMQP 1.0 part 1, section 5.3), pure: which
mechanisms are offered, and what a client's sasl-init establishes
(docs/amqp-protocol.md#sasl).

Three mechanisms, each completed by sasl-init alone (no challenge): PLAIN (RFC 4616; DPS's
symmetric-key devices put their SAS token in the password), EXTERNAL (RFC 4422 appendix A: the
TLS client certificate, offered only when the client presented one) and ANONYMOUS (RFC 4505).
Whether the identity is good is the application's question, asked at attach.
"""

from __future__ import annotations

from devprov.amqp.application import SaslIdentity
from devprov.amqp.frames import SaslInit

PLAIN, EXTERNAL, ANONYMOUS = "PLAIN", "EXTERNAL", "ANONYMOUS"


class SaslRefused(Exception):
    """The sasl-init cannot be accepted: answer sasl-outcome ``auth`` and close."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def offered_mechanisms(*, client_certificate: bool) -> tuple[str, ...]:
    """What the server offers in sasl-mechanisms: EXTERNAL first when the client presented a
    TLS certificate (a client takes the first it supports), then PLAIN and ANONYMOUS."""
    return (EXTERNAL, PLAIN, ANONYMOUS) if client_certificate else (PLAIN, ANONYMOUS)


def authenticate(init: SaslInit, offered: tuple[str, ...]) -> SaslIdentity:
    """The identity ``init`` establishes; raises :class:`SaslRefused`."""
    if init.mechanism not in offered:
        raise SaslRefused(f"mechanism {init.mechanism!r:.40} was not offered")
    response = init.initial_response or b""
    if init.mechanism == PLAIN:
        username, password = parse_plain(response)
        return SaslIdentity(PLAIN, username, password, init.hostname)
    if init.mechanism == EXTERNAL:
        # The response is an authorization identity (RFC 4422 appendix A); kept as the user
        # name when given, the certificate itself is the application's to judge.
        authzid = _text(response, "EXTERNAL's authorization identity") if response else None
        return SaslIdentity(EXTERNAL, authzid, None, init.hostname)
    return SaslIdentity(ANONYMOUS, None, None, init.hostname)


def parse_plain(response: bytes) -> tuple[str, str]:
    """PLAIN's ``[authzid] NUL authcid NUL passwd`` (RFC 4616 section 2): (authcid, passwd).
    The authorization identity is not used: DPS names the device in the user name."""
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise SaslRefused("a PLAIN response is [authzid] NUL authcid NUL passwd")
    _authzid, authcid, passwd = parts
    if not authcid:
        raise SaslRefused("a PLAIN response with an empty authentication identity")
    return _text(authcid, "PLAIN's user name"), _text(passwd, "PLAIN's password")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslRefused(f"{what} is not UTF-8") from None

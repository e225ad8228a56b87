"""Revoking operational certificates: serials as operators give them, and a credential policy's
certificate revocation list (RFC 5280 5; docs/operational-certificates.md#revocation).

A CRL is made whenever it is asked for, from what the stores say now: every certificate of the
policy that was revoked and that its current CA issued, under the policy's CRL number, which a
revocation raises (service.credential_policy). core.csr.build_crl makes and signs it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devprov.core.certificate import parse_certificates
from devprov.core.credential_policy import CredentialPolicy, IssuedCertificate
from devprov.core.csr import build_crl
from devprov.core.error import InternalError, InvalidInputError
from devprov.core.issuance import Issuer, PrivateKey, authority_key_identifier

# A CRL's nextUpdate (RFC 5280 5.1.2.5): a day after it is made. devprov makes one whenever it is
# asked, so a relying party that fetches daily always holds a current one; a day also bounds how
# long a cached CRL can miss a revocation.
CRL_VALIDITY = timedelta(days=1)

# A serial as operators copy it: hex digits, optionally in colon-separated pairs (as OpenSSL
# prints them), in either case.
_SERIAL = re.compile(r"[0-9A-Fa-f]+(:[0-9A-Fa-f]+)*")

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class InvalidSerialNumberError(InvalidInputError):
    """A serial number is not hexadecimal (optionally in colon-separated pairs)."""

    code = "InvalidSerialNumber"
    number = 400628


def parse_serial(text: str) -> str:
    """A serial as the stores keep it: upper-case hex without separators or leading zeros."""
    compact = text.strip()
    if not _SERIAL.fullmatch(compact):
        raise InvalidSerialNumberError(
            f"{text!r} is not a serial number: give its hexadecimal digits (colons allowed)"
        )
    return f"{int(compact.replace(':', ''), 16):X}"


def build_policy_crl(
    policy: CredentialPolicy,
    key: PrivateKey,
    revoked: Sequence[IssuedCertificate],
    *,
    now: datetime,
) -> bytes:
    """The DER CRL of ``policy``, signed with its issuing ``key``: the ``revoked`` certificates
    its current CA issued, numbered with the policy's CRL number, from ``now`` (less core.csr's
    back-dating) to ``now`` + CRL_VALIDITY. Raises InternalError when ``key`` is not the CA's."""
    ca = parse_certificates(policy.ca_chain_pem)[0]
    if key.public_key().public_bytes(*_SPKI) != ca.public_key().public_bytes(*_SPKI):
        raise InternalError(
            f"the issuing key file of credential policy '{policy.name}' does not belong to "
            "its CA certificate; restore the policy's own key file"
        )
    issuer = Issuer(ca, key)
    key_id = authority_key_identifier(issuer).key_identifier
    entries = [
        (int(c.serial, 16), c.revoked_at)
        for c in revoked
        if c.revoked_at is not None and _issued_by(c, ca, key_id)
    ]
    crl = build_crl(
        issuer, entries, number=policy.crl_number, now=now, next_update=now + CRL_VALIDITY
    )
    return crl.public_bytes(serialization.Encoding.DER)


def _issued_by(certificate: IssuedCertificate, ca: x509.Certificate, key_id: bytes | None) -> bool:
    """True when ``ca`` (whose key identifier is ``key_id``) issued the certificate: by its
    issuer name and its authorityKeyIdentifier (RFC 5280 4.2.1.1), no signature checked. A policy
    deleted and created again under the same name has a new CA, whose CRL must not list what
    the old one issued."""
    leaf = x509.load_der_x509_certificate(certificate.certificate_der)
    if leaf.issuer != ca.subject:
        return False
    try:
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    return aki.key_identifier is None or aki.key_identifier == key_id

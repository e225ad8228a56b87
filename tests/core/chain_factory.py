"""Certificate builders for the chain-validation tests, with every knob the device profile has a
rule for: basicConstraints and pathLen, keyUsage, extendedKeyUsage, subjectAltName, AKI,
validity, the signing key and the subject key.

The well-formed cases reuse tests.factory (which builds through devprov.core.issuance); these
builders exist for the odd ones the issuance module refuses to make. Nothing is committed: every
key and certificate is generated per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devprov.core.issuance import PrivateKey
from tests.factory import NOW, Ca, ec_key, serial

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE

# Sentinel for "leave this extension out".
ABSENT = None


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


CA_KEY_USAGE = key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)
DEVICE_KEY_USAGE = key_usage(digital_signature=True)


@dataclass(frozen=True)
class Extra:
    """An extension to add verbatim."""

    value: x509.ExtensionType
    critical: bool = False


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def certificate(
    subject: x509.Name,
    *,
    issuer: Ca | None = None,
    key: PrivateKey | None = None,
    signer: PrivateKey | None = None,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=30),
    basic_constraints: x509.BasicConstraints | None = ABSENT,
    basic_constraints_critical: bool = True,
    usage: x509.KeyUsage | None = ABSENT,
    eku: Sequence[x509.ObjectIdentifier] | None = ABSENT,
    eku_critical: bool = False,
    san: Sequence[x509.GeneralName] | None = ABSENT,
    san_critical: bool = False,
    ski: bool = True,
    aki: bool = True,
    aki_critical: bool = False,
    extra: Sequence[Extra] = (),
) -> Ca:
    """One certificate; ``issuer`` None means self-signed (unless ``signer`` says otherwise)."""
    key = key or ec_key()
    signing_key = signer or (issuer.key if issuer else key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if basic_constraints is not None:
        builder = builder.add_extension(basic_constraints, critical=basic_constraints_critical)
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=eku_critical)
    if san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(san)), critical=san_critical
        )
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if aki:
        authority = issuer.key.public_key() if issuer else signing_key.public_key()
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=aki_critical
        )
    for extension in extra:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    return Ca(builder.sign(signing_key, _hash_for(signing_key)), key)


def ca(
    common_name: str,
    parent: Ca | None = None,
    *,
    path_length: int | None = None,
    is_ca: bool = True,
    usage: x509.KeyUsage | None = CA_KEY_USAGE,
    **knobs: object,
) -> Ca:
    """A CA certificate (a root when ``parent`` is None) with the CA knobs exposed."""
    return certificate(
        name(common_name),
        issuer=parent,
        basic_constraints=x509.BasicConstraints(
            ca=is_ca, path_length=path_length if is_ca else None
        ),
        usage=usage,
        **knobs,
    )


def leaf(
    parent: Ca | None,
    common_name: str = "my-device",
    *,
    is_ca: bool | None = False,
    usage: x509.KeyUsage | None = DEVICE_KEY_USAGE,
    eku: Sequence[x509.ObjectIdentifier] | None = (CLIENT_AUTH,),
    **knobs: object,
) -> Ca:
    """A device certificate: CN only, no SAN, clientAuth, like certGen.sh and devprov issue."""
    subject = name(common_name) if common_name else x509.Name([])
    constraints = None if is_ca is None else x509.BasicConstraints(ca=is_ca, path_length=None)
    return certificate(
        subject,
        issuer=parent,
        basic_constraints=constraints,
        usage=usage,
        eku=eku,
        **knobs,
    )


def chain_of(root: Ca, depth: int, *, prefix: str = "Intermediate") -> list[Ca]:
    """``depth`` intermediates below ``root``, top first."""
    cas: list[Ca] = []
    parent = root
    for level in range(depth):
        parent = ca(f"{prefix} {level + 1}", parent)
        cas.append(parent)
    return cas


# --- certGen.sh shapes (docs/sdk-clients.md#certgensh-keys-extensions-and-validity), with
# RSA-2048 instead of 4096 to keep the tests fast: the extensions are what the device profile
# judges, not the key size.

NS_CERT_TYPE = x509.ObjectIdentifier("2.16.840.1.113730.1.1")
NS_COMMENT = x509.ObjectIdentifier("2.16.840.1.113730.1.13")


def certgen_root(key: rsa.RSAPrivateKey) -> Ca:
    """``openssl req -x509 -extensions v3_ca``: AKI carries keyid, issuer and serial."""
    subject = name("Azure IoT Hub CA Cert Test Only")
    serial_number = serial()
    aki = x509.AuthorityKeyIdentifier(
        key_identifier=x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest,
        authority_cert_issuer=[x509.DirectoryName(subject)],
        authority_cert_serial_number=serial_number,
    )
    certificate_ = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial_number)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    return Ca(certificate_, key)


def certgen_intermediate(root: Ca, key: rsa.RSAPrivateKey) -> Ca:
    """``openssl ca -extensions v3_intermediate_ca`` signed by the root."""
    return ca("Azure IoT Hub Intermediate Cert Test Only", root, key=key)


def certgen_device(parent: Ca, common_name: str, key: rsa.RSAPrivateKey) -> Ca:
    """``openssl ca -extensions usr_cert``: CA:FALSE (not critical), nsCertType client,email,
    an nsComment, KU nonRepudiation/digitalSignature/keyEncipherment, EKU clientAuth and
    emailProtection, SKI/AKI, no SAN."""
    return leaf(
        parent,
        common_name,
        key=key,
        basic_constraints_critical=False,
        usage=key_usage(digital_signature=True, content_commitment=True, key_encipherment=True),
        eku=(CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
        extra=(
            Extra(x509.UnrecognizedExtension(NS_CERT_TYPE, b"\x03\x02\x05\xa0")),
            Extra(
                x509.UnrecognizedExtension(
                    NS_COMMENT, b"\x16\x24OpenSSL Generated Client Certificate"
                )
            ),
        ),
    )


def quickstart_self_signed(common_name: str, key: rsa.RSAPrivateKey) -> Ca:
    """DPS quickstart's individual-enrollment certificate: ``openssl req -x509 -extensions
    usr_cert -addext extendedKeyUsage=clientAuth`` with OpenSSL's default config (CA:FALSE not
    critical, nsComment, SKI, AKI, no keyUsage, no SAN)."""
    comment = b"OpenSSL Generated Certificate"
    return leaf(
        None,
        common_name,
        key=key,
        basic_constraints_critical=False,
        usage=None,
        eku=(CLIENT_AUTH,),
        extra=(
            Extra(
                x509.UnrecognizedExtension(NS_COMMENT, b"\x16" + bytes([len(comment)]) + comment)
            ),
        ),
    )


def certgen_edge_device_ca(parent: Ca, device_name: str, key: rsa.RSAPrivateKey) -> Ca:
    """C SDK ``create_edge_device_certificate``: ``CN=<name>.ca`` with ``v3_intermediate_ca``."""
    return ca(f"{device_name}.ca", parent, key=key)


def ec_key_on(curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve)


# --- DER surgery: shapes no builder makes. The signature no longer covers what was changed, so
# these serve rules checked before signatures, or the explanation of a refusal.

ECDSA_SHA256_DER = bytes.fromhex("06082a8648ce3d040302")
ECDSA_SHA384_DER = bytes.fromhex("06082a8648ce3d040303")


def edited(
    certificate_: x509.Certificate, old: bytes, new: bytes, *, last: bool = False
) -> x509.Certificate:
    """``certificate_`` with one occurrence of ``old`` (of the same length) replaced by ``new``:
    the first, or the last."""
    der = certificate_.public_bytes(Encoding.DER)
    assert len(old) == len(new) and old in der
    at = der.rindex(old) if last else der.index(old)
    return x509.load_der_x509_certificate(der[:at] + new + der[at + len(old) :])


def as_version_1(certificate_: x509.Certificate) -> x509.Certificate:
    """``certificate_`` with its explicit ``[0] version v3`` field removed, i.e. an X.509 v1
    certificate (RFC 5280 4.1: version DEFAULT v1); both enclosing lengths shrink by five."""
    der = certificate_.public_bytes(Encoding.DER)
    version = bytes.fromhex("a003020102")
    assert der[:2] == b"\x30\x82" and der[4:6] == b"\x30\x82" and der[8:13] == version
    outer = int.from_bytes(der[2:4], "big") - len(version)
    tbs = int.from_bytes(der[6:8], "big") - len(version)
    rebuilt = b"\x30\x82" + outer.to_bytes(2, "big") + b"\x30\x82" + tbs.to_bytes(2, "big")
    return x509.load_der_x509_certificate(rebuilt + der[13:])

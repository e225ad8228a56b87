"""The local CA's use cases for ``devprov ca``: root, intermediate, device, verification, demo.

The certificate profiles are :mod:`devprov.core.issuance`'s. This module draws what the pure core
must not: keys and serial numbers. It checks the names it is given, has the issuer checked
(:mod:`.issuer`), verifies every signature it makes before anything is written, and leaves the
files to :mod:`.file`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devprov.core.issuance import (
    MAX_SERIAL_BITS,
    Issuer,
    PrivateKey,
    PublicKey,
    build_device_certificate,
    build_intermediate_certificate,
    build_root_certificate,
    build_self_signed_device_certificate,
    build_verification_certificate,
)
from devprov.core.possession import VERIFICATION_CODE_BYTES
from devprov.core.registration_id import (
    validate_registration_id as core_validate_registration_id,
)
from devprov.service.pki.error import InvalidCommonNameError, MalformedKeyError
from devprov.service.pki.file import (
    CERTIFICATE_FILE_MODE,
    KEY_FILE_MODE,
    FileWrite,
    PkiFiles,
    certificates_pem,
    commit_writes,
    ensure_free,
    key_pem,
    pfx_bytes,
    standard_writes,
)
from devprov.service.pki.issuer import LoadedIssuer, clamp_path_length, clamp_validity_days

# --- keys and serial numbers ----------------------------------------------------------------


class KeyType(Enum):
    """The keys ``devprov ca`` generates; the values are the CLI spellings."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"


# P-256 signs about 15x faster than RSA-4096 and verifies as fast
# (docs/performance.md#chain-validation-and-signatures-with-cryptography); the TLS stacks of the
# Azure device SDKs accept it and certGen's PowerShell twin offers it
# (docs/sdk-clients.md#certgensh).
DEFAULT_KEY_TYPE = KeyType.EC_P256

# The exponent every RSA implementation expects (RFC 8017 3.1 allows others; nobody uses them).
RSA_PUBLIC_EXPONENT = 65537

_CURVES: dict[KeyType, ec.EllipticCurve] = {
    KeyType.EC_P256: ec.SECP256R1(),
    KeyType.EC_P384: ec.SECP384R1(),
}
_RSA_BITS = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}
_CURVE_NAMES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}


def generate_private_key(key_type: KeyType = DEFAULT_KEY_TYPE) -> PrivateKey:
    curve = _CURVES.get(key_type)
    if curve is not None:
        return ec.generate_private_key(curve)
    return rsa.generate_private_key(RSA_PUBLIC_EXPONENT, _RSA_BITS[key_type])


def describe_key_type(key: PrivateKey | PublicKey) -> str:
    """``ec-p256``, ``rsa-4096``, ...: the CLI spelling where there is one."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return _CURVE_NAMES.get(key.curve.name, f"ec-{key.curve.name}")
    return "ed25519"


def new_serial() -> int:
    """A random serial in [1, 2**159): positive and at most 20 octets (RFC 5280 4.1.2.2).

    158 bits of entropy on average; the CA/Browser Forum asks for at least 64 (BR 7.1).
    """
    return secrets.randbelow(2**MAX_SERIAL_BITS - 1) + 1


# --- names ----------------------------------------------------------------------------------

# RFC 5280 Appendix A.1: ub-common-name INTEGER ::= 64.
MAX_COMMON_NAME_LENGTH = 64


def validate_registration_id(value: str) -> str:
    """A device made here is an X.509 device: its registration id is its CN, so DPS's rules apply
    with the 64-character limit (core.registration_id). Raises InvalidRegistrationIdError."""
    return core_validate_registration_id(value, x509=True)


def validate_common_name(value: str, what: str = "common name") -> str:
    if not 1 <= len(value) <= MAX_COMMON_NAME_LENGTH or not value.isprintable():
        raise InvalidCommonNameError(
            f"the {what} must be 1 to {MAX_COMMON_NAME_LENGTH} printable characters "
            f"(RFC 5280 ub-common-name); got {value!r}"
        )
    return value


def is_dps_verification_code(value: str) -> bool:
    """DPS's codes are 48 upper-case hex characters (docs/dps-wire.md#verification-codes)."""
    return re.fullmatch(f"[0-9A-F]{{{2 * VERIFICATION_CODE_BYTES}}}", value) is not None


# --- use cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """What one use case made: the certificate, where each file went, what to tell the operator."""

    certificate: x509.Certificate
    key: PrivateKey = field(repr=False)
    files: tuple[tuple[str, Path], ...]  # (role, path): certificate, key, chain, full-chain, pfx
    key_encrypted: bool
    pfx_encrypted: bool | None = None
    warnings: tuple[str, ...] = ()

    @property
    def key_type(self) -> str:
        return describe_key_type(self.key)


def _check_signature(certificate: x509.Certificate, signer: x509.Certificate) -> None:
    try:
        certificate.verify_directly_issued_by(signer)
    except InvalidSignature as exc:
        raise MalformedKeyError(
            "a signature made with the key does not verify with its certificate: the key file "
            "is damaged; nothing was written"
        ) from exc


def _whole_seconds(now: datetime) -> datetime:
    # Certificates keep whole seconds (RFC 5280 4.1.2.5); a child made with the same `now` as its
    # issuer must compare as "not after" it, not as a few microseconds past.
    return now.replace(microsecond=0)


@dataclass(frozen=True)
class NewKey:
    """What every use case needs to know about the key and files it makes."""

    days: int
    key_type: KeyType = DEFAULT_KEY_TYPE
    password: bytes | None = None  # encrypts the new key file
    overwrite: bool = False


def create_root(
    files: PkiFiles, new: NewKey, *, common_name: str, path_length: int | None, now: datetime
) -> Issued:
    validate_common_name(common_name)
    ensure_free([files.certificate, files.key, files.chain], overwrite=new.overwrite)
    key = generate_private_key(new.key_type)
    certificate = build_root_certificate(
        key,
        common_name,
        serial=new_serial(),
        now=_whole_seconds(now),
        days=new.days,
        path_length=path_length,
    )
    _check_signature(certificate, certificate)
    writes = standard_writes(files, key, [certificate], new.password)
    return Issued(certificate, key, commit_writes(writes, new.overwrite), new.password is not None)


def create_intermediate(
    files: PkiFiles,
    issuer: LoadedIssuer,
    new: NewKey,
    *,
    common_name: str,
    path_length: int | None,
    now: datetime,
) -> Issued:
    now = _whole_seconds(now)
    validate_common_name(common_name)
    path_length, path_notes = clamp_path_length(path_length, issuer)
    days, day_notes = clamp_validity_days(new.days, issuer, now)
    ensure_free([files.certificate, files.key, files.chain], overwrite=new.overwrite)
    key = generate_private_key(new.key_type)
    certificate = build_intermediate_certificate(
        key.public_key(),
        common_name,
        issuer.issuer,
        serial=new_serial(),
        now=now,
        days=days,
        path_length=path_length,
    )
    _check_signature(certificate, issuer.issuer.certificate)
    writes = standard_writes(files, key, [certificate, *issuer.chain], new.password)
    warnings = issuer.warnings + path_notes + day_notes
    written = commit_writes(writes, new.overwrite)
    return Issued(certificate, key, written, new.password is not None, warnings=warnings)


def create_device(
    files: PkiFiles,
    issuer: LoadedIssuer | None,
    new: NewKey,
    *,
    registration_id: str,
    now: datetime,
    pfx: bool = False,
    pfx_password: bytes | None = None,
) -> Issued:
    """A device certificate signed by ``issuer``, or self-signed when ``issuer`` is None."""
    now = _whole_seconds(now)
    validate_registration_id(registration_id)
    days, notes = clamp_validity_days(new.days, issuer, now) if issuer else (new.days, ())
    targets = [files.certificate, files.key, files.chain, files.full_chain]
    ensure_free([*targets, files.pfx] if pfx else targets, overwrite=new.overwrite)
    key = generate_private_key(new.key_type)
    serial = new_serial()
    if issuer is None:
        certificate = build_self_signed_device_certificate(
            key, registration_id, serial=serial, now=now, days=days
        )
        chain = [certificate]
    else:
        certificate = build_device_certificate(
            key.public_key(), registration_id, issuer.issuer, serial=serial, now=now, days=days
        )
        chain = [certificate, *issuer.chain]
    _check_signature(certificate, chain[1] if issuer else certificate)
    writes = standard_writes(files, key, chain, new.password)
    writes.append(
        FileWrite("full-chain", files.full_chain, certificates_pem(chain), CERTIFICATE_FILE_MODE)
    )
    if pfx:
        data = pfx_bytes(registration_id, key, chain, pfx_password)
        writes.append(FileWrite("pfx", files.pfx, data, KEY_FILE_MODE))
    written = commit_writes(writes, new.overwrite)
    warnings = (issuer.warnings if issuer else ()) + notes
    pfx_encrypted = (pfx_password is not None) if pfx else None
    return Issued(certificate, key, written, new.password is not None, pfx_encrypted, warnings)


def create_verification(
    certificate_path: Path,
    issuer: LoadedIssuer,
    new: NewKey,
    *,
    code: str,
    key_path: Path | None,
    now: datetime,
) -> Issued:
    """A proof-of-possession certificate, CN = ``code``, signed by ``issuer``
    (docs/dps-wire.md#proof-of-possession).

    Its key is thrown away unless ``key_path`` is given: only the signature matters.
    """
    now = _whole_seconds(now)
    validate_common_name(code, "verification code")
    notes: tuple[str, ...] = ()
    if not is_dps_verification_code(code):
        notes = (f"{code!r} is not shaped like a DPS verification code (48 upper-case hex)",)
    days, day_notes = clamp_validity_days(new.days, issuer, now)
    targets = [certificate_path] if key_path is None else [certificate_path, key_path]
    ensure_free(targets, overwrite=new.overwrite)
    key = generate_private_key(new.key_type)
    certificate = build_verification_certificate(
        key.public_key(), code, issuer.issuer, serial=new_serial(), now=now, days=days
    )
    _check_signature(certificate, issuer.issuer.certificate)
    writes = [
        FileWrite(
            "certificate", certificate_path, certificates_pem([certificate]), CERTIFICATE_FILE_MODE
        )
    ]
    if key_path is not None:
        writes.append(FileWrite("key", key_path, key_pem(key, new.password), KEY_FILE_MODE))
    written = commit_writes(writes, new.overwrite)
    key_encrypted = key_path is not None and new.password is not None
    return Issued(
        certificate, key, written, key_encrypted, None, notes + issuer.warnings + day_notes
    )


# --- the demo -------------------------------------------------------------------------------

DEMO_ROOT_NAME = "root"
DEMO_INTERMEDIATE_NAME = "intermediate"
DEMO_ROOT_COMMON_NAME = "devprov Test Root CA"
DEMO_INTERMEDIATE_COMMON_NAME = "devprov Test Intermediate CA"


@dataclass(frozen=True)
class DemoResult:
    directory: Path
    root: Issued
    intermediate: Issued
    device: Issued


def build_demo(
    directory: Path,
    *,
    key_type: KeyType,
    days: int,
    device_name: str,
    now: datetime,
    overwrite: bool = False,
) -> DemoResult:
    """Root, intermediate (pathLen 0: it signs devices only) and one device, keys unencrypted."""
    validate_registration_id(device_name)
    root_files = PkiFiles(directory / DEMO_ROOT_NAME)
    intermediate_files = PkiFiles(directory / DEMO_INTERMEDIATE_NAME)
    device_files = PkiFiles(directory / device_name)
    every = [
        path
        for f in (root_files, intermediate_files, device_files)
        for path in (f.certificate, f.key, f.chain)
    ]
    ensure_free([*every, device_files.full_chain], overwrite=overwrite)
    new = NewKey(key_type=key_type, days=days, overwrite=overwrite)
    root = create_root(
        root_files, new, common_name=DEMO_ROOT_COMMON_NAME, path_length=None, now=now
    )
    root_issuer = LoadedIssuer(Issuer(root.certificate, root.key), (root.certificate,))
    intermediate = create_intermediate(
        intermediate_files,
        root_issuer,
        new,
        common_name=DEMO_INTERMEDIATE_COMMON_NAME,
        path_length=0,
        now=now,
    )
    intermediate_issuer = LoadedIssuer(
        Issuer(intermediate.certificate, intermediate.key),
        (intermediate.certificate, root.certificate),
    )
    device = create_device(
        device_files, intermediate_issuer, new, registration_id=device_name, now=now
    )
    return DemoResult(directory, root, intermediate, device)

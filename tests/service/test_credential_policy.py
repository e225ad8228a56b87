"""The credential policy use cases over real SQLite and real key files: a generated CA and an
imported one (every refusal with its accepted twin, nothing stored after a refusal), listing,
showing and deleting, and the audit trail of each change."""

from __future__ import annotations

import re
import secrets
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from devprov.core import error as e
from devprov.core.credential_policy import (
    CaOrigin,
    InvalidCredentialPolicyError,
    IssuedCertificate,
)
from devprov.core.enrollment import EnrollmentKind
from devprov.core.issuance import build_intermediate_certificate, build_root_certificate
from devprov.service.audit import AuditTrail
from devprov.service.credential_policy import (
    CredentialPolicies,
    CredentialPolicyInUseError,
    CredentialPolicyNotFoundError,
)
from devprov.service.enrollment import EnrollmentService
from devprov.service.issuing_ca import (
    CA_VALIDITY_DAYS,
    MAX_CA_CHAIN_LENGTH,
    IssuingCaChainTooLongError,
    IssuingKeyMismatchError,
    IssuingKeyNotEncryptedError,
    IssuingKeyPassphraseRequiredError,
    MalformedIssuingCaError,
    MalformedIssuingKeyError,
    WrongIssuingKeyPassphraseError,
    ca_common_name,
)
from devprov.service.pki.error import InvalidIssuerChainError, PathLengthExceededError
from devprov.storage.issuing_key import FileIssuingKeyStore
from tests import factory as f

ACTOR = "cli"
SVC = "default"


@pytest.fixture
def keys(tmp_path: Path) -> FileIssuingKeyStore:
    return FileIssuingKeyStore(tmp_path / "data")


@pytest.fixture
def policies(uow, clock, directory, keys) -> CredentialPolicies:
    directory.create(SVC)
    return CredentialPolicies(uow, keys, clock, secrets.token_bytes)


def events(uow):
    return AuditTrail(uow).events(service=SVC)


def spki(key_or_certificate) -> bytes:
    return key_or_certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def chain_of(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def key_files(keys: FileIssuingKeyStore) -> list[str]:
    root = keys.path(SVC, "x").parent.parent
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.key")) if root.exists() else []


# --- create: a generated CA ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "check_key", "hash_name"),
    [
        pytest.param(
            "ec-p384",
            lambda k: isinstance(k, ec.EllipticCurvePublicKey) and k.curve.name == "secp384r1",
            "sha384",
            id="ok/ec-p384",
        ),
        pytest.param(
            "ec-p256",
            lambda k: isinstance(k, ec.EllipticCurvePublicKey) and k.curve.name == "secp256r1",
            "sha256",
            id="ok/ec-p256",
        ),
        pytest.param(
            "rsa-2048",
            lambda k: isinstance(k, rsa.RSAPublicKey) and k.key_size == 2048,
            "sha256",
            id="ok/rsa-2048",
        ),
    ],
)
def test_create_generates_a_self_signed_issuing_ca(
    policies, keys, clock, uow, key_type, check_key, hash_name
) -> None:
    policy = policies.create(
        SVC,
        "Fleet-A",
        key_type=key_type,
        validity_days=7,
        organization="Contoso",
        organizational_unit="Plant 7",
        server_auth=True,
        actor=ACTOR,
    )
    (ca,) = chain_of(policy.ca_chain_pem)
    assert policy.origin is CaOrigin.GENERATED
    assert (policy.validity_days, policy.organization, policy.organizational_unit) == (
        7,
        "Contoso",
        "Plant 7",
    )
    assert policy.server_auth and policy.crl_number == 0 and policy.etag
    assert ca.subject == ca.issuer
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "Fleet-A issuing CA (devprov default)"
    )
    ca.verify_directly_issued_by(ca)
    assert check_key(ca.public_key())
    assert ca.signature_hash_algorithm is not None
    assert ca.signature_hash_algorithm.name == hash_name
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert constraints.ca and usage.key_cert_sign and usage.crl_sign
    assert ca.not_valid_after_utc - clock.now == timedelta(days=CA_VALIDITY_DAYS)
    assert ca.not_valid_before_utc <= clock.now
    # The key file holds the CA's own key, readable by its owner alone.
    assert spki(keys.load(SVC, "fleet-a")) == spki(ca)
    assert stat.S_IMODE(keys.path(SVC, "Fleet-A").stat().st_mode) == 0o600
    assert policies.show(SVC, "FLEET-A") == policy
    (event,) = events(uow)
    assert (event.action, event.actor) == ("credentialPolicy.create", ACTOR)
    assert event.reason is not None and "Fleet-A" in event.reason and key_type in event.reason


def test_create_defaults_to_a_p384_ca_and_the_default_profile(policies) -> None:
    policy = policies.create(SVC, "plain", actor=ACTOR)
    (ca,) = chain_of(policy.ca_chain_pem)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp384r1"
    assert (policy.validity_days, policy.organization, policy.server_auth) == (30, None, False)


@pytest.mark.parametrize(
    ("service", "policy", "expected"),
    [
        pytest.param("default", "p-1", "p-1 issuing CA (devprov default)", id="ok/whole"),
        pytest.param("s" * 40, "p" * 20, "p" * 20 + " issuing CA", id="ok/without-service"),
        pytest.param("s", "p" * 60, "p" * 60, id="ok/the-name-alone"),
    ],
)
def test_the_generated_cas_name_fits_a_common_name(service, policy, expected) -> None:
    assert ca_common_name(service, policy) == expected
    assert len(expected) <= 64


def test_a_name_taken_in_any_case_is_refused_and_its_key_kept(policies, keys) -> None:
    first = policies.create(SVC, "Fleet-A", key_type="ec-p256", actor=ACTOR)
    with pytest.raises(e.AlreadyExistsError, match="Fleet-A"):
        policies.create(SVC, "fleet-a", key_type="ec-p256", actor=ACTOR)
    with pytest.raises(e.AlreadyExistsError):
        policies.import_ca(
            SVC,
            "FLEET-A",
            chain_pem=ROOT.pem,
            key_pem=ROOT.key_pem(),
            passphrase=None,
            actor=ACTOR,
        )
    assert spki(keys.load(SVC, "Fleet-A")) == spki(chain_of(first.ca_chain_pem)[0])
    assert policies.list(SVC) == [first]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"name": "ab"}, "3 to 63", id="fail/name-too-short"),
        pytest.param({"name": "-lead"}, "3 to 63", id="fail/name-leading-hyphen"),
        pytest.param({"name": "has space"}, "3 to 63", id="fail/name-space"),
        pytest.param({"validity_days": 0}, "1 to 90", id="fail/validity-zero"),
        pytest.param({"validity_days": 91}, "1 to 90", id="fail/validity-too-long"),
        pytest.param({"organization": ""}, "organization", id="fail/empty-organization"),
        pytest.param({"organization": "o" * 65}, "organization", id="fail/long-organization"),
        pytest.param({"organizational_unit": "a\nb"}, "unit", id="fail/unprintable-ou"),
        pytest.param({"key_type": "ec-p521"}, "ec-p384", id="fail/key-type"),
    ],
)
def test_create_refuses_a_bad_name_or_profile(policies, keys, options, message) -> None:
    name = options.pop("name", "fleet")
    with pytest.raises(InvalidCredentialPolicyError, match=message):
        policies.create(SVC, name, actor=ACTOR, **options)
    assert policies.list(SVC) == [] and key_files(keys) == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"name": "abc"}, id="ok/name-of-three"),
        pytest.param({"name": "a" * 63}, id="ok/name-of-63"),
        pytest.param({"validity_days": 1}, id="ok/validity-one"),
        pytest.param({"validity_days": 90}, id="ok/validity-90"),
        pytest.param({"organization": "o" * 64, "organizational_unit": "u"}, id="ok/subject"),
    ],
)
def test_create_takes_names_and_profiles_at_their_bounds(policies, options) -> None:
    name = options.pop("name", "fleet")
    policy = policies.create(SVC, name, key_type="ec-p256", actor=ACTOR, **options)
    assert policies.show(SVC, name) == policy


def test_create_in_a_missing_service_stores_nothing(policies, keys) -> None:
    with pytest.raises(e.ServiceNotFoundError):
        policies.create("nowhere", "fleet", actor=ACTOR)
    assert key_files(keys) == []


class FailingCommit:
    """A unit of work whose commit fails, as a database that goes away mid-write does; it
    records whether the key file existed when the commit was attempted."""

    def __init__(self, inner, keys: FileIssuingKeyStore) -> None:
        self._inner = inner
        self._keys = keys
        self.key_present_at_commit: bool | None = None

    def __call__(self, *, read_only: bool = False):
        unit = self._inner(read_only=read_only)
        if read_only:
            return unit
        owner = self

        class Unit:
            def __enter__(self):
                unit.__enter__()
                return self

            def __exit__(self, *exc):
                return unit.__exit__(*exc)

            def __getattr__(self, name):
                return getattr(unit, name)

            def commit(self) -> None:
                owner.key_present_at_commit = owner._keys.path(SVC, "fleet").exists()
                raise e.StorageUnavailableError("the database went away")

        return Unit()


def test_the_key_is_saved_before_the_commit_and_removed_when_it_fails(
    uow, clock, directory, keys
) -> None:
    directory.create(SVC)
    failing = FailingCommit(uow, keys)
    policies = CredentialPolicies(failing, keys, clock, secrets.token_bytes)
    with pytest.raises(e.StorageUnavailableError):
        policies.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    assert failing.key_present_at_commit is True
    assert key_files(keys) == []
    # The accepted twin: the same call with a commit that works stores the row and its key.
    working = CredentialPolicies(uow, keys, clock, secrets.token_bytes)
    working.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    assert key_files(keys) == ["default/fleet.key"]


# --- import_ca: the operator's CA ------------------------------------------------------------


def encrypted(ca: f.Ca, passphrase: bytes, *, traditional: bool = False) -> bytes:
    return ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL
        if traditional
        else serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def import_ca(policies, chain: bytes, key: bytes, passphrase: bytes | None = None, **kw):
    return policies.import_ca(
        SVC,
        kw.pop("name", "imported"),
        chain_pem=chain,
        key_pem=key,
        passphrase=passphrase,
        actor=ACTOR,
        **kw,
    )


ROOT = f.root("Operator Root")
ISSUING = f.intermediate(ROOT, "Operator Issuing CA")


def test_import_keeps_the_chain_in_order_and_the_key(policies, keys, uow) -> None:
    policy = import_ca(
        policies, ISSUING.pem + ROOT.pem, ISSUING.key_pem(), validity_days=14, server_auth=True
    )
    assert policy.origin is CaOrigin.IMPORTED
    assert chain_of(policy.ca_chain_pem) == [ISSUING.certificate, ROOT.certificate]
    assert (policy.validity_days, policy.server_auth) == (14, True)
    assert spki(keys.load(SVC, "imported")) == spki(ISSUING.certificate)
    assert policies.show(SVC, "imported") == policy
    (event,) = events(uow)
    assert event.action == "credentialPolicy.import"
    assert event.reason is not None and "Operator Issuing CA" in event.reason


@pytest.mark.parametrize(
    ("key", "passphrase"),
    [
        pytest.param(lambda: encrypted(ISSUING, b"s3cret"), b"s3cret", id="ok/pkcs8-encrypted"),
        pytest.param(
            lambda: encrypted(ISSUING, b"s3cret", traditional=True),
            b"s3cret",
            id="ok/openssl-encrypted",
        ),
        pytest.param(ISSUING.key_pem, None, id="ok/not-encrypted"),
    ],
)
def test_import_decrypts_a_key_with_its_passphrase(policies, keys, key, passphrase) -> None:
    import_ca(policies, ISSUING.pem, key(), passphrase)
    # Stored as the server needs it: not encrypted, so that it signs without an operator.
    assert spki(keys.load(SVC, "imported")) == spki(ISSUING.certificate)


def test_a_root_alone_may_be_the_issuing_ca(policies) -> None:
    policy = import_ca(policies, ROOT.pem, ROOT.key_pem())
    assert chain_of(policy.ca_chain_pem) == [ROOT.certificate]


def odd_ca(*, usage: bool | None = None, days: tuple[int, int] = (-1, 30)) -> f.Ca:
    """A self-signed CA whose keyUsage has keyCertSign when ``usage`` (absent when None), valid
    from ``days[0]`` to ``days[1]`` days from now."""
    key = f.ec_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(f.serial())
        .not_valid_before(f.NOW + timedelta(days=days[0]))
        .not_valid_after(f.NOW + timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=usage,
                crl_sign=usage,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return f.Ca(builder.sign(key, hashes.SHA256()), key)


def chain_below(top: f.Ca, length: int, *, path_length: int | None = None) -> list[f.Ca]:
    """``top`` and ``length - 1`` intermediates under it, the lowest first."""
    cas = [top]
    for depth in range(1, length):
        key = f.ec_key()
        certificate = build_intermediate_certificate(
            key.public_key(),
            f"Level {depth}",
            cas[-1].issuer,
            serial=f.serial(),
            now=f.NOW,
            days=30,
        )
        cas.append(f.Ca(certificate, key))
    return cas[::-1]


def pem_of(cas: list[f.Ca]) -> bytes:
    return b"".join(ca.pem for ca in cas)


def own_key(ca: f.Ca) -> tuple[bytes, bytes, None]:
    return ca.pem, ca.key_pem(), None


def lowest_key(cas: list[f.Ca]) -> tuple[bytes, bytes, None]:
    return pem_of(cas), cas[0].key_pem(), None


def root_with_path_length(path_length: int) -> f.Ca:
    key = f.ec_key()
    certificate = build_root_certificate(
        key, "Limited Root", serial=f.serial(), now=f.NOW, days=30, path_length=path_length
    )
    return f.Ca(certificate, key)


REFUSED_IMPORTS = [
    pytest.param(
        lambda: (b"not a certificate", ISSUING.key_pem(), None),
        MalformedIssuingCaError,
        id="fail/chain-garbage",
    ),
    pytest.param(
        lambda: (b"", ISSUING.key_pem(), None), MalformedIssuingCaError, id="fail/chain-empty"
    ),
    pytest.param(
        lambda: (ISSUING.key_pem(), ISSUING.key_pem(), None),
        MalformedIssuingCaError,
        id="fail/chain-is-a-key",
    ),
    pytest.param(
        lambda: (ISSUING.pem, b"not a key", None), MalformedIssuingKeyError, id="fail/key-garbage"
    ),
    pytest.param(lambda: (ISSUING.pem, b"", None), MalformedIssuingKeyError, id="fail/key-empty"),
    pytest.param(
        lambda: (ISSUING.pem, ISSUING.pem, None),
        MalformedIssuingKeyError,
        id="fail/key-is-a-certificate",
    ),
    pytest.param(
        lambda: (
            ISSUING.pem,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
        ),
        MalformedIssuingKeyError,
        id="fail/key-broken-pem",
    ),
    pytest.param(
        lambda: (ISSUING.pem, ROOT.key_pem(), None), IssuingKeyMismatchError, id="fail/wrong-key"
    ),
    pytest.param(
        lambda: (ISSUING.pem + ROOT.pem, ROOT.key_pem(), None),
        IssuingKeyMismatchError,
        id="fail/the-roots-key",
    ),
    pytest.param(
        lambda: (ISSUING.pem, encrypted(ISSUING, b"right"), b"wrong"),
        WrongIssuingKeyPassphraseError,
        id="fail/wrong-passphrase",
    ),
    pytest.param(
        lambda: (ISSUING.pem, encrypted(ISSUING, b"right"), None),
        IssuingKeyPassphraseRequiredError,
        id="fail/encrypted-without-passphrase",
    ),
    pytest.param(
        lambda: (ISSUING.pem, ISSUING.key_pem(), b"needless"),
        IssuingKeyNotEncryptedError,
        id="fail/passphrase-for-a-plain-key",
    ),
    pytest.param(
        lambda: (f.device(ISSUING, "leaf").pem, f.device(ISSUING).key_pem(), None),
        e.NotACaCertificateError,
        id="fail/a-leaf",
    ),
    pytest.param(
        lambda: own_key(odd_ca(usage=False)),
        e.NotACaCertificateError,
        id="fail/no-keycertsign",
    ),
    pytest.param(
        lambda: own_key(odd_ca(days=(-30, -1))),
        e.CertificateExpiredError,
        id="fail/expired",
    ),
    pytest.param(
        lambda: own_key(odd_ca(days=(1, 30))),
        e.CertificateNotYetValidError,
        id="fail/not-yet-valid",
    ),
    pytest.param(
        lambda: (ISSUING.pem + f.root("Stranger").pem, ISSUING.key_pem(), None),
        InvalidIssuerChainError,
        id="fail/chain-not-signed-by-the-next",
    ),
    pytest.param(
        lambda: (ROOT.pem + ISSUING.pem, ROOT.key_pem(), None),
        InvalidIssuerChainError,
        id="fail/chain-upside-down",
    ),
    pytest.param(
        lambda: lowest_key(chain_below(root_with_path_length(0), 2)),
        PathLengthExceededError,
        id="fail/root-allows-no-ca-below",
    ),
    pytest.param(
        lambda: lowest_key(chain_below(f.root("Deep Root"), MAX_CA_CHAIN_LENGTH + 1)),
        IssuingCaChainTooLongError,
        id="fail/chain-too-long",
    ),
]


@pytest.mark.parametrize(("make", "error"), REFUSED_IMPORTS)
def test_import_refuses_what_cannot_issue_and_stores_nothing(
    policies, keys, uow, make, error
) -> None:
    chain, key, passphrase = make()
    with pytest.raises(error) as raised:
        import_ca(policies, chain, key, passphrase)
    assert type(raised.value) is error
    assert raised.value.number // 1000 == 400
    assert policies.list(SVC) == [] and key_files(keys) == [] and events(uow) == []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: own_key(odd_ca(usage=None))[:2],
            id="ok/no-keyusage-at-all",
        ),
        pytest.param(
            lambda: lowest_key(chain_below(root_with_path_length(1), 2))[:2],
            id="ok/root-allows-one-ca-below",
        ),
        pytest.param(
            lambda: lowest_key(chain_below(f.root("Deep Root"), MAX_CA_CHAIN_LENGTH))[:2],
            id="ok/chain-at-its-limit",
        ),
    ],
)
def test_import_takes_the_accepted_twins(policies, make) -> None:
    chain, key = make()
    policy = import_ca(policies, chain, key)
    assert len(chain_of(policy.ca_chain_pem)) == chain.count(b"BEGIN CERTIFICATE")


def test_a_malformed_keys_message_says_what_is_wrong(policies) -> None:
    with pytest.raises(
        MalformedIssuingKeyError, match=re.escape("no '-----BEGIN ... PRIVATE KEY-----'")
    ):
        import_ca(policies, ISSUING.pem, b"hello")
    with pytest.raises(WrongIssuingKeyPassphraseError, match="does not decrypt"):
        import_ca(policies, ISSUING.pem, encrypted(ISSUING, b"a"), b"b")


# --- list, show, delete ----------------------------------------------------------------------


def test_list_and_show(policies) -> None:
    assert policies.list(SVC) == []
    beta = policies.create(SVC, "beta", key_type="ec-p256", actor=ACTOR)
    alpha = import_ca(policies, ROOT.pem, ROOT.key_pem(), name="Alpha")
    assert policies.list(SVC) == [alpha, beta]
    assert policies.show(SVC, "ALPHA") == alpha


def test_show_of_a_missing_policy_or_service_is_not_found(policies) -> None:
    with pytest.raises(CredentialPolicyNotFoundError, match="'nope'") as raised:
        policies.show(SVC, "nope")
    assert raised.value.number == 404621
    with pytest.raises(e.ServiceNotFoundError):
        policies.show("nowhere", "nope")
    with pytest.raises(e.ServiceNotFoundError):
        policies.list("nowhere")


def name_policy(uow, clock, enrollment_id: str, policy: str, kind=EnrollmentKind.INDIVIDUAL):
    """An enrollment naming ``policy``, written through the enrollment use case."""
    service = EnrollmentService(uow, clock, secrets.token_bytes)
    doc = {"attestation": {"type": "symmetricKey"}, "credentialPolicyName": policy}
    service.create_or_update(SVC, kind, enrollment_id, doc, if_match=None, actor=ACTOR)


def test_list_with_use_counts_the_enrollments_naming_each_policy(policies, uow, clock) -> None:
    assert policies.list_with_use(SVC) == []
    fleet = policies.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    spare = policies.create(SVC, "spare", key_type="ec-p256", actor=ACTOR)
    name_policy(uow, clock, "dev-1", "fleet")
    name_policy(uow, clock, "grp-1", "FLEET", EnrollmentKind.GROUP)
    used = policies.list_with_use(SVC)
    assert [(u.policy, u.enrollments) for u in used] == [(fleet, 2), (spare, 0)]
    assert used[0].enrollments == policies.enrollments_naming(SVC, "fleet")
    with pytest.raises(e.ServiceNotFoundError):
        policies.list_with_use("nowhere")


def test_delete_removes_the_row_and_the_key_file(policies, keys, uow) -> None:
    policies.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    policies.delete(SVC, "FLEET", actor=ACTOR)
    with pytest.raises(CredentialPolicyNotFoundError):
        policies.show(SVC, "fleet")
    assert key_files(keys) == []
    assert [event.action for event in events(uow)] == [
        "credentialPolicy.create",
        "credentialPolicy.delete",
    ]
    with pytest.raises(CredentialPolicyNotFoundError):
        policies.delete(SVC, "fleet", actor=ACTOR)


def test_delete_is_refused_while_enrollments_name_the_policy(policies, keys, uow, clock) -> None:
    policies.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    name_policy(uow, clock, "dev-1", "fleet")
    name_policy(uow, clock, "grp-1", "FLEET", EnrollmentKind.GROUP)
    assert policies.enrollments_naming(SVC, "fleet") == 2
    with pytest.raises(CredentialPolicyInUseError, match="named by 2 enrollments") as raised:
        policies.delete(SVC, "fleet", actor=ACTOR)
    assert "--force" in raised.value.message and raised.value.number == 409621
    assert policies.show(SVC, "fleet") is not None and key_files(keys) == ["default/fleet.key"]


def test_delete_with_force_deletes_a_policy_in_use_and_keeps_what_it_issued(
    policies, keys, uow, clock
) -> None:
    policy = policies.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    name_policy(uow, clock, "dev-1", "fleet")
    leaf = f.device(f.Ca(chain_of(policy.ca_chain_pem)[0], keys.load(SVC, "fleet")), "dev-1")
    record = IssuedCertificate(
        service=SVC,
        serial=f"{leaf.certificate.serial_number:X}",
        sha256="00" * 32,
        registration_id="dev-1",
        policy="fleet",
        not_before=f.NOW,
        not_after=f.NOW + timedelta(days=1),
        issued_at=f.NOW,
        certificate_der=leaf.der,
    )
    with uow() as u:
        u.issued.add(record)
        u.commit()
    policies.delete(SVC, "fleet", force=True, actor=ACTOR)
    assert policies.list(SVC) == [] and key_files(keys) == []
    assert policies.issued(SVC) == [record]
    (deleted,) = [event for event in events(uow) if event.action == "credentialPolicy.delete"]
    assert deleted.reason is not None and "forced" in deleted.reason


def test_a_policy_created_again_after_delete_has_a_new_ca(policies, keys) -> None:
    first = policies.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    policies.delete(SVC, "fleet", actor=ACTOR)
    second = policies.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    assert chain_of(first.ca_chain_pem) != chain_of(second.ca_chain_pem)
    assert spki(keys.load(SVC, "fleet")) == spki(chain_of(second.ca_chain_pem)[0])
    assert replace(second, ca_chain_pem="", etag="", created_at=None) == replace(
        first, ca_chain_pem="", etag="", created_at=None
    )

"""The registry use cases over real SQLite: every accept with its reject, the stored state
unchanged after each refusal, and the audit trail of both."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from devprov.core import error as e
from devprov.core.enrollment import EnrollmentKind
from devprov.service.audit import AuditTrail
from devprov.service.enrollment import EnrollmentService
from devprov.service.model import Outcome, VerificationMethod
from devprov.service.registry import CertificateRegistry
from tests import factory as f

ACTOR = "admin"


@pytest.fixture
def root() -> f.Ca:
    return f.root("Registry Root")


def upload(registry: CertificateRegistry, ca: f.Ca, name: str = "root", **kw):
    kw.setdefault("is_verified", False)
    kw.setdefault("if_match", None)
    return registry.upload("default", name, ca.pem, actor=ACTOR, **kw)


def events(uow):
    return AuditTrail(uow).events(service="default")


def test_upload_unverified(registry, root, uow) -> None:
    record = upload(registry, root)
    assert not record.is_verified and record.verification_method is None
    assert registry.get("default", "ROOT") == record
    (event,) = events(uow)
    assert (event.action, event.outcome, event.certificate) == ("upload", Outcome.SUCCEEDED, "root")


def test_upload_self_attested(registry, root, uow) -> None:
    record = upload(registry, root, is_verified=True, api_version="2025-02-01-preview")
    assert record.is_verified and record.verification_method is VerificationMethod.SELF_ATTESTED
    (event,) = events(uow)
    assert event.reason == "self-attested as verified" and event.api_version == "2025-02-01-preview"


@pytest.mark.parametrize(
    ("make", "error"),
    [
        pytest.param(lambda: f.device(f.root()), e.NotACaCertificateError, id="fail/leaf"),
        pytest.param(
            lambda: f.raw_certificate(
                not_before=f.NOW - timedelta(days=9), not_after=f.NOW - timedelta(days=1)
            ),
            e.CertificateExpiredError,
            id="fail/expired",
        ),
    ],
)
def test_upload_rejects_unusable_certificates(registry, uow, make, error) -> None:
    with pytest.raises(error):
        upload(registry, make())
    assert registry.list("default") == []
    (event,) = events(uow)
    assert event.outcome is Outcome.FAILED and event.error_code == error.code


def test_upload_rejects_garbage_and_keys(registry, root, uow) -> None:
    for data in (b"garbage", root.key_pem(), root.pem + f.root().pem):
        with pytest.raises(e.InvalidInputError):
            registry.upload("default", "root", data, is_verified=False, if_match=None, actor=ACTOR)
    assert registry.list("default") == []
    assert [ev.outcome for ev in events(uow)] == [Outcome.FAILED] * 3


def test_upload_rejects_bad_names(registry, root) -> None:
    with pytest.raises(e.InvalidCertificateNameError):
        upload(registry, root, name="bad name")


def test_unknown_service(registry, root) -> None:
    with pytest.raises(e.ServiceNotFoundError):
        registry.upload("nope", "root", root.pem, is_verified=False, if_match=None, actor=ACTOR)
    with pytest.raises(e.ServiceNotFoundError):
        registry.list("nope")


def test_update_needs_if_match(registry, root) -> None:
    first = upload(registry, root)
    with pytest.raises(e.EtagMismatchError, match="If-Match is required"):
        upload(registry, root, name="ROOT")
    with pytest.raises(e.EtagMismatchError, match="does not match"):
        upload(registry, root, if_match='"stale"')
    assert registry.get("default", "root") == first
    second = upload(registry, f.root("Replacement"), if_match=f'"{first.etag}"')
    assert second.etag != first.etag and second.facts.subject == "CN=Replacement"
    assert second.created_at == first.created_at


def test_replacing_with_another_key_drops_verification(registry, root) -> None:
    first = upload(registry, root, is_verified=True)
    second = upload(registry, f.root("Other"), if_match=first.etag)
    assert not second.is_verified and second.verification_method is None


def test_reuploading_the_same_certificate_keeps_verification(registry, root) -> None:
    first = upload(registry, root, is_verified=True)
    second = upload(registry, root, if_match="*")
    assert second.is_verified and second.etag != first.etag


def test_certificate_limit(uow, clock, directory, root) -> None:
    directory.create("small", max_certificates=2)
    registry = CertificateRegistry(uow, clock, secrets.token_bytes)
    for i in range(2):
        registry.upload(
            "small", f"c{i}", f.root(f"R{i}").pem, is_verified=False, if_match=None, actor=ACTOR
        )
    with pytest.raises(e.CertificateLimitError, match="already holds 2"):
        registry.upload("small", "c2", root.pem, is_verified=False, if_match=None, actor=ACTOR)
    assert len(registry.list("small")) == 2


def test_delete(registry, root, uow) -> None:
    record = upload(registry, root)
    with pytest.raises(e.EtagMismatchError):
        registry.delete("default", "root", if_match=None, actor=ACTOR)
    with pytest.raises(e.EtagMismatchError):
        registry.delete("default", "root", if_match="nope", actor=ACTOR)
    assert registry.get("default", "root") == record
    registry.delete("default", "root", if_match=record.etag, actor=ACTOR)
    with pytest.raises(e.CertificateNotFoundError):
        registry.get("default", "root")
    with pytest.raises(e.CertificateNotFoundError):
        registry.delete("default", "root", if_match="*", actor=ACTOR)
    assert [ev.action for ev in events(uow) if ev.outcome is Outcome.SUCCEEDED] == [
        "upload",
        "delete",
    ]


def test_generate_code_needs_current_etag(registry, root) -> None:
    record = upload(registry, root)
    with pytest.raises(e.EtagMismatchError):
        registry.generate_code("default", "root", if_match=None, actor=ACTOR)
    coded = registry.generate_code("default", "root", if_match=record.etag, actor=ACTOR)
    assert coded.codes.current and len(coded.codes.current) == 48 and coded.etag != record.etag
    with pytest.raises(e.EtagMismatchError):
        registry.generate_code("default", "root", if_match=record.etag, actor=ACTOR)


def test_full_proof_of_possession(registry, root, clock, uow) -> None:
    record = upload(registry, root)
    coded = registry.generate_code("default", "root", if_match=record.etag, actor=ACTOR)
    clock.advance(minutes=10)
    proof = f.pem(f.verification(root, coded.codes.current, now=clock.now))
    verified = registry.verify("default", "root", proof, if_match=coded.etag, actor=ACTOR)
    assert (
        verified.is_verified
        and verified.verification_method is VerificationMethod.PROOF_OF_POSSESSION
    )
    assert verified.verified_at == clock.now and verified.codes.current is None
    assert verified.etag not in (record.etag, coded.etag)
    # single use: the same proof cannot verify again
    with pytest.raises(e.VerificationCodeUsedError):
        registry.verify("default", "root", proof, if_match=verified.etag, actor=ACTOR)
    assert [ev.action for ev in events(uow)] == [
        "upload",
        "generateVerificationCode",
        "verify",
        "verify",
    ]


def test_refused_proof_changes_nothing_and_is_audited(registry, root, uow) -> None:
    record = upload(registry, root)
    coded = registry.generate_code("default", "root", if_match=record.etag, actor=ACTOR)
    wrong = f.pem(f.verification(f.root("Someone Else"), coded.codes.current))
    with pytest.raises(e.VerificationSignerMismatchError):
        registry.verify("default", "root", wrong, if_match=coded.etag, actor=ACTOR)
    assert registry.get("default", "root") == coded
    failed = events(uow)[-1]
    assert failed.outcome is Outcome.FAILED and failed.error_code == "VerificationSignerMismatch"
    assert "CN=Someone Else" in (failed.reason or "")
    # the code still works after a failed attempt
    right = f.pem(f.verification(root, coded.codes.current))
    assert registry.verify("default", "root", right, if_match=coded.etag, actor=ACTOR).is_verified


def test_expired_code_via_service_lifetime(uow, clock, directory, root) -> None:
    directory.create("quick", code_lifetime=timedelta(seconds=30))
    registry = CertificateRegistry(uow, clock, secrets.token_bytes)
    record = registry.upload(
        "quick", "root", root.pem, is_verified=False, if_match=None, actor=ACTOR
    )
    coded = registry.generate_code("quick", "root", if_match=record.etag, actor=ACTOR)
    clock.advance(seconds=31)
    proof = f.pem(f.verification(root, coded.codes.current, now=clock.now))
    with pytest.raises(e.VerificationCodeExpiredError):
        registry.verify("quick", "root", proof, if_match=coded.etag, actor=ACTOR)


def test_verify_stale_etag_after_new_code(registry, root) -> None:
    record = upload(registry, root)
    first = registry.generate_code("default", "root", if_match=record.etag, actor=ACTOR)
    second = registry.generate_code("default", "root", if_match=first.etag, actor=ACTOR)
    proof = f.pem(f.verification(root, first.codes.current))
    with pytest.raises(e.EtagMismatchError):
        registry.verify("default", "root", proof, if_match=first.etag, actor=ACTOR)
    with pytest.raises(e.VerificationCodeSupersededError):
        registry.verify("default", "root", proof, if_match=second.etag, actor=ACTOR)


def test_create_only_refuses_an_existing_name(registry, root, uow) -> None:
    first = upload(registry, root)
    with pytest.raises(e.AlreadyExistsError, match="already exists"):
        upload(registry, f.root("Other"), name="ROOT", create_only=True)
    assert registry.get("default", "root") == first
    assert [ev.error_code for ev in events(uow)] == [None, e.AlreadyExistsError.code]
    assert upload(registry, f.root("Other"), name="second", create_only=True).name == "second"


def x509_group(id: str, x509: dict[str, object]) -> dict[str, object]:
    return {"enrollmentGroupId": id, "attestation": {"type": "x509", "x509": x509}}


def test_groups_using_a_certificate(registry, root, uow, clock) -> None:
    upload(registry, root)
    upload(registry, f.root("Unrelated"), name="unrelated")
    enrollments = EnrollmentService(uow, clock, secrets.token_bytes)
    documents = {
        "by-reference": {"caReferences": {"primary": "ROOT"}},
        "inline": {"signingCertificates": {"primary": {"certificate": root.pem.decode()}}},
        "elsewhere": {"caReferences": {"primary": "unrelated"}},
    }
    for id, x509 in documents.items():
        enrollments.create_or_update(
            "default", EnrollmentKind.GROUP, id, x509_group(id, x509), if_match=None, actor=ACTOR
        )
    use = registry.groups_using("default", "Root")
    assert use.certificate.name == "root"
    assert [g.id for g in use.groups] == ["by-reference", "inline"] and use.total == 2
    limited = registry.groups_using("default", "root", limit=1)
    assert [g.id for g in limited.groups] == ["by-reference"] and limited.total == 2
    assert registry.groups_using("default", "unrelated").total == 1
    with pytest.raises(e.CertificateNotFoundError):
        registry.groups_using("default", "missing")

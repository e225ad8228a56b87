"""The certificate pages' pure parts: the expiry warning, key and CA descriptions, the code's
expiry, and the sentence naming each proof-of-possession check."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from devprov.core import error as e
from devprov.core.possession import VerificationCodes
from devprov.portal.certificate_view import (
    EXPIRY_WARNING,
    describe_ca,
    describe_key,
    expiry_warning,
    failed_check,
    view_certificate,
)
from devprov.service.model import CertificateRecord, VerificationMethod
from tests import factory as f

END = f.NOW + timedelta(days=90)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(END - EXPIRY_WARNING - timedelta(seconds=1), None, id="ok/far"),
        pytest.param(END - timedelta(days=10), ("warn", "Expires in 10 days"), id="warn/10-days"),
        pytest.param(END - timedelta(hours=3), ("warn", "Expires in 1 day"), id="warn/hours"),
        pytest.param(END, ("warn", "Expires in 0 days"), id="warn/at-the-second"),
        pytest.param(END + timedelta(seconds=1), ("bad", "Expired"), id="bad/expired"),
    ],
)
def test_expiry_warning(now, expected) -> None:
    warning = expiry_warning(END, now=now)
    assert (warning.kind, warning.text) == expected if expected else warning is None


def record(ca: f.Ca, **kw) -> CertificateRecord:
    values = {
        "service": "default",
        "name": "root",
        "der": ca.der,
        "is_verified": False,
        "verification_method": None,
        "verified_at": None,
        "created_at": f.NOW,
        "updated_at": f.NOW,
        "etag": "e",
    } | kw
    return CertificateRecord(**values)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(f.ec_key, "ECDSA P-256", id="ec"),
        pytest.param(lambda: f.rsa_key(2048), "RSA 2048", id="rsa"),
    ],
)
def test_describe_key(key, expected) -> None:
    assert describe_key(record(f.root(key=key()))) == expected


def test_describe_ca() -> None:
    root = f.root()
    assert describe_ca(record(root).facts) == "Yes (CA:TRUE, no path length limit)"
    limited = replace(record(f.intermediate(root)).facts, path_length=0)
    assert describe_ca(limited) == "Yes (CA:TRUE, path length 0)"
    assert describe_ca(record(f.device(root)).facts) == "No (CA:FALSE)"


def test_the_code_and_its_expiry() -> None:
    codes = VerificationCodes(current="AB" * 24, issued_at=f.NOW)
    unverified = record(f.root(), codes=codes)
    view = view_certificate(
        unverified, now=f.NOW + timedelta(minutes=20), code_lifetime=timedelta(hours=1)
    )
    assert view.code and view.code.value == "AB" * 24 and view.code.minutes_left == 40
    assert not view.code.expired and view.code.expires_at == f.NOW + timedelta(hours=1)
    late = view_certificate(
        unverified, now=f.NOW + timedelta(hours=2), code_lifetime=timedelta(hours=1)
    )
    assert late.code and late.code.expired
    assert view_certificate(unverified, now=f.NOW).code is None  # the list reads no code
    verified = record(
        f.root(),
        codes=codes,
        is_verified=True,
        verification_method=VerificationMethod.PROOF_OF_POSSESSION,
    )
    shown = view_certificate(verified, now=f.NOW, code_lifetime=timedelta(hours=1))
    assert (shown.status, shown.method, shown.code) == ("Verified", "proof-of-possession", None)


def test_every_possession_error_names_its_own_check() -> None:
    leaves = [
        kind
        for kind in vars(e).values()
        if isinstance(kind, type)
        and issubclass(kind, e.PossessionError)
        and kind is not e.PossessionError
    ]
    sentences = {failed_check(kind("detail")) for kind in leaves}
    assert len(leaves) >= 9 and len(sentences) == len(leaves)
    generic = failed_check(e.PossessionError("detail"))
    assert generic not in sentences and generic.endswith(".")

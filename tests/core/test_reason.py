"""cryptography's verification reasons in devprov's words (core.reason): the fallback for
refusals the walk of core.refusal cannot pin on a certificate."""

from __future__ import annotations

import pytest
from cryptography import x509

from devprov.core import reason as r
from tests.core import chain_factory as cf
from tests.core.wording import assert_plain_words

_DEBUG = " (encountered processing <Certificate(subject=<Name(CN=device)>, ...)>)"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        pytest.param(
            "validation failed: cert is not valid" + _DEBUG, "cert is not valid", id="repr"
        ),
        pytest.param(
            "validation failed: candidates exhausted: Forbidden signature algorithm: "
            "AlgorithmIdentifier { oid: Some(1.2.3), params: Other(...) }",
            "Forbidden signature algorithm",
            id="rust-structure",
        ),
        pytest.param(
            "validation failed: candidates exhausted: Python extension validator failed: "
            "ValueError: has a keyUsage without keyCertSign (rule C2, RFC 5280 4.2.1.3)",
            "has a keyUsage without keyCertSign (rule C2, RFC 5280 4.2.1.3)",
            id="own-rule",
        ),
        pytest.param(
            "fatal error: Exceeded maximum signature check limit",
            "Exceeded maximum signature check limit",
            id="fatal",
        ),
        pytest.param("validation failed: ", "no reason given", id="empty"),
    ],
)
def test_clean_reason(raw: str, clean: str) -> None:
    assert r.clean_reason(raw) == clean


def test_clean_reason_is_bounded() -> None:
    long = r.clean_reason("x" * 5000)
    assert len(long) == r.MAX_REASON_IN_MESSAGE + len("...")


@pytest.fixture(scope="module")
def path() -> tuple[x509.Certificate, ...]:
    """device <- intermediate with nameConstraints <- root."""
    root = cf.ca("Root")
    constraints = x509.NameConstraints([x509.DNSName("example.com")], None)
    inter = cf.ca("Constrained", root, extra=[cf.Extra(constraints, critical=True)])
    device = cf.leaf(inter, aki_critical=True)
    return device.certificate, inter.certificate, root.certificate


def _name(certificate: x509.Certificate) -> str:
    return f"'{certificate.subject.rfc4514_string()}'"


@pytest.mark.parametrize(
    ("reason", "rule", "concerns"),
    [
        pytest.param(
            "validation failed: invalid extension: 2.5.29.35: Certificate extension has "
            "incorrect criticality" + _DEBUG,
            "(rule E5, RFC 5280 4.2.1.1)",
            ["CN=my-device"],
            id="device-extension-by-oid",
        ),
        pytest.param(
            "validation failed: candidates exhausted: invalid extension: 2.5.29.30: "
            "Certificate extension has incorrect criticality",
            "(rule C4, RFC 5280 4.2.1.10)",
            ["CN=Constrained"],
            id="issuer-extension-by-oid",
        ),
        pytest.param(
            "validation failed: candidates exhausted: no permitted name constraints matched SAN",
            "(rule P7, RFC 5280 4.2.1.10, 6.1.3(b), (c))",
            ["CN=Constrained"],
            id="name-constraints-name-the-constraining-ca",
        ),
        pytest.param(
            "validation failed: certificate must have a serial between 1 and 20 octets" + _DEBUG,
            "(rule P8, RFC 5280 4.1.2.2)",
            ["CN=my-device"],
            id="device-serial",
        ),
        pytest.param(
            "validation failed: candidates exhausted: Forbidden public key algorithm: "
            "AlgorithmIdentifier { oid: 1.2.840.10045.2.1 }",
            "(rule P2, CA/B 6.1.5, 7.1.3.1)",
            ["CN=Constrained", "CN=Root"],
            id="issuer-keys",
        ),
        pytest.param(
            "validation failed: candidates exhausted: Python extension validator failed: "
            "ValueError: has a keyUsage without keyCertSign (rule C2, RFC 5280 4.2.1.3, 6.1.4(n))",
            "(rule C2, RFC 5280 4.2.1.3, 6.1.4(n))",
            ["CN=my-device", "CN=Constrained", "CN=Root"],
            id="own-rule-kept",
        ),
        pytest.param(
            "validation failed: something new entirely",
            "(rule P1, RFC 5280 6.1)",
            ["CN=my-device"],
            id="unknown-reason",
        ),
    ],
)
def test_explain_verifier_reason_names_the_rule_and_the_certificates(
    path: tuple[x509.Certificate, ...], reason: str, rule: str, concerns: list[str]
) -> None:
    message = r.explain_verifier_reason(reason, path, _name)
    assert message.startswith("the verifier refused it: ")
    assert rule in message
    named = message.split("; this concerns ", 1)[1]
    assert named == ", ".join(f"'{subject}'" for subject in concerns)
    assert_plain_words(message)

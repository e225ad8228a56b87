"""Why a device's chain was refused, in plain words: which certificate, which rule, what to do.

cryptography's verifier decides (:mod:`devprov.core.chain`), but its reason names neither the
certificate at fault (a refused issuer is reported as "candidates exhausted: ...") nor devprov's
rule, and it quotes Rust structures and Python reprs. :func:`explain_refusal` walks the chain as
path building does, from the device through the certificates it sent to the anchors, by issuer
name and by signature (``verify_directly_issued_by``), checks each certificate against the
profile's rules, and names the first one that breaks a rule, by role and RFC 4514 subject. Rule
ids are those of docs/chain-validation.md#the-device-profile-rule-by-rule.

The walk repeats only rules it can judge exactly. Where it finds nothing (name constraints,
serial numbers, validity encodings, the verifier's own limits), cryptography's reason is given
instead, stripped of its debug output and with the rule it belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import SignatureAlgorithmOID

from devprov.core import conformance
from devprov.core.encoding import oid_name
from devprov.core.profile import Breach
from devprov.core.reason import explain_verifier_reason

# The walk checks signatures only to explain a refusal; like path building (which stops after
# 128), it gives up after this many and falls back on cryptography's reason.
SIGNATURE_CHECK_BUDGET = 64

# CA/B 7.1.3.2, the list cryptography's verifier accepts (P2). RSASSA-PSS is accepted with
# parameters the walk does not repeat; the verifier's reason covers odd ones.
_ACCEPTED_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.RSASSA_PSS,
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    }
)

_SEND_CHAIN = (
    "the device must send every certificate between its own and a verified one "
    "(docs/attestation.md#the-device-presents-its-chain)"
)


class _OutOfBudget(Exception):
    """The walk spent its signature checks; the verifier's reason is all there is."""


@dataclass(frozen=True)
class _Finding:
    """``breach`` is said of ``certificate``; ``lookalike`` marks a candidate issuer whose key
    did not sign the certificate below it, the least telling reason a candidate fails."""

    certificate: x509.Certificate
    breach: Breach
    lookalike: bool = False


def explain_refusal(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    at: datetime,
    max_chain_depth: int,
    required_eku: x509.ObjectIdentifier,
    reason: str,
) -> str:
    """The log message for a chain the verifier refused with ``reason``: which certificate
    breaks which rule, and what to do."""
    walk = _Walk(leaf, intermediates, anchors, at, max_chain_depth, required_eku)
    try:
        outcome = walk.explain()
        if isinstance(outcome, _Finding):
            who = "it" if outcome.certificate == leaf else walk.name(outcome.certificate)
            text = outcome.breach.sentence(who)
        else:
            text = explain_verifier_reason(reason, outcome, walk.name)
    except (_OutOfBudget, ValueError, TypeError, UnsupportedAlgorithm):
        # Out of signature checks, or a certificate the walk cannot read (a name that does not
        # parse, say): the verifier's own reason is all there is.
        text = explain_verifier_reason(reason, (leaf,), name_device)
    return f"{name_device(leaf)} does not validate: {text}"


def name_device(leaf: x509.Certificate) -> str:
    return f"device certificate '{conformance.subject_of(leaf)}'"


class _Walk:
    """One explanation: the certificates at hand and the signature checks spent so far."""

    def __init__(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        anchors: Sequence[x509.Certificate],
        at: datetime,
        max_chain_depth: int,
        required_eku: x509.ObjectIdentifier,
    ) -> None:
        self.leaf = leaf
        self.anchors = tuple(anchors)
        self.intermediates = tuple(c for c in intermediates if c not in self.anchors)
        self.at = at
        self.max_chain_depth = max_chain_depth
        self.required_eku = required_eku
        self._signatures: dict[tuple[x509.Certificate, x509.Certificate], bool] = {}
        self._budget = SIGNATURE_CHECK_BUDGET

    def name(self, certificate: x509.Certificate) -> str:
        if certificate == self.leaf:
            return name_device(certificate)
        if certificate in self.anchors:
            return f"anchor '{conformance.subject_of(certificate)}'"
        if certificate.issuer == certificate.subject and self._self_signed(certificate):
            return f"root '{conformance.subject_of(certificate)}' sent by the device"
        return f"intermediate '{conformance.subject_of(certificate)}'"

    def explain(self) -> _Finding | tuple[x509.Certificate, ...]:
        """The first rule broken on the most promising path, or the path the walk could build
        (when the verifier refused it for a reason the walk does not repeat)."""
        breach = conformance.device_breach(self.leaf, self.at, self.required_eku)
        if breach is not None:
            return _Finding(self.leaf, breach)
        if self.leaf in self.anchors:
            return (self.leaf,)
        return self._above(self.leaf, 0, (self.leaf,))

    def _self_signed(self, certificate: x509.Certificate) -> bool:
        try:
            return self.signed_by(certificate, certificate)
        except _OutOfBudget:
            return False

    def signed_by(self, child: x509.Certificate, parent: x509.Certificate) -> bool:
        if (child, parent) not in self._signatures:
            if self._budget <= 0:
                raise _OutOfBudget
            self._budget -= 1
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                self._signatures[child, parent] = False
            else:
                self._signatures[child, parent] = True
        return self._signatures[child, parent]

    def _above(
        self, current: x509.Certificate, depth: int, path: tuple[x509.Certificate, ...]
    ) -> _Finding | tuple[x509.Certificate, ...]:
        """Explain why no chain goes up from ``current`` (at ``depth``, not an anchor)."""
        if depth > self.max_chain_depth:
            return _Finding(current, _too_deep(depth, self.max_chain_depth))
        candidates = [
            c
            for c in (*self.anchors, *self.intermediates)
            if c.subject == current.issuer and c not in path
        ]
        findings: list[_Finding] = []
        for candidate in candidates:
            finding = self._issuer_finding(current, candidate, depth)
            if finding is not None:
                findings.append(finding)
                continue
            if candidate in self.anchors:
                return (*path, candidate)
            outcome = self._above(candidate, depth + 1, (*path, candidate))
            if not isinstance(outcome, _Finding):
                return outcome
            findings.append(outcome)
        return self._best(current, findings)

    def _best(self, current: x509.Certificate, findings: list[_Finding]) -> _Finding:
        """What to report when no candidate issuer of ``current`` leads to an anchor."""
        telling = [f for f in findings if not f.lookalike]
        if (
            current.issuer == current.subject
            and not any(f.breach.rule != "C1" for f in telling)
            and self.signed_by(current, current)
        ):
            # A self-signed certificate whose namesakes are look-alikes or not even CAs: the
            # chain simply ends at it.
            return _Finding(current, self._unverified_root(current))
        if findings:
            return (telling or findings)[0]
        issuer = conformance.shorten(current.issuer.rfc4514_string())
        problem = f"names the issuer '{issuer}', which was not sent and is not a trust anchor"
        if current.issuer == current.subject:
            problem = (
                "is self-issued but not self-signed, and no certificate of its name whose key "
                "signed it was sent or is a trust anchor"
            )
        elif current != self.leaf:
            problem = (
                f"ends the chain: its issuer '{issuer}' was not sent and is not a trust anchor"
            )
        return _Finding(
            current,
            Breach(
                "P1",
                "RFC 5280 6.1",
                f"{problem} (a verified certificate)",
                f"{_SEND_CHAIN}; or verify '{issuer}' (upload it and prove possession)",
            ),
        )

    def _unverified_root(self, root: x509.Certificate) -> Breach:
        namesakes = [a for a in self.anchors if a.subject == root.subject]
        note = ""
        if namesakes:
            note = (
                f"; anchor '{conformance.subject_of(namesakes[0])}' has its name but is another "
                "certificate (a look-alike, or one re-issued)"
            )
        if root == self.leaf:
            return Breach(
                "P1",
                "RFC 5280 6.1",
                "is self-signed and is not itself a trust anchor: a self-signed device "
                f"certificate validates only as the enrolled certificate, byte for byte{note}",
                "enroll this very certificate (an individual enrollment), or issue the device "
                "from a verified CA",
            )
        return Breach(
            "P1",
            "RFC 5280 6.1",
            f"ends the chain and is not a trust anchor (a verified certificate){note}",
            "verify this root (upload it and prove possession of its key), or have the device "
            "send a chain that reaches a verified certificate",
        )

    def _issuer_finding(
        self, child: x509.Certificate, issuer: x509.Certificate, depth: int
    ) -> _Finding | None:
        """Why ``issuer`` cannot have issued ``child`` at ``depth`` (0 for the device), if so."""
        named = self.name(issuer)
        breach: Breach | None
        if child.signature_algorithm_oid not in _ACCEPTED_SIGNATURES:
            breach = Breach(
                "P2",
                "CA/B 7.1.3.2",
                f"is signed with {oid_name(child.signature_algorithm_oid)}; accepted are RSA "
                "(PKCS#1 v1.5 or PSS) and ECDSA, with SHA-256, SHA-384 or SHA-512",
                f"have {named} sign it again with SHA-256",
            )
            return _Finding(child, breach)
        breach = conformance.issuer_key_breach(issuer)
        if breach is not None:
            return _Finding(issuer, breach)
        if not self.signed_by(child, issuer):
            breach = Breach(
                "P2",
                "RFC 5280 6.1.3(a)(1)",
                f"names '{conformance.subject_of(issuer)}' as its issuer, but its signature does "
                f"not verify with the key of {named}: one of the two is a look-alike (the same "
                "name, another key)",
                f"use the chain of the CA that really signed it, or re-issue it from {named}",
            )
            return _Finding(child, breach, lookalike=True)
        breach = conformance.issuer_breach(issuer, child, depth, self.at, self.required_eku)
        return None if breach is None else _Finding(issuer, breach)


def _too_deep(depth: int, limit: int) -> Breach:
    return Breach(
        "P5",
        "devprov's path limit (DPS documents none)",
        f"would be intermediate number {depth} between the device and a trust anchor; at most "
        f"{limit} may lie between them",
        "verify a CA nearer to the device",
    )

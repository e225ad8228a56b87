"""What the credential policy pages show about a policy, worked out without I/O: its CA chain's
facts, the issuing CA's key type, the profile in words, and the paths of the CA chain and the
CRL the server publishes."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from devprov.core.certificate import CertificateFacts, describe_certificate, parse_certificates
from devprov.core.credential_policy import CredentialPolicy
from devprov.core.issuance import PublicKey
from devprov.service.credential_policy import CA_PATH, CRL_PATH
from devprov.service.pki.ca import describe_key_type


@dataclass(frozen=True)
class PolicyView:
    """A policy as its pages show it; ``enrollments`` is how many enrollments name it."""

    policy: CredentialPolicy
    chain: list[CertificateFacts]  # the issuing CA first, then those above it
    key_type: str  # the issuing CA's key, as `devprov credential-policy create --key-type` says
    enrollments: int

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def ca(self) -> CertificateFacts:
        return self.chain[0]

    @property
    def usages(self) -> str:
        """The extended key usages of the certificates the policy issues."""
        return "clientAuth, serverAuth" if self.policy.server_auth else "clientAuth"

    @property
    def subject(self) -> str:
        """The subject of the certificates the policy issues."""
        parts = [
            f"{label}={value}"
            for label, value in (
                ("O", self.policy.organization),
                ("OU", self.policy.organizational_unit),
            )
            if value
        ]
        return ", ".join([*parts, "CN=<registration ID>"])

    @property
    def ca_url(self) -> str:
        return public_path(CA_PATH, self.policy)

    @property
    def crl_url(self) -> str:
        return public_path(CRL_PATH, self.policy)


def view_policy(policy: CredentialPolicy, *, enrollments: int) -> PolicyView:
    chain = parse_certificates(policy.ca_chain_pem)
    key = chain[0].public_key()
    key_type = describe_key_type(key) if isinstance(key, PublicKey) else type(key).__name__
    return PolicyView(policy, [describe_certificate(c) for c in chain], key_type, enrollments)


def public_path(template: str, policy: CredentialPolicy) -> str:
    """The path of one of the policy's unauthenticated addresses (http.credential_policy)."""
    return template.format(
        service=urllib.parse.quote(policy.service, safe=""),
        policy=urllib.parse.quote(policy.name, safe=""),
    )

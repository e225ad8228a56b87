"""Devices registered through the container's use cases, as tests/service does: a symmetric-key
group (naming a credential policy or none) and devices with keys derived from it, registering
with a certificate signing request or without."""

from __future__ import annotations

import time

from devprov.bootstrap import Container
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.service.attestation import Credentials
from devprov.service.device import RegistrationOutcome

GROUP_KEY = "c2VjcmV0LWdyb3VwLWtleS1vZi10aGlydHktdHdvLWJ5dGVz"
HUB = "hub-a.azure-devices.net"


def symmetric_group(container: Container, group: str, *, policy: str | None = None) -> None:
    if not container.hubs.all("default"):
        container.hubs.add("default", HUB, actor="test")
    container.enrollments.create_or_update(
        "default",
        EnrollmentKind.GROUP,
        group,
        {
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}},
            **({"credentialPolicyName": policy} if policy else {}),
        },
        if_match=None,
        actor="t",
    )


def register(
    container: Container, registration_id: str, *, csr: str | None = None
) -> RegistrationOutcome:
    """Register a device of a group made by :func:`symmetric_group`, with ``csr`` (base64 DER)
    when given."""
    scope = container.directory.get("default").id_scope
    token = build_sas_token(
        derive_device_key(GROUP_KEY, registration_id),
        f"{scope}/registrations/{registration_id}",
        int(time.time()) + 3600,
    )
    return container.devices.register_with(
        container.webhook, scope, registration_id, Credentials(authorization=token), None, csr=csr
    )

"""Devices registered through the container's use cases, as tests/service does: a symmetric-key
group and devices with keys derived from it."""

from __future__ import annotations

import time

from devprov.bootstrap import Container
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.service.attestation import Credentials

GROUP_KEY = "c2VjcmV0LWdyb3VwLWtleS1vZi10aGlydHktdHdvLWJ5dGVz"
HUB = "hub-a.azure-devices.net"


def symmetric_group(container: Container, group: str) -> None:
    if not container.hubs.all("default"):
        container.hubs.add("default", HUB, actor="test")
    container.enrollments.create_or_update(
        "default",
        EnrollmentKind.GROUP,
        group,
        {"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}}},
        if_match=None,
        actor="t",
    )


def register(container: Container, registration_id: str) -> None:
    """Register a device of a group made by :func:`symmetric_group`."""
    scope = container.directory.get("default").id_scope
    token = build_sas_token(
        derive_device_key(GROUP_KEY, registration_id),
        f"{scope}/registrations/{registration_id}",
        int(time.time()) + 3600,
    )
    container.devices.register_with(
        container.webhook, scope, registration_id, Credentials(authorization=token), None
    )

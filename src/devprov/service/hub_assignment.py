"""What an assignment asks its hub to hold: the device's identity, built from the registration
state and the enrollment that decided it (docs/hubs.md#what-an-assignment-creates).

The authentication follows how the device attested, as DPS does: a group's X.509 device is
"CA-signed" (the hub trusts the chain, not a thumbprint), an individual X.509 enrollment's
device is known by its certificates' SHA-1 thumbprints, a symmetric-key device by its own keys
(derived from the group keys for a group's device, docs/dps-wire.md#group-key-derivation).

One case overrides the attestation: a registration that issues the device an operational
certificate (docs/operational-certificates.md#hubs). The device then connects to its hub with
that certificate, which none of its onboarding credentials' identities would accept (its keys, its
onboarding certificate's thumbprint), so the identity is CA-signed, trusting the policy's CA.
"""

from __future__ import annotations

from devprov.core.enrollment import Enrollment, EnrollmentKind
from devprov.core.registration import AttestationMethod, RegistrationState
from devprov.core.sas import derive_device_key
from devprov.service.hub_identity import DeviceAuthentication, DeviceAuthKind, DeviceIdentity


def build_identity(
    state: RegistrationState, enrollment: Enrollment, *, certificate_issued: bool
) -> DeviceIdentity:
    """The identity of an assigned device; ``state`` holds its device id.
    ``certificate_issued``: this registration issues the device an operational certificate."""
    return DeviceIdentity(
        device_id=state.device_id or state.registration_id,
        registration_id=state.registration_id,
        authentication=build_authentication(
            state, enrollment, certificate_issued=certificate_issued
        ),
        initial_twin=enrollment.initial_twin,
        enabled=True,
    )


def build_authentication(
    state: RegistrationState, enrollment: Enrollment, *, certificate_issued: bool
) -> DeviceAuthentication:
    attestation = enrollment.attestation
    group = enrollment.kind is EnrollmentKind.GROUP
    if certificate_issued:
        # The device connects with the operational certificate, whatever it attested with.
        return DeviceAuthentication(DeviceAuthKind.CERTIFICATE_AUTHORITY)
    if state.method is AttestationMethod.X509:
        if group:
            return DeviceAuthentication(DeviceAuthKind.CERTIFICATE_AUTHORITY)
        primary, secondary = attestation.primary_certificate, attestation.secondary_certificate
        return DeviceAuthentication(
            DeviceAuthKind.SELF_SIGNED,
            primary_thumbprint=primary.facts.thumbprint if primary and primary.der else None,
            secondary_thumbprint=secondary.facts.thumbprint
            if secondary and secondary.der
            else None,
        )
    primary_key, secondary_key = attestation.primary_key, attestation.secondary_key
    if group:
        # The device holds HMAC-SHA256(group key, registration id), never the group key.
        primary_key = derive_device_key(primary_key, state.registration_id) if primary_key else None
        secondary_key = (
            derive_device_key(secondary_key, state.registration_id) if secondary_key else None
        )
    return DeviceAuthentication(
        DeviceAuthKind.SAS, primary_key=primary_key, secondary_key=secondary_key
    )

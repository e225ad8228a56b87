"""What a registering device is checked against, read once per trust revision.

Every registration needs the service's certificate registry, the enrollment groups its chain
may name (or the symmetric-key groups), the linked hubs, and, for a device that renews an
operational certificate, the credential policies (service.renewal). They change rarely, and the database
raises the service's ``trust_revision`` whenever one of them changes, by any instance and by any
path (storage migration 0006, docs/storage.md#the-trust-revision). A :class:`TrustCache` keeps,
per service, what requests read of them beside the revision they read it at, and a request whose
service row shows another revision starts afresh. What is kept is what a request read in its own
transaction after it read the revision, so it is never older than that revision; a later change
raises the revision again and the next request reads it.

Chain validation is kept too, per revision, keyed by the exact certificates presented and the
anchors: a device that registers again, or that is attested at CONNECT and again at each request
(MQTT, AMQP), is validated once. A kept result is used only while the validation time lies
within every certificate's validity, which is the only input that changes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from devprov.core.chain import DeviceChainValidator, ValidatedChain
from devprov.core.credential_policy import CredentialPolicy
from devprov.core.enrollment import Enrollment
from devprov.service.model import CertificateRecord, HubRecord, ProvisioningService
from devprov.service.port import UnitOfWork

# Validations kept per service and revision: beyond this the oldest half is dropped. Each entry
# holds a device's chain (about 1-2 KiB), so a full table costs some 20-40 MiB at most.
MAX_KEPT_VALIDATIONS = 20_000

# Lookups of the groups naming a chain's certificates, kept per revision: one per distinct chain
# above the device (a handful in practice); bounded against chains made up to fill memory.
MAX_KEPT_GROUP_LOOKUPS = 1_024

_Chain = tuple[bytes, ...]
K = TypeVar("K")
V = TypeVar("V")


@dataclass
class _Kept:
    """What requests read of one service at one revision."""

    revision: int
    registry: tuple[CertificateRecord, ...] | None = None
    symmetric_key_groups: tuple[Enrollment, ...] | None = None
    hubs: tuple[HubRecord, ...] | None = None
    credential_policies: tuple[CredentialPolicy, ...] | None = None
    groups: dict[tuple[str, ...], tuple[tuple[str, Enrollment], ...]] = field(default_factory=dict)
    validators: dict[_Chain, DeviceChainValidator] = field(default_factory=dict)
    validated: dict[tuple[_Chain, _Chain], ValidatedChain] = field(default_factory=dict)


class TrustCache:
    """One per process (bootstrap builds it with the device use case); safe across the storage
    threads: a lost race only reads the same rows twice."""

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()

    def view(self, uow: UnitOfWork, service: ProvisioningService) -> TrustView:
        """The trust reads of ``service`` for a request that read its row in ``uow``."""
        with self._lock:
            kept = self._kept.get(service.name)
            if kept is None or kept.revision < service.trust_revision:
                kept = self._kept[service.name] = _Kept(service.trust_revision)
            elif kept.revision > service.trust_revision:
                # A request that began before the latest change: it reads for itself alone.
                kept = _Kept(service.trust_revision)
        return TrustView(uow, service.name, kept)


def uncached_view(uow: UnitOfWork, service: str) -> TrustView:
    """Trust reads that keep nothing beyond the request (callers without a cache)."""
    return TrustView(uow, service, _Kept(revision=-1))


class TrustView:
    """The reads attestation and allocation make of a service's trust, through the cache."""

    def __init__(self, uow: UnitOfWork, service: str, kept: _Kept) -> None:
        self._uow = uow
        self._service = service
        self._kept = kept

    def registry(self) -> tuple[CertificateRecord, ...]:
        if self._kept.registry is None:
            self._kept.registry = tuple(self._uow.certificates.in_service(self._service))
        return self._kept.registry

    def groups_by_certificate(self, shas: Sequence[str]) -> tuple[tuple[str, Enrollment], ...]:
        key = tuple(shas)
        found = self._kept.groups.get(key)
        if found is None:
            found = tuple(self._uow.enrollments.groups_by_certificate(self._service, key))
            _keep(self._kept.groups, key, found, MAX_KEPT_GROUP_LOOKUPS)
        return found

    def symmetric_key_groups(self) -> tuple[Enrollment, ...]:
        if self._kept.symmetric_key_groups is None:
            groups = self._uow.enrollments.symmetric_key_groups(self._service)
            self._kept.symmetric_key_groups = tuple(groups)
        return self._kept.symmetric_key_groups

    def hubs(self) -> tuple[HubRecord, ...]:
        if self._kept.hubs is None:
            self._kept.hubs = tuple(self._uow.hubs.all(self._service))
        return self._kept.hubs

    def credential_policies(self) -> tuple[CredentialPolicy, ...]:
        """The service's credential policies (migration 0007 raises the revision when one
        changes)."""
        if self._kept.credential_policies is None:
            policies = self._uow.credential_policies.all(self._service)
            self._kept.credential_policies = tuple(policies)
        return self._kept.credential_policies

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        anchors: Sequence[x509.Certificate],
        *,
        at: datetime,
    ) -> ValidatedChain:
        """core.chain's device-profile validation; raises as it does. A success is kept."""
        anchor_key = _der(anchors)
        key = (_der((leaf, *intermediates)), anchor_key)
        kept = self._kept.validated.get(key)
        if kept is not None and all(_valid_at(c, at) for c in (leaf, *intermediates, *anchors)):
            return kept
        validator = self._kept.validators.get(anchor_key)
        if validator is None:
            validator = DeviceChainValidator(anchors)
            _keep(self._kept.validators, anchor_key, validator, MAX_KEPT_GROUP_LOOKUPS)
        validated = validator.validate(leaf, intermediates, at=at)
        _keep(self._kept.validated, key, validated, MAX_KEPT_VALIDATIONS)
        return validated


def _der(certificates: Sequence[x509.Certificate]) -> _Chain:
    return tuple(c.public_bytes(Encoding.DER) for c in certificates)


def _valid_at(certificate: x509.Certificate, at: datetime) -> bool:
    return certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc


def _keep(table: dict[K, V], key: K, value: V, limit: int) -> None:
    if len(table) >= limit:
        for old in list(table)[: limit // 2]:  # dicts keep insertion order: the oldest first
            table.pop(old, None)
    table[key] = value

"""Provisioning services: create them with an ID scope and an owner policy, list and read them.

A data directory can hold several provisioning services, each with its own certificates, keys
and ID scope, as separate DPS instances would have.
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta

from devprov.core.error import (
    InvalidInputError,
    InvalidNameError,
    NotFoundError,
    ServiceNotFoundError,
)
from devprov.core.possession import DEFAULT_CODE_LIFETIME
from devprov.service.model import (
    ALL_RIGHTS,
    DEFAULT_MAX_CERTIFICATES,
    OWNER_POLICY,
    AccessPolicy,
    ProvisioningService,
)
from devprov.service.port import Clock, RandomBytes, UnitOfWorkFactory
from devprov.service.retry import retrying

# DPS instance names: 3-64 characters, alphanumerics and hyphens (ARM naming rules for
# Microsoft.Devices/provisioningServices).
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{1,62}[A-Za-z0-9]")

# Shared access keys are 32 random bytes, base64, as DPS generates them.
ACCESS_KEY_BYTES = 32

# ID scopes look like "0ne00111111": the prefix "0ne" and 8 hex digits
# (docs/dps-wire.md#device-endpoints-and-api-versions).
ID_SCOPE_PREFIX = "0ne"
ID_SCOPE_RANDOM_BYTES = 4


def validate_service_name(name: str) -> str:
    if not _SERVICE_NAME.fullmatch(name):
        raise InvalidNameError(
            f"provisioning service name {name!r} must have 3 to 64 letters, digits or hyphens, "
            "starting and ending with a letter or digit"
        )
    return name


_POLICY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class PolicyNotFoundError(NotFoundError):
    """The service has no policy by that name."""

    code = "SharedAccessPolicyNotFound"
    number = 404430


def validate_policy(name: str, rights: frozenset[str]) -> None:
    if not _POLICY_NAME.fullmatch(name):
        raise InvalidNameError(f"policy name {name!r} must have 1 to 64 letters, digits or -._")
    unknown = sorted(rights - ALL_RIGHTS)
    if not rights or unknown:
        raise InvalidInputError(
            f"rights must be some of {', '.join(sorted(ALL_RIGHTS))}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )


def _policy(policies: list[AccessPolicy], service: str, name: str) -> AccessPolicy:
    for policy in policies:
        if policy.name == name:
            return policy
    raise PolicyNotFoundError(f"service '{service}' has no shared access policy '{name}'")


def build_access_key(random_bytes: RandomBytes) -> str:
    return base64.b64encode(random_bytes(ACCESS_KEY_BYTES)).decode("ascii")


class ServiceDirectory:
    """Creates and reads provisioning services."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, random_bytes: RandomBytes) -> None:
        self._uow = uow
        self._clock = clock
        self._random = random_bytes

    def create(
        self,
        name: str,
        *,
        max_certificates: int = DEFAULT_MAX_CERTIFICATES,
        code_lifetime: timedelta = DEFAULT_CODE_LIFETIME,
    ) -> ProvisioningService:
        validate_service_name(name)
        if max_certificates < 1:
            raise InvalidInputError("the certificate limit must be at least 1")
        if code_lifetime <= timedelta(0):
            raise InvalidInputError("the verification code lifetime must be positive")
        service = ProvisioningService(
            name=name,
            id_scope=ID_SCOPE_PREFIX + self._random(ID_SCOPE_RANDOM_BYTES).hex().upper(),
            created_at=self._clock(),
            max_certificates=max_certificates,
            code_lifetime=code_lifetime,
        )
        owner = AccessPolicy(
            service=name,
            name=OWNER_POLICY,
            primary_key=build_access_key(self._random),
            secondary_key=build_access_key(self._random),
            rights=ALL_RIGHTS,
        )
        with self._uow() as uow:
            uow.services.add(service, [owner])
            uow.commit()
        return service

    @retrying
    def update(
        self,
        name: str,
        *,
        max_certificates: int | None = None,
        code_lifetime: timedelta | None = None,
    ) -> ProvisioningService:
        """Change a service's limits; certificates already held above a lowered limit stay."""
        if max_certificates is not None and max_certificates < 1:
            raise InvalidInputError("the certificate limit must be at least 1")
        if code_lifetime is not None and code_lifetime <= timedelta(0):
            raise InvalidInputError("the verification code lifetime must be positive")
        with self._uow() as uow:
            # Locked: this writes back both settings, so a concurrent change of the other one
            # must not be overwritten with the value read here, and a certificate upload must
            # not count against the old limit meanwhile.
            current = uow.services.lock(name)
            if current is None:
                raise ServiceNotFoundError(f"provisioning service '{name}' does not exist")
            updated = ProvisioningService(
                name=current.name,
                id_scope=current.id_scope,
                created_at=current.created_at,
                max_certificates=current.max_certificates
                if max_certificates is None
                else max_certificates,
                code_lifetime=current.code_lifetime if code_lifetime is None else code_lifetime,
            )
            uow.services.replace(updated)
            uow.commit()
        return updated

    def get(self, name: str) -> ProvisioningService:
        with self._uow(read_only=True) as uow:
            service = uow.services.get(name)
        if service is None:
            raise ServiceNotFoundError(f"provisioning service '{name}' does not exist")
        return service

    def all(self) -> list[ProvisioningService]:
        with self._uow(read_only=True) as uow:
            return uow.services.all()

    def add_policy(self, service: str, name: str, rights: frozenset[str]) -> AccessPolicy:
        """A new shared access policy with fresh keys and the given rights."""
        validate_policy(name, rights)
        policy = AccessPolicy(
            service=service,
            name=name,
            primary_key=build_access_key(self._random),
            secondary_key=build_access_key(self._random),
            rights=rights,
        )
        with self._uow() as uow:
            if uow.services.get(service) is None:
                raise ServiceNotFoundError(f"provisioning service '{service}' does not exist")
            uow.services.add_policy(policy)
            uow.commit()
        return policy

    def rotate_key(self, service: str, name: str, which: str) -> AccessPolicy:
        """Replace the primary or secondary key ('both' replaces both)."""
        if which not in ("primary", "secondary", "both"):
            raise InvalidInputError("rotate the 'primary', 'secondary' or 'both' keys")
        with self._uow() as uow:
            policy = _policy(uow.services.policies(service), service, name)
            rotated = AccessPolicy(
                service=service,
                name=policy.name,
                primary_key=build_access_key(self._random)
                if which != "secondary"
                else policy.primary_key,
                secondary_key=build_access_key(self._random)
                if which != "primary"
                else policy.secondary_key,
                rights=policy.rights,
            )
            uow.services.replace_policy(rotated)
            uow.commit()
        return rotated

    def remove_policy(self, service: str, name: str) -> None:
        with self._uow() as uow:
            _policy(uow.services.policies(service), service, name)
            uow.services.remove_policy(service, name)
            uow.commit()

    def policies(self, name: str) -> list[AccessPolicy]:
        with self._uow(read_only=True) as uow:
            if uow.services.get(name) is None:
                raise ServiceNotFoundError(f"provisioning service '{name}' does not exist")
            return uow.services.policies(name)

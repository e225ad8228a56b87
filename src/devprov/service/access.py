"""Who is calling the service API: DPS shared access signatures checked against the policies.

DPS addresses an instance by host name; one devprov server hosts several provisioning services
on one host and port, so the service is the one whose policy key signed the token (a policy name
such as ``provisioningserviceowner`` exists in every service, its keys do not). Which policy
signed is settled before the expiry is judged, so an expired token is reported as expired
(``SasTokenExpired``, 401005) however many services have a policy of its name.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from devprov.core.error import InvalidCredentialsError, MissingCredentialsError
from devprov.core.sas import (
    Right,
    parse_sas_token,
    require_right,
    resource_matches_service,
    verify_sas_token_against,
)
from devprov.service.model import AccessPolicy
from devprov.service.port import Clock, UnitOfWorkFactory


@dataclass(frozen=True)
class Caller:
    service: str
    policy: AccessPolicy

    @property
    def actor(self) -> str:
        return f"policy:{self.policy.name}"

    def require(self, right: Right) -> None:
        require_right(self.policy.rights, right, self.policy.name)


class ServiceAccess:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def authenticate(self, authorization: str | None, host_names: Collection[str]) -> Caller:
        if not authorization:
            raise MissingCredentialsError("the request has no Authorization header")
        token = parse_sas_token(authorization)
        if not resource_matches_service(token.resource, host_names):
            raise InvalidCredentialsError(
                f"the token's resource '{token.resource}' does not name this server "
                f"({', '.join(sorted(host_names))})"
            )
        if not token.key_name:
            raise InvalidCredentialsError(
                "a service token needs 'skn', the shared access policy name"
            )
        now = self._clock()
        with self._uow(read_only=True) as uow:
            candidates = uow.services.policies_named(token.key_name)
        if not candidates:
            raise InvalidCredentialsError(
                f"no provisioning service has a shared access policy '{token.key_name}'"
            )
        signer = verify_sas_token_against(
            token, [(p.primary_key, p.secondary_key) for p in candidates], now=now
        )
        return Caller(candidates[signer].service, candidates[signer])

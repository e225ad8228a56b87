"""The rules for the HTTP calls devprov makes itself (today the custom allocation webhook).

No I/O here: the adapter resolves names and connects; this module says

- how a URL is shown in a message (``redact_url``): a webhook URL can carry a key (Azure
  Functions' ``?code=``) or a user and password, and neither may reach a log line, the audit
  trail or a stored record;
- which addresses a call may reach (``validate_destination``): not link-local ones nor the cloud
  metadata services, which hand out credentials to whoever asks from inside the machine, unless
  the operator allows them; loopback and private networks are allowed, since self-hosted
  functions live there;
- the limits of one call.

docs/operations.md#custom-allocation-webhook-secrets-deadline-size-and-destinations describes the
policy for operators. A later outbound client (hub registries) is meant to use the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import unquote, urlsplit

from devprov.core.error import WebhookDestinationRefusedError

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# What stands in for a secret part of a URL in every message.
REDACTED = "<redacted>"

# One call's whole budget, from resolving the host to the last byte of the answer, not per
# phase: long enough for an Azure Function's cold start, short of the 30 s a device waits for an
# answer (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts).
WEBHOOK_DEADLINE_SECONDS = 10.0

# A webhook's answer is a small JSON document (a hub name, an initial twin, a payload for the
# device); the same ceiling as a request body devprov accepts. Counted while the answer streams
# in: a longer answer is refused without being read to its end.
MAX_WEBHOOK_RESPONSE_BYTES = 96 * 1024


@dataclass(frozen=True)
class RefusedNetwork:
    network: Network
    why: str


def _refused(network: str, why: str) -> RefusedNetwork:
    return RefusedNetwork(ip_network(network), why)


# Refused unless `devprov serve --webhook-allow` covers the address. The sources are listed in
# docs/operations.md#webhook-destinations.
REFUSED_NETWORKS: tuple[RefusedNetwork, ...] = (
    _refused("169.254.0.0/16", "link-local (RFC 3927), where clouds serve instance metadata"),
    _refused("fe80::/10", "link-local (RFC 4291)"),
    _refused("fd00:ec2::254/128", "the AWS instance metadata service"),
    _refused("fd20:ce::254/128", "the Google Compute Engine metadata server"),
    _refused("100.100.100.200/32", "the Alibaba Cloud instance metadata service"),
    _refused("168.63.129.16/32", "the Azure platform's WireServer"),
    _refused("0.0.0.0/8", "no host address ('this network', RFC 1122)"),
    _refused("::/128", "the unspecified address"),
    _refused("224.0.0.0/4", "multicast"),
    _refused("255.255.255.255/32", "broadcast"),
    _refused("ff00::/8", "multicast"),
)

# Names of metadata services, refused whatever they resolve to (a resolver may map them anywhere)
# unless every address they resolve to is allowed. `metadata` is the short form Compute Engine's
# search domain completes.
METADATA_HOST_NAMES = frozenset({"metadata.google.internal", "metadata"})

# IPv6 forms that carry an IPv4 address, checked as that address: the well-known NAT64 prefix
# (RFC 6052); IPv4-mapped addresses (::ffff:0:0/96) are unwrapped by ``ipv4_mapped``.
NAT64_PREFIX = IPv6Network("64:ff9b::/96")


# --- redaction ---------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` with the userinfo, query and fragment replaced by
    ``<redacted>``: what a message may show of a URL. Never raises.

    A URL whose authority does not parse, or with an ``@`` past its authority, may hold a
    password with a raw ``/``, ``?``, ``#`` or ``[`` in it, split across the parts: it is shown
    as ``scheme://<redacted>``. What cannot be told apart from a secret is not shown."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return _opaque(url)
    if "@" in parts.path + parts.query + parts.fragment:
        return _opaque(url)
    _userinfo, at, host = parts.netloc.rpartition("@")
    shown = f"{parts.scheme}://" if parts.scheme else ""
    if parts.netloc or parts.scheme:
        shown += (f"{REDACTED}@" if at else "") + host
    shown += parts.path
    if "?" in url:
        shown += f"?{REDACTED}"
    if parts.fragment:
        shown += f"#{REDACTED}"
    return shown


def _opaque(url: str) -> str:
    scheme = url.partition("://")[0] if "://" in url else ""
    # Lower-cased as urlsplit shows it on the other path: schemes are case-insensitive
    # (RFC 3986 3.1).
    return f"{scheme.lower()}://{REDACTED}" if scheme.isalpha() else REDACTED


def _secret_parts(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url.partition("://")[2]]
    userinfo = parts.netloc.rpartition("@")[0]
    # urlsplit drops tabs and line breaks; the parts as written count too.
    raw_query = url.partition("?")[2].partition("#")[0]
    found = [parts.query, raw_query, parts.fragment, url.partition("#")[2]]
    found += [userinfo, userinfo.partition(":")[2]]
    for parameter in [*parts.query.split("&"), *raw_query.split("&")]:
        found += [parameter, parameter.partition("=")[2]]
    found += [unquote(p) for p in found]
    return sorted({p for p in found if p}, key=len, reverse=True)


def redact_text(text: str, url: str) -> str:
    """``text`` (a foreign library's error message, which may quote the URL) with ``url`` shown
    redacted and every secret part of it (userinfo, password, query, each query value, fragment,
    also percent-decoded) replaced wherever else it appears."""
    if not url:
        return text
    secrets = _secret_parts(url)
    pieces = text.split(url)
    for secret in secrets:
        pieces = [piece.replace(secret, REDACTED) for piece in pieces]
    return redact_url(url).join(pieces)


# --- destinations ------------------------------------------------------------------------------


def _embedded_ipv4(address: Address) -> IPv4Address | None:
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _forms(address: Address) -> list[Address]:
    """The address and the IPv4 address it carries, if any."""
    embedded = _embedded_ipv4(address)
    return [address] if embedded is None else [address, embedded]


def _allowed(address: Address, allowed: Iterable[Network]) -> bool:
    return any(form in network for form in _forms(address) for network in allowed)


def refusal(address: Address, allowed: Sequence[Network] = ()) -> RefusedNetwork | None:
    """The rule that refuses ``address``, or None when a call may reach it."""
    if _allowed(address, allowed):
        return None
    for form in _forms(address):
        for rule in REFUSED_NETWORKS:
            if form in rule.network:
                return rule
    return None


def is_metadata_host_name(host: str) -> bool:
    return host.lower().rstrip(".") in METADATA_HOST_NAMES


def validate_destination(
    host: str, addresses: Sequence[Address], allowed: Sequence[Network] = ()
) -> None:
    """Raise :class:`WebhookDestinationRefusedError` unless a call to ``host``, which resolved to
    ``addresses``, may reach every one of them. ``allowed`` are the operator's exceptions."""
    if not addresses:
        raise WebhookDestinationRefusedError(f"{host} resolves to no address")
    for address in addresses:
        if is_metadata_host_name(host) and not _allowed(address, allowed):
            raise WebhookDestinationRefusedError(
                f"{host} is the name of a cloud metadata service ({address}); "
                f"allow it with 'devprov serve --webhook-allow {address}' if it is really yours"
            )
        rule = refusal(address, allowed)
        if rule is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            raise WebhookDestinationRefusedError(
                f"{shown} is in {rule.network}, {rule.why}; devprov does not call it unless "
                f"'devprov serve --webhook-allow {rule.network}' (or a narrower network) allows it"
            )


def parse_address(text: str) -> Address:
    """An address as a resolver returns it (an IPv6 one may carry a ``%zone``)."""
    return ip_address(text)

"""Entity tags and If-Match, as RFC 7232 defines them and as Azure's clients send them.

The current ARM SDK wraps the etag in double quotes (``If-Match: "AAAAAAA00001="``); the 1.x SDK and
the Azure CLI send it bare (docs/sdk-clients.md#management-sdk-requests-etags-and-bodies). Both must
match. ``*`` matches any existing record (RFC 7232 3.1). If-Match uses the strong comparison, so
weak tags never match.
"""

from __future__ import annotations

import base64

# The ARM specification's example etags are base64 of 8 bytes, e.g. "AAAAAAExpNs="
# (docs/dps-wire.md#the-certificate-resource); devprov's enrollment and registration records use
# that form, its certificates the recorded one below.
ETAG_BYTES = 8


def build_etag(nonce: bytes) -> str:
    """Base64 of 8 bytes whose first is zero, so the etag starts with "A" as DPS's do.

    Without that, one etag in 4,096 would start with "W/", which clients read as a weak tag:
    the ARM SDK then sends it unquoted, and RFC 7232's strong comparison can never match it.
    """
    if len(nonce) != ETAG_BYTES:
        raise ValueError(f"an etag needs {ETAG_BYTES} bytes")
    return base64.b64encode(b"\x00" + nonce[1:]).decode("ascii")


# The certificate resource's etags as the real service answers them: base64 of a double-quoted
# GUID-shaped string, "IjA1MDA2YmVhLTAwMDAtMDcwMC0wMDAwLTYyNzE2YjRiMDAwMCI=" for
# "05006bea-0000-0700-0000-62716b4b0000"
# (docs/management-answers.md#certificate-answers-as-recorded).
RESOURCE_ETAG_BYTES = 16


def build_resource_etag(nonce: bytes) -> str:
    """Base64 of ``"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"``: 16 nonce bytes as lower-case hex in
    GUID form, in double quotes, as the recorded DPS etags are.

    Base64 of ``"`` starts with "I", so such an etag never reads as a weak tag ("W/").
    """
    if len(nonce) != RESOURCE_ETAG_BYTES:
        raise ValueError(f"a resource etag needs {RESOURCE_ETAG_BYTES} bytes")
    h = nonce.hex()
    quoted = f'"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"'
    return base64.b64encode(quoted.encode("ascii")).decode("ascii")


def _entity_tags(header: str) -> list[str]:
    tags: list[str] = []
    for raw in header.split(","):
        tag = raw.strip()
        if not tag:
            continue
        if tag.startswith("W/"):
            tags.append("W/")  # a weak tag never matches under strong comparison
            continue
        if len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"':
            tag = tag[1:-1]
        tags.append(tag)
    return tags


def is_etag_match(if_match: str, current: str) -> bool:
    """True when the If-Match header value admits a record whose etag is ``current``."""
    tags = _entity_tags(if_match)
    return "*" in tags or current in tags


def format_etag(etag: str) -> str:
    """The header form of an etag: quoted, as RFC 7232 2.3 writes it."""
    return f'"{etag}"'

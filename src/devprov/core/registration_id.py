"""Registration ids and enrollment group ids: which strings DPS accepts, and their lookup key.

The rules (docs/dps-wire.md#registration-and-enrollment-ids and
docs/attestation.md#registration-id-and-the-certificate-cn):

- case-insensitive, so storage looks ids up by :func:`registration_key`;
- ASCII letters and digits plus ``-``, ``.``, ``_`` and ``:``;
- at most 128 characters, and at most 64 for an X.509 device, whose id is its certificate's CN
  (RFC 5280 Appendix A.1, ub-common-name = 64).

The two sources disagree at the edges. The service spec (SVC-SPEC) says "no special characters
allowed at start or end"; the docs (DOCS, also
docs/attestation.md#registration-id-and-the-certificate-cn) say "the last character must be
alphanumeric or dash" and say nothing about the first. devprov takes each source where it is the
more specific one:

- the first character must be a letter or digit: the spec forbids special characters there and
  the docs are silent, so nothing allows one;
- the last character must be a letter, a digit or ``-``: the docs name the dash explicitly, and a
  device that DPS accepts with a trailing dash must not be refused here.
"""

from __future__ import annotations

import re

from devprov.core.error import InvalidEnrollmentGroupIdError, InvalidRegistrationIdError

MAX_REGISTRATION_ID_LENGTH = 128  # docs/dps-wire.md#registration-and-enrollment-ids
# the CN's upper bound, docs/attestation.md#registration-id-and-the-certificate-cn
MAX_X509_REGISTRATION_ID_LENGTH = 64
# docs/dps-wire.md#registration-and-enrollment-ids: same rules as registration ids
MAX_ENROLLMENT_GROUP_ID_LENGTH = 128

# ASCII classes spelled out: str.isalnum() and \w would admit other scripts' letters and digits.
_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]*[A-Za-z0-9-])?")
_ID_CHARACTERS = re.compile(r"[A-Za-z0-9._:-]+")
_ALLOWED = "letters, digits, '-', '.', '_' and ':'"

# Enough of a rejected value to recognise it in an error message without echoing a megabyte.
SHOWN_CHARACTERS = 64


def shown_id(value: str) -> str:
    """``value`` as a message, log line or audit entry may carry an id a client sent: quoted
    with Python's escapes (no raw newline or terminal escape), whole when it is short, otherwise
    its first :data:`SHOWN_CHARACTERS` characters and its length."""
    if len(value) <= SHOWN_CHARACTERS:
        return repr(value)
    return f"{value[:SHOWN_CHARACTERS]!r}... ({len(value)} characters)"


def _id_problem(value: str, limit: int) -> str | None:
    """Why ``value`` is not a DPS id of at most ``limit`` characters, or None."""
    if not value:
        return "is empty"
    if len(value) > limit:
        return f"has {len(value)} characters; at most {limit} are allowed"
    if _ID.fullmatch(value):
        return None
    if not _ID_CHARACTERS.fullmatch(value):
        return f"may contain only {_ALLOWED}"
    if not value[0].isalnum():
        return "must start with a letter or a digit"
    return "must end with a letter, a digit or '-'"


def validate_registration_id(value: str, *, x509: bool = False) -> str:
    """``value`` unchanged when DPS would accept it as a registration id.

    ``x509`` applies the 64-character limit of an id that is also a certificate's CN.
    Raises :class:`InvalidRegistrationIdError`.
    """
    limit = MAX_X509_REGISTRATION_ID_LENGTH if x509 else MAX_REGISTRATION_ID_LENGTH
    problem = _id_problem(value, limit)
    if problem is not None:
        kind = "an X.509 device's registration id" if x509 else "a registration id"
        raise InvalidRegistrationIdError(f"{shown_id(value)} is not {kind}: it {problem}")
    return value


def validate_enrollment_group_id(value: str) -> str:
    """``value`` unchanged when DPS would accept it as an enrollment group id.

    Raises :class:`InvalidEnrollmentGroupIdError`.
    """
    problem = _id_problem(value, MAX_ENROLLMENT_GROUP_ID_LENGTH)
    if problem is not None:
        raise InvalidEnrollmentGroupIdError(
            f"{shown_id(value)} is not an enrollment group id: it {problem}"
        )
    return value


def registration_key(value: str) -> str:
    """The key storage finds a registration id under: validated, then lower-cased.

    DPS treats ids case-insensitively (docs/dps-wire.md#registration-and-enrollment-ids), so
    ``Dev-1`` and ``dev-1`` are one device.
    The ids are ASCII, where lower-casing and case-folding agree.
    Raises :class:`InvalidRegistrationIdError`.
    """
    return validate_registration_id(value).lower()

"""core.registration_id: DPS's registration id and enrollment group id rules
(docs/dps-wire.md#registration-and-enrollment-ids,
docs/attestation.md#registration-id-and-the-certificate-cn)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.error import InvalidEnrollmentGroupIdError, InvalidRegistrationIdError
from devprov.core.registration_id import (
    MAX_ENROLLMENT_GROUP_ID_LENGTH,
    MAX_REGISTRATION_ID_LENGTH,
    MAX_X509_REGISTRATION_ID_LENGTH,
    registration_key,
    validate_enrollment_group_id,
    validate_registration_id,
)

ACCEPTED = [
    pytest.param("my-device", id="ok/plain"),
    pytest.param("a", id="ok/one-character"),
    pytest.param("7", id="ok/one-digit"),
    pytest.param("Dev.1_a:b-", id="ok/every-allowed-character-ends-with-dash"),
    pytest.param("sym-device-1", id="ok/captured-symmetric-key-device"),
    pytest.param("breakroom499-contoso-tstrsd-007", id="ok/docs-example"),
    pytest.param("a" * 64, id="ok/64-characters"),
]

REJECTED = [
    pytest.param("", "is empty", id="fail/empty"),
    pytest.param("ends.", "must end", id="fail/ends-with-dot"),
    pytest.param("ends_", "must end", id="fail/ends-with-underscore"),
    pytest.param("ends:", "must end", id="fail/ends-with-colon"),
    pytest.param("-starts", "must start", id="fail/starts-with-dash"),
    pytest.param(".starts", "must start", id="fail/starts-with-dot"),
    pytest.param("_starts", "must start", id="fail/starts-with-underscore"),
    pytest.param(":starts", "must start", id="fail/starts-with-colon"),
    pytest.param("-", "must start", id="fail/dash-alone"),
    pytest.param("has space", "may contain only", id="fail/space"),
    pytest.param("ünï", "may contain only", id="fail/non-ascii-letter"),
    pytest.param("dev٣", "may contain only", id="fail/non-ascii-digit"),
    pytest.param("a/b", "may contain only", id="fail/slash"),
    pytest.param("a%2Fb", "may contain only", id="fail/percent"),
    pytest.param("dev\n", "may contain only", id="fail/trailing-newline"),
    pytest.param("a" * 129, "at most 128", id="fail/129-characters"),
]


@pytest.mark.parametrize("value", ACCEPTED)
def test_accepted_ids_come_back_unchanged(value: str) -> None:
    assert validate_registration_id(value) == value
    assert validate_registration_id(value, x509=True) == value
    assert validate_enrollment_group_id(value) == value


@pytest.mark.parametrize(("value", "reason"), REJECTED)
def test_rejected_ids_say_why(value: str, reason: str) -> None:
    with pytest.raises(InvalidRegistrationIdError, match=reason):
        validate_registration_id(value)
    with pytest.raises(InvalidEnrollmentGroupIdError, match=reason):
        validate_enrollment_group_id(value)


def test_length_limits_are_128_and_64_for_x509() -> None:
    longest = "a" * MAX_REGISTRATION_ID_LENGTH
    assert validate_registration_id(longest) == longest
    assert validate_enrollment_group_id("g" * MAX_ENROLLMENT_GROUP_ID_LENGTH)
    assert validate_registration_id("a" * MAX_X509_REGISTRATION_ID_LENGTH, x509=True)
    with pytest.raises(InvalidRegistrationIdError, match=r"X\.509.*at most 64"):
        validate_registration_id("a" * (MAX_X509_REGISTRATION_ID_LENGTH + 1), x509=True)
    assert validate_registration_id("a" * (MAX_X509_REGISTRATION_ID_LENGTH + 1))


def test_error_messages_do_not_echo_huge_values() -> None:
    with pytest.raises(InvalidRegistrationIdError) as caught:
        validate_registration_id("x" * 100_000)
    assert len(caught.value.message) < 200


def test_registration_key_folds_case() -> None:
    assert registration_key("Sym-Device-1") == "sym-device-1"
    assert registration_key("SYM-DEVICE-1") == registration_key("sym-device-1")
    with pytest.raises(InvalidRegistrationIdError):
        registration_key("no spaces")


_VALID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._:-]*[A-Za-z0-9-])?")


@given(st.text(max_size=140))
def test_arbitrary_text_is_accepted_exactly_when_it_follows_the_rules(value: str) -> None:
    expected = len(value) <= 128 and _VALID.fullmatch(value) is not None
    try:
        validate_registration_id(value)
    except InvalidRegistrationIdError:
        assert not expected
    else:
        assert expected


@given(st.from_regex(_VALID, fullmatch=True).filter(lambda v: len(v) <= 64))
def test_generated_valid_ids_are_accepted_and_keyed_lower_case(value: str) -> None:
    assert validate_registration_id(value, x509=True) == value
    assert registration_key(value) == value.lower()
    assert registration_key(value.upper()) == registration_key(value)


@given(st.text(max_size=140))
def test_group_ids_raise_only_their_input_error(value: str) -> None:
    try:
        validate_enrollment_group_id(value)
    except InvalidEnrollmentGroupIdError:
        return
    assert _VALID.fullmatch(value)

"""What the device API reads from a DeviceRegistration body and answers, whatever the transport:
the register's ``payload`` and ``csr``, the status lookup that must not carry a ``csr``, and the
``issuedCertificateChain`` of an assigned operation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import DevprovError, MalformedRequestError
from devprov.core.registration import AttestationMethod, RegistrationState, RegistrationStatus
from devprov.service.device_answer import (
    CsrInStatusLookupError,
    RegistrationRequest,
    TpmNotSupportedError,
    operation_status_body,
    register_answer,
    registration_request,
    status_lookup_request,
)
from devprov.service.model import Operation

AT = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(None, RegistrationRequest(), id="ok/no-body"),
        pytest.param({}, RegistrationRequest(), id="ok/empty"),
        pytest.param(
            {"registrationId": "DEV-1", "payload": {"a": 1}},
            RegistrationRequest({"a": 1}, None),
            id="ok/payload",
        ),
        pytest.param({"csr": "MIIB"}, RegistrationRequest(None, "MIIB"), id="ok/csr"),
        pytest.param(
            {"registrationId": "dev-1", "csr": "MIIB", "payload": None},
            RegistrationRequest(None, "MIIB"),
            id="ok/csr-and-null-payload",
        ),
        pytest.param({"csr": None}, RegistrationRequest(), id="ok/null-csr"),
        pytest.param(
            {"csr": ""}, RegistrationRequest(None, ""), id="ok/empty-csr-for-the-use-case"
        ),
    ],
)
def test_a_register_body_is_read(body: Any, expected: RegistrationRequest) -> None:
    assert registration_request(body, "dev-1") == expected


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        pytest.param([], MalformedRequestError, "DeviceRegistration object", id="fail/array"),
        pytest.param({"registrationId": "dev-2"}, MalformedRequestError, "differs", id="fail/id"),
        pytest.param({"payload": "x"}, MalformedRequestError, "'payload'", id="fail/payload"),
        pytest.param({"csr": 12}, MalformedRequestError, "'csr' must be a string", id="fail/csr"),
        pytest.param({"csr": ["MIIB"]}, MalformedRequestError, "base64", id="fail/csr-array"),
        pytest.param({"tpm": {"endorsementKey": "x"}}, TpmNotSupportedError, "TPM", id="fail/tpm"),
    ],
)
def test_a_register_body_is_refused(body: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        registration_request(body, "dev-1")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="ok/no-body"),
        pytest.param({"registrationId": "dev-1"}, id="ok/id"),
        pytest.param({"registrationId": "dev-1", "csr": None}, id="ok/null-csr"),
    ],
)
def test_a_status_lookup_body_without_csr_is_taken(body: Any) -> None:
    status_lookup_request(body, "dev-1")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param({"csr": "MIIB"}, CsrInStatusLookupError, id="fail/csr"),
        pytest.param({"csr": ""}, CsrInStatusLookupError, id="fail/empty-csr"),
        pytest.param({"registrationId": "x", "csr": "MIIB"}, MalformedRequestError, id="fail/id"),
    ],
)
def test_a_status_lookup_body_with_csr_is_a_bad_request(
    body: Any, error: type[DevprovError]
) -> None:
    with pytest.raises(error) as caught:
        status_lookup_request(body, "dev-1")
    assert caught.value.number // 1000 == 400


def _decided(status: RegistrationStatus) -> tuple[Operation, RegistrationState]:
    operation = Operation(
        id="5.0.op", service="default", registration_id="dev-1", created_at=AT, status=status.value
    )
    state = RegistrationState(
        service="default",
        registration_id="dev-1",
        method=AttestationMethod.X509,
        enrollment_kind=EnrollmentKind.GROUP,
        enrollment_id="grp",
        status=status,
        created_at=AT,
        updated_at=AT,
        etag="e",
        assigned_hub="hub" if status is RegistrationStatus.ASSIGNED else None,
    )
    return operation, state


def test_an_assigned_operation_carries_the_issued_chain() -> None:
    operation, state = _decided(RegistrationStatus.ASSIGNED)
    body = operation_status_body(operation, state, ("bGVhZg==", "Y2E="))
    assert body["registrationState"]["issuedCertificateChain"] == ["bGVhZg==", "Y2E="]
    status, answered = register_answer(operation, state, always_poll=False, chain=("bGVhZg==",))
    assert status == 200 and answered["registrationState"]["issuedCertificateChain"] == ["bGVhZg=="]


@pytest.mark.parametrize(
    ("status", "chain"),
    [
        pytest.param(RegistrationStatus.ASSIGNED, (), id="assigned-without-chain"),
        pytest.param(RegistrationStatus.FAILED, ("bGVhZg==",), id="failed"),
        pytest.param(RegistrationStatus.DISABLED, ("bGVhZg==",), id="disabled"),
    ],
)
def test_no_chain_member_otherwise(status: RegistrationStatus, chain: tuple[str, ...]) -> None:
    operation, state = _decided(status)
    assert (
        "issuedCertificateChain"
        not in operation_status_body(operation, state, chain)["registrationState"]
    )


def test_an_always_poll_register_answer_is_assigning_without_the_chain() -> None:
    operation, state = _decided(RegistrationStatus.ASSIGNED)
    status, body = register_answer(operation, state, always_poll=True, chain=("bGVhZg==",))
    assert (status, body) == (202, {"operationId": "5.0.op", "status": "assigning"})

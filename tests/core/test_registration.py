from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from devprov.core import document
from devprov.core.enrollment import (
    Attestation,
    AttestationType,
    Enrollment,
    EnrollmentKind,
    ReprovisionPolicy,
)
from devprov.core.registration import (
    ASSIGNING_LIMIT,
    AttestationMethod,
    RegistrationState,
    RegistrationStatus,
    Substatus,
    decide_assignment,
    device_error,
    device_id_for,
    is_abandoned,
)
from tests.factory import NOW

GROUP = Enrollment("svc", EnrollmentKind.GROUP, "grp", Attestation(AttestationType.SYMMETRIC_KEY))
LATER = NOW + timedelta(hours=1)


def fresh(enrollment: Enrollment = GROUP) -> RegistrationState:
    return RegistrationState(
        service="svc",
        registration_id="dev-1",
        method=AttestationMethod.SYMMETRIC_KEY,
        enrollment_kind=enrollment.kind,
        enrollment_id=enrollment.id,
        status=RegistrationStatus.ASSIGNING,
        created_at=LATER,
        updated_at=LATER,
        etag="fresh",
    )


def assigned(
    hub: str, *, initial: str | None = None, substatus=Substatus.INITIAL_ASSIGNMENT
) -> RegistrationState:
    return replace(
        fresh(),
        status=RegistrationStatus.ASSIGNED,
        assigned_hub=hub,
        initial_hub=initial or hub,
        substatus=substatus,
        created_at=NOW,
        updated_at=NOW,
        etag="old",
        device_id="dev-1",
    )


def decide(existing, hub, enrollment=GROUP):
    return decide_assignment(
        existing, fresh(enrollment), enrollment, hub=hub, now=LATER, etag="new"
    )


def test_first_registration_is_initial_assignment() -> None:
    state = decide(None, "hub-a")
    assert (state.status, state.assigned_hub, state.initial_hub, state.substatus) == (
        RegistrationStatus.ASSIGNED,
        "hub-a",
        "hub-a",
        Substatus.INITIAL_ASSIGNMENT,
    )
    assert state.created_at == LATER and state.etag == "new" and state.device_id == "dev-1"


def test_unchanged_device_keeps_its_assignment_untouched() -> None:
    existing = assigned("hub-a")
    assert decide(existing, "hub-a") is existing


def test_same_hub_through_another_enrollment_is_rewritten() -> None:
    other = replace(GROUP, id="other-group")
    state = decide(assigned("hub-a"), "hub-a", other)
    assert state.enrollment_id == "other-group" and state.etag == "new" and state.created_at == NOW


@pytest.mark.parametrize(
    ("policy", "initial", "target", "expected_hub", "substatus"),
    [
        pytest.param(
            ReprovisionPolicy(True, True),
            "hub-a",
            "hub-b",
            "hub-b",
            Substatus.DEVICE_DATA_MIGRATED,
            id="move/migrate",
        ),
        pytest.param(
            ReprovisionPolicy(True, False),
            "hub-a",
            "hub-b",
            "hub-b",
            Substatus.DEVICE_DATA_RESET,
            id="move/reset",
        ),
        pytest.param(
            ReprovisionPolicy(False, True),
            "hub-a",
            "hub-b",
            "hub-a",
            Substatus.INITIAL_ASSIGNMENT,
            id="stay/no-update",
        ),
        pytest.param(
            ReprovisionPolicy(True, True),
            "hub-c",
            "hub-c",
            "hub-c",
            Substatus.REPROVISIONED_TO_INITIAL_ASSIGNMENT,
            id="back-to-initial",
        ),
    ],
)
def test_reprovisioning(policy, initial, target, expected_hub, substatus) -> None:
    enrollment = replace(GROUP, reprovision=policy)
    existing = assigned("hub-a", initial=initial)
    state = decide(existing, target, enrollment)
    assert state.assigned_hub == expected_hub and state.substatus is substatus
    assert state.created_at == NOW and state.initial_hub == initial


def test_failed_device_gets_initial_assignment() -> None:
    failed = replace(fresh(), status=RegistrationStatus.FAILED, created_at=NOW, error_code=400208)
    state = decide(failed, "hub-a")
    assert (
        state.substatus is Substatus.INITIAL_ASSIGNMENT
        and state.created_at == NOW
        and state.error_code is None
    )


def test_device_id() -> None:
    individual = Enrollment(
        "svc",
        EnrollmentKind.INDIVIDUAL,
        "dev-1",
        Attestation(AttestationType.X509),
        device_id="custom",
    )
    assert device_id_for(individual, "dev-1") == "custom"
    assert device_id_for(replace(individual, device_id=None), "dev-1") == "dev-1"
    assert device_id_for(GROUP, "dev-9") == "dev-9"


def test_renewed_certificate_on_the_same_hub_is_recorded() -> None:
    existing = replace(assigned("hub-a"), leaf_sha256="OLD")
    state = decide_assignment(
        existing, replace(fresh(), leaf_sha256="NEW"), GROUP, hub="hub-a", now=LATER, etag="new"
    )
    assert state is not existing
    assert (
        state.leaf_sha256 == "NEW"
        and state.etag == "new"
        and state.substatus is Substatus.INITIAL_ASSIGNMENT
    )


# --- what a device is told about a failed registration -------------------------------------------

GENERIC = (400207, "Custom allocation failed")


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        pytest.param(
            (503430, "webhook http://h/fn?<redacted> answered 500"), GENERIC, id="webhook"
        ),
        pytest.param((403430, "webhook ... was not called"), GENERIC, id="webhook-refused"),
        pytest.param((400208, "no hub"), (400208, "no hub"), id="kept/no-hub"),
        pytest.param(
            (400304, "the webhook chose 'x'"), (400304, "the webhook chose 'x'"), id="kept/answer"
        ),
        pytest.param((None, None), (None, None), id="kept/no-error"),
        pytest.param(
            (404620, "the issuing key of credential policy 'ops' is missing (/srv/data/...)"),
            (404620, "The operational certificate could not be issued"),
            id="issuing-key-missing",
        ),
        pytest.param(
            (500680, "credential policy 'ops' cannot issue: the issuing CA is valid from ..."),
            (500680, "The operational certificate could not be issued"),
            id="issuing-ca-cannot-sign",
        ),
    ],
)
def test_device_error(stored: tuple[int | None, str | None], shown: tuple[int, str]) -> None:
    assert device_error(*stored) == shown


def test_the_device_result_shows_the_device_error_and_the_state_the_precise_one() -> None:
    failed = replace(
        fresh(),
        status=RegistrationStatus.FAILED,
        error_code=503430,
        error_message="the custom allocation webhook http://h/fn?<redacted> answered 500",
    )
    result = document.registration_result(failed)
    assert (result["errorCode"], result["errorMessage"]) == GENERIC
    state = document.registration_state(failed)
    assert state["errorCode"] == 503430 and "answered 500" in state["errorMessage"]


@pytest.mark.parametrize(
    ("status", "age", "abandoned"),
    [
        pytest.param("assigning", timedelta(0), False, id="ok/just-stored"),
        pytest.param("assigning", ASSIGNING_LIMIT, False, id="ok/at-the-limit"),
        pytest.param("assigning", ASSIGNING_LIMIT + timedelta(microseconds=1), True, id="past"),
        pytest.param("assigned", ASSIGNING_LIMIT * 100, False, id="ok/settled-long-ago"),
        pytest.param("failed", ASSIGNING_LIMIT * 100, False, id="ok/failed-long-ago"),
    ],
)
def test_is_abandoned(status: str, age: timedelta, abandoned: bool) -> None:
    assert is_abandoned(status, NOW, now=NOW + age) is abandoned

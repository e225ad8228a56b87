"""core.allocation: DPS's allocation policies and the custom allocation webhook's shapes."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.allocation import (
    DEFAULT_ALLOCATION_WEIGHT,
    AllocationPolicy,
    CustomAllocationResult,
    LinkedHub,
    build_custom_allocation_request,
    choose_hub,
    parse_custom_allocation_response,
)
from devprov.core.error import (
    CustomAllocationError,
    InvalidHubError,
    InvalidRegistrationIdError,
    NoHubError,
)

A = "hub-a.azure-devices.net"
B = "hub-b.azure-devices.net"
C = "hub-c.azure-devices.net"
IDS = [f"device-{n:05d}" for n in range(10_000)]

HASHING = [AllocationPolicy.HASHED, AllocationPolicy.GEO_LATENCY]


def spread(
    hubs: list[LinkedHub], policy: AllocationPolicy = AllocationPolicy.HASHED
) -> Counter[str]:
    return Counter(choose_hub(policy, rid, hubs, enrollment_hubs=None) for rid in IDS)


def test_policy_values_are_dps_spellings() -> None:
    assert [p.value for p in AllocationPolicy] == ["hashed", "geoLatency", "static", "custom"]


def test_default_weight_is_one() -> None:
    assert LinkedHub(A).weight == DEFAULT_ALLOCATION_WEIGHT == 1
    assert LinkedHub(A).apply_allocation_policy


@pytest.mark.parametrize("policy", HASHING, ids=["hashed", "geoLatency"])
def test_equal_weights_spread_evenly(policy: AllocationPolicy) -> None:
    counts = spread([LinkedHub(A), LinkedHub(B), LinkedHub(C)], policy)
    for hub in (A, B, C):
        assert abs(counts[hub] / len(IDS) - 1 / 3) < 0.02, counts


def test_weights_are_respected() -> None:
    counts = spread([LinkedHub(A, 1), LinkedHub(B, 3), LinkedHub(C, 6)])
    assert abs(counts[A] / len(IDS) - 0.1) < 0.015, counts
    assert abs(counts[B] / len(IDS) - 0.3) < 0.02, counts
    assert abs(counts[C] / len(IDS) - 0.6) < 0.02, counts


def test_weight_zero_keeps_a_hub_out() -> None:
    counts = spread([LinkedHub(A, 0), LinkedHub(B, 1)])
    assert counts == Counter({B: len(IDS)})


def test_choice_is_stable_across_calls_order_and_case() -> None:
    hubs = [LinkedHub(A), LinkedHub(B, 2), LinkedHub(C)]
    first = {
        rid: choose_hub(AllocationPolicy.HASHED, rid, hubs, enrollment_hubs=None)
        for rid in IDS[:500]
    }
    shuffled = hubs[:]
    random.Random(7).shuffle(shuffled)
    for rid, hub in first.items():
        assert choose_hub(AllocationPolicy.HASHED, rid, shuffled, enrollment_hubs=None) == hub
        assert choose_hub(AllocationPolicy.HASHED, rid.upper(), hubs, enrollment_hubs=None) == hub


def test_known_assignment_does_not_drift() -> None:
    # Pinned: a change here would move devices to other hubs when they register again.
    hubs = [LinkedHub(C), LinkedHub(A), LinkedHub(B)]
    assigned = {
        rid: choose_hub(AllocationPolicy.HASHED, rid, hubs, enrollment_hubs=None) for rid in IDS[:3]
    }
    assert assigned == {"device-00000": B, "device-00001": C, "device-00002": A}
    for rid, hub in assigned.items():  # the documented rule, recomputed
        point = int.from_bytes(hashlib.sha256(rid.encode()).digest(), "big") % 3
        assert hub == [A, B, C][point]


def test_hub_is_returned_as_linked() -> None:
    hubs = [LinkedHub("Hub-A.Azure-Devices.net")]
    assert choose_hub(AllocationPolicy.HASHED, "d", hubs, enrollment_hubs=None) == hubs[0].host_name
    assert (
        choose_hub(AllocationPolicy.STATIC, "d", hubs, enrollment_hubs=["hub-a.azure-devices.net"])
        == hubs[0].host_name
    )


def test_hashing_needs_a_valid_registration_id() -> None:
    with pytest.raises(InvalidRegistrationIdError):
        choose_hub(AllocationPolicy.HASHED, "not valid", [LinkedHub(A)], enrollment_hubs=None)


# --- which hubs are candidates ---------------------------------------------------------------


def test_enrollment_hubs_restrict_the_candidates() -> None:
    hubs = [LinkedHub(A), LinkedHub(B), LinkedHub(C)]
    counts = Counter(
        choose_hub(AllocationPolicy.HASHED, rid, hubs, enrollment_hubs=[B, C]) for rid in IDS[:2000]
    )
    assert set(counts) == {B, C}


def test_enrollment_hubs_may_use_hubs_that_do_not_apply_the_policy() -> None:
    hubs = [LinkedHub(A), LinkedHub(B, apply_allocation_policy=False)]
    assert choose_hub(AllocationPolicy.HASHED, "d", hubs, enrollment_hubs=[B]) == B


def test_without_enrollment_hubs_only_policy_hubs_are_candidates() -> None:
    hubs = [LinkedHub(A, apply_allocation_policy=False), LinkedHub(B)]
    assert spread(hubs) == Counter({B: len(IDS)})
    assert choose_hub(AllocationPolicy.HASHED, "d", hubs, enrollment_hubs=[]) == B


@pytest.mark.parametrize("policy", [AllocationPolicy.HASHED, AllocationPolicy.STATIC])
def test_enrollment_hubs_must_be_linked(policy: AllocationPolicy) -> None:
    with pytest.raises(InvalidHubError, match=r"not linked.*hub-z"):
        choose_hub(policy, "d", [LinkedHub(A)], enrollment_hubs=["hub-z.azure-devices.net"])


def test_enrollment_hubs_compare_case_insensitively_and_deduplicate() -> None:
    hubs = [LinkedHub(A), LinkedHub(B)]
    assert choose_hub(AllocationPolicy.STATIC, "d", hubs, enrollment_hubs=[A.upper(), A]) == A


@pytest.mark.parametrize(
    ("hubs", "enrollment_hubs"),
    [
        pytest.param([], None, id="fail/none-linked"),
        pytest.param([LinkedHub(A, apply_allocation_policy=False)], None, id="fail/none-applies"),
        pytest.param([LinkedHub(A, 0)], None, id="fail/all-weight-zero"),
        pytest.param([LinkedHub(A, 0), LinkedHub(B)], [A], id="fail/listed-weight-zero"),
    ],
)
def test_no_candidate_is_no_hub(hubs: list[LinkedHub], enrollment_hubs: list[str] | None) -> None:
    with pytest.raises(NoHubError) as caught:
        choose_hub(AllocationPolicy.HASHED, "d", hubs, enrollment_hubs=enrollment_hubs)
    # DPS's "hub not specified" (docs/dps-wire.md#error-codes-seen)
    assert caught.value.number == 400208


def test_linked_hub_rules() -> None:
    with pytest.raises(InvalidHubError):
        LinkedHub("")
    with pytest.raises(InvalidHubError, match="weight -1"):
        LinkedHub(A, -1)
    with pytest.raises(InvalidHubError, match="linked twice"):
        choose_hub(
            AllocationPolicy.HASHED, "d", [LinkedHub(A), LinkedHub(A.upper())], enrollment_hubs=None
        )


# --- static and custom -----------------------------------------------------------------------


def test_static_takes_the_one_enrollment_hub() -> None:
    hubs = [LinkedHub(A), LinkedHub(B, 0, apply_allocation_policy=False)]
    assert {
        choose_hub(AllocationPolicy.STATIC, rid, hubs, enrollment_hubs=[B]) for rid in IDS[:50]
    } == {B}


@pytest.mark.parametrize(
    ("enrollment_hubs", "error"),
    [
        pytest.param(None, NoHubError, id="fail/none-named"),
        pytest.param([], NoHubError, id="fail/empty"),
        pytest.param([A, B], InvalidHubError, id="fail/two"),
    ],
)
def test_static_needs_exactly_one_hub(
    enrollment_hubs: list[str] | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        choose_hub(
            AllocationPolicy.STATIC,
            "d",
            [LinkedHub(A), LinkedHub(B)],
            enrollment_hubs=enrollment_hubs,
        )


def test_custom_is_not_decided_here() -> None:
    with pytest.raises(ValueError, match="webhook"):
        choose_hub(AllocationPolicy.CUSTOM, "d", [LinkedHub(A)], enrollment_hubs=None)


GROUP: dict[str, Any] = {  # the group of DOCS' example request, with its keys as stored
    "enrollmentGroupId": "contoso-custom-allocated-devices",
    "attestation": {
        "type": "symmetricKey",
        "symmetricKey": {"primaryKey": "c2VjcmV0c2VjcmV0c2VjcmV0", "secondaryKey": "c2VjcmV0"},
    },
    "allocationPolicy": "custom",
    "iotHubs": [A, B],
    "customAllocationDefinition": {
        "webhookUrl": "https://fn.azurewebsites.net/api/HttpTrigger1?code=functionkey",
        "apiVersion": "2021-10-01",
    },
}


def test_request_for_a_first_symmetric_key_registration() -> None:
    request = build_custom_allocation_request(
        enrollment=GROUP,
        enrollment_group=True,
        registration_id="breakroom499-contoso-tstrsd-007",
        linked_hubs=[A, B],
    )
    assert request == {
        "enrollmentGroup": {
            **GROUP,
            "attestation": {"type": "symmetricKey"},
            "customAllocationDefinition": {
                "webhookUrl": "https://fn.azurewebsites.net/api/HttpTrigger1?****",
                "apiVersion": "2021-10-01",
            },
        },
        "deviceRuntimeContext": {
            "registrationId": "breakroom499-contoso-tstrsd-007",
            "symmetricKey": {},
        },
        "linkedHubs": [A, B],
    }
    assert "c2VjcmV0" not in json.dumps(request)
    assert "functionkey" not in json.dumps(request)
    assert GROUP["attestation"]["symmetricKey"]  # the caller's enrollment is left alone


def test_request_for_a_reregistering_x509_device_with_payload() -> None:
    enrollment = {"registrationId": "dev1", "attestation": {"type": "x509", "x509": {"a": 1}}}
    request = build_custom_allocation_request(
        enrollment=enrollment,
        enrollment_group=False,
        registration_id="dev1",
        linked_hubs=[A],
        current_hub=A,
        current_device_id="dev1",
        payload={"modelId": "dtmi:test:dev;1"},
        x509={"clientCertificate": {"subjectName": "CN=dev1"}},
    )
    assert request["individualEnrollment"] == enrollment
    assert request["deviceRuntimeContext"] == {
        "registrationId": "dev1",
        "currentIotHubHostName": A,
        "currentDeviceId": "dev1",
        "x509": {"clientCertificate": {"subjectName": "CN=dev1"}},
        "payload": {"modelId": "dtmi:test:dev;1"},
    }
    json.dumps(request)  # serialisable as it stands


def test_request_without_query_or_definition_is_copied() -> None:
    enrollment = {
        "customAllocationDefinition": {"webhookUrl": "https://fn/api/x", "apiVersion": "v"}
    }
    request = build_custom_allocation_request(
        enrollment=enrollment, enrollment_group=False, registration_id="d", linked_hubs=[]
    )
    assert request["individualEnrollment"] == enrollment


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"iotHubHostName": A}, CustomAllocationResult(A), id="ok/hub-only"),
        pytest.param({"iotHubHostName": A.upper()}, CustomAllocationResult(A), id="ok/hub-case"),
        pytest.param({"iotHubHostname": A}, CustomAllocationResult(A), id="ok/table-spelling"),
        pytest.param(
            {
                "iotHubHostName": B,
                "initialTwin": {
                    "properties": {"desired": {"state": "ready"}},
                    "tags": {"deviceType": "toaster"},
                },
            },
            CustomAllocationResult(
                B,
                {"properties": {"desired": {"state": "ready"}}, "tags": {"deviceType": "toaster"}},
            ),
            id="ok/docs-example-with-twin",
        ),
        pytest.param(
            {"iotHubHostName": A, "payload": {"hello": "world"}, "initialTwin": None},
            CustomAllocationResult(A, None, {"hello": "world"}),
            id="ok/payload",
        ),
        pytest.param(
            {"iotHubHostName": A, "payload": None, "initialTwin": {}},
            CustomAllocationResult(A, {}, None),
            id="ok/null-payload-empty-twin",
        ),
        pytest.param(
            {"iotHubHostName": A, "initialTwin": {"properties": {}}, "extra": 1},
            CustomAllocationResult(A, {"properties": {}}),
            id="ok/unknown-members-ignored",
        ),
    ],
)
def test_response_accepts(body: object, expected: CustomAllocationResult) -> None:
    assert parse_custom_allocation_response(body, [A, B]) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param([], "not a JSON object", id="fail/array"),
        pytest.param(None, "not a JSON object", id="fail/null"),
        pytest.param("hub-a", "not a JSON object", id="fail/string"),
        pytest.param({}, "names no iotHubHostName", id="fail/no-hub"),
        pytest.param({"iotHubHostName": ""}, "names no", id="fail/empty-hub"),
        pytest.param({"iotHubHostName": 7}, "names no", id="fail/number-hub"),
        pytest.param({"iotHubHostName": C}, "not one of the hubs", id="fail/unlinked-hub"),
        pytest.param({"iotHubHostName": "hub-a"}, "not one of the hubs", id="fail/short-name"),
        pytest.param(
            {"iotHubHostName": A, "iothubhostname": B}, "more than once", id="fail/two-spellings"
        ),
        pytest.param({"iotHubHostName": A, "initialTwin": []}, "initialTwin", id="fail/twin-array"),
        pytest.param({"iotHubHostName": A, "payload": [1]}, "payload", id="fail/payload-array"),
        pytest.param({"iotHubHostName": A, "payload": "x"}, "payload", id="fail/payload-string"),
        pytest.param(
            {"iotHubHostName": A, "initialTwin": {"tags": "x"}}, "tags", id="fail/tags-string"
        ),
        pytest.param(
            {"iotHubHostName": A, "initialTwin": {"properties": []}},
            "properties",
            id="fail/properties-array",
        ),
        pytest.param(
            {"iotHubHostName": A, "initialTwin": {"properties": {"desired": 1}}},
            "desired",
            id="fail/desired-number",
        ),
    ],
)
def test_response_rejects(body: object, reason: str) -> None:
    with pytest.raises(CustomAllocationError, match=reason):
        parse_custom_allocation_response(body, [A, B])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "iotHubHostName",
                    "iothubhostname",
                    "initialTwin",
                    "payload",
                    "tags",
                    "properties",
                    "desired",
                    "x",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)
_RESPONSES = _JSON | st.fixed_dictionaries(
    {"iotHubHostName": st.sampled_from([A, B, C, A.upper(), ""])},
    optional={"initialTwin": _JSON, "payload": _JSON},
)


@given(_RESPONSES)
def test_arbitrary_json_raises_only_custom_allocation_errors(body: object) -> None:
    try:
        result = parse_custom_allocation_response(body, [A, B])
    except CustomAllocationError:
        return
    assert result.iot_hub_host_name in (A, B)

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devprov.core.enrollment import (
    AllocationPolicyName,
    AttestationType,
    EnrollmentKind,
    InvalidEnrollmentError,
    ProvisioningStatus,
    keep_stored_certificates,
    keep_stored_keys,
    parse_enrollment,
)
from devprov.core.error import InvalidInputError, MalformedRequestError
from tests import factory as f

ROOT = f.root("Enrollment Root")
DEVICE = f.device(ROOT, "dev-1")
KEY = base64.b64encode(b"k" * 32).decode()


def individual(**attestation):
    return {"registrationId": "dev-1", "attestation": attestation}


def group(**attestation):
    return {"enrollmentGroupId": "grp", "attestation": attestation}


def parse_individual(doc):
    return parse_enrollment(doc, EnrollmentKind.INDIVIDUAL, service="svc", path_id="dev-1")


def parse_group(doc):
    return parse_enrollment(doc, EnrollmentKind.GROUP, service="svc", path_id="grp")


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda c: c.pem.decode(), id="ok/pem"),
        pytest.param(lambda c: base64.b64encode(c.pem).decode(), id="ok/base64-pem-as-c-sdk"),
        pytest.param(lambda c: base64.b64encode(c.der).decode(), id="ok/base64-der"),
    ],
)
def test_individual_x509_client_certificate(encode) -> None:
    e = parse_individual(
        individual(
            type="x509", x509={"clientCertificates": {"primary": {"certificate": encode(DEVICE)}}}
        )
    )
    assert e.attestation.type is AttestationType.X509
    assert e.attestation.primary_certificate and e.attestation.primary_certificate.der == DEVICE.der
    assert (
        e.kind is EnrollmentKind.INDIVIDUAL and e.provisioning_status is ProvisioningStatus.ENABLED
    )


def test_group_with_ca_reference_and_signing_certificate() -> None:
    by_ref = parse_group(
        group(type="x509", x509={"caReferences": {"primary": "root", "secondary": "other"}})
    )
    assert by_ref.attestation.ca_references == ("root", "other")
    inline = parse_group(
        group(
            type="x509",
            x509={"signingCertificates": {"primary": {"certificate": ROOT.pem.decode()}}},
        )
    )
    assert inline.attestation.certificates[0].der == ROOT.der


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param(
            group(type="x509", x509={"clientCertificates": {"primary": {"certificate": "x"}}}),
            "either",
            id="fail/group-client-certs",
        ),
        pytest.param(group(type="x509", x509={}), "either", id="fail/group-nothing"),
        pytest.param(
            group(
                type="x509",
                x509={
                    "caReferences": {"primary": "a"},
                    "signingCertificates": {"primary": {"certificate": "x"}},
                },
            ),
            "either",
            id="fail/group-both",
        ),
        pytest.param(
            group(type="x509", x509={"caReferences": {"secondary": "a"}}),
            "primary' is required",
            id="fail/group-no-primary-ref",
        ),
        pytest.param(
            group(
                type="x509", x509={"signingCertificates": {"primary": {"certificate": "garbage"}}}
            ),
            "signingCertificates.primary.certificate",
            id="fail/group-bad-cert",
        ),
        pytest.param(group(type="tpm", tpm={"endorsementKey": "a"}), "TPM", id="fail/group-tpm"),
        pytest.param(group(type="none"), "cannot be enrolled", id="fail/none"),
        pytest.param(group(type="magic"), "must be one of", id="fail/unknown-type"),
        pytest.param(
            {"enrollmentGroupId": "grp"}, "'attestation' is required", id="fail/no-attestation"
        ),
        pytest.param(
            group(type="symmetricKey", symmetricKey={"primaryKey": "not base64!"}),
            "primaryKey",
            id="fail/bad-key",
        ),
        pytest.param(
            group(
                type="symmetricKey",
                symmetricKey={"primaryKey": base64.b64encode(b"short").decode()},
            ),
            "primaryKey",
            id="fail/short-key",
        ),
        pytest.param(group(type="x509"), "needs an 'x509'", id="fail/x509-missing"),
    ],
)
def test_group_rejects(doc, message: str) -> None:
    with pytest.raises(InvalidEnrollmentError, match=message):
        parse_group(doc)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param(
            individual(type="x509", x509={"caReferences": {"primary": "root"}}),
            "clientCertificates",
            id="fail/individual-ca-ref",
        ),
        pytest.param(
            individual(type="x509", x509={"clientCertificates": {}}),
            "clientCertificates",
            id="fail/no-client-cert",
        ),
        pytest.param(
            individual(type="x509", x509={"clientCertificates": {"primary": "pem"}}),
            "must be an object",
            id="fail/cert-not-object",
        ),
        pytest.param(individual(type="tpm", tpm={}), "endorsementKey", id="fail/tpm-no-ek"),
        pytest.param(
            {**individual(type="symmetricKey"), "registrationId": "other"},
            "differs from the path",
            id="fail/id-mismatch",
        ),
        pytest.param(
            {**individual(type="symmetricKey"), "provisioningStatus": "paused"},
            "provisioningStatus",
            id="fail/status",
        ),
        pytest.param(
            {**individual(type="symmetricKey"), "allocationPolicy": "random"},
            "allocationPolicy",
            id="fail/policy",
        ),
        pytest.param(
            {
                **individual(type="symmetricKey"),
                "allocationPolicy": "static",
                "iotHubs": ["a", "b"],
            },
            "exactly one",
            id="fail/static-two-hubs",
        ),
        pytest.param(
            {**individual(type="symmetricKey"), "allocationPolicy": "custom"},
            "customAllocationDefinition",
            id="fail/custom-no-definition",
        ),
        pytest.param(
            {
                **individual(type="symmetricKey"),
                "allocationPolicy": "custom",
                "customAllocationDefinition": {"webhookUrl": "ftp://x", "apiVersion": "2021-10-01"},
            },
            "webhookUrl",
            id="fail/custom-bad-url",
        ),
        pytest.param(
            {
                **individual(type="symmetricKey"),
                "allocationPolicy": "custom",
                "customAllocationDefinition": {
                    "webhookUrl": "https://x",
                    "apiVersion": "2017-01-01",
                },
            },
            "apiVersion",
            id="fail/custom-old-api",
        ),
        pytest.param(
            {**individual(type="symmetricKey"), "iotHubs": "hub"},
            "iotHubs",
            id="fail/hubs-not-list",
        ),
        pytest.param(
            {
                **individual(type="symmetricKey"),
                "reprovisionPolicy": {"updateHubAssignment": "yes"},
            },
            "updateHubAssignment",
            id="fail/reprovision-type",
        ),
        pytest.param(
            {**individual(type="symmetricKey"), "initialTwin": []},
            "initialTwin",
            id="fail/twin-type",
        ),
        pytest.param(
            {**individual(type="symmetricKey"), "deviceId": 5}, "deviceId", id="fail/device-id-type"
        ),
    ],
)
def test_individual_rejects(doc, message: str) -> None:
    with pytest.raises(InvalidEnrollmentError, match=message):
        parse_individual(doc)


def test_body_must_be_an_object() -> None:
    with pytest.raises(MalformedRequestError):
        parse_individual([])


def test_every_option_is_kept() -> None:
    doc = {
        **individual(type="symmetricKey", symmetricKey={"primaryKey": KEY, "secondaryKey": KEY}),
        "deviceId": "device-one",
        "provisioningStatus": "disabled",
        "allocationPolicy": "custom",
        "customAllocationDefinition": {
            "webhookUrl": "https://fn.example/alloc",
            "apiVersion": "2021-10-01",
        },
        "iotHubs": ["Hub-A.azure-devices.net", "hub-a.azure-devices.net"],
        "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": False},
        "initialTwin": {"tags": {"floor": 3}},
        "capabilities": {"iotEdge": True},
        "optionalDeviceInformation": {"a": 1},
    }
    e = parse_individual(doc)
    assert e.device_id == "device-one" and not e.enabled
    assert e.allocation_policy is AllocationPolicyName.CUSTOM and e.custom_allocation
    assert e.custom_allocation.webhook_url == "https://fn.example/alloc"
    assert e.iot_hubs == ("hub-a.azure-devices.net",)
    assert e.reprovision.update_hub_assignment and not e.reprovision.migrate_device_data
    assert e.initial_twin == {"tags": {"floor": 3}} and e.iot_edge
    assert e.optional_device_information == {"a": 1}
    assert e.attestation.keys == (KEY, KEY)


def test_defaults() -> None:
    e = parse_group(group(type="symmetricKey"))
    assert e.enabled and e.allocation_policy is None and e.iot_hubs == ()
    assert e.reprovision.update_hub_assignment and e.reprovision.migrate_device_data
    assert e.attestation.keys == () and not e.iot_edge


def _group_with(certificate: dict) -> dict:
    return group(type="x509", x509={"signingCertificates": {"primary": certificate}})


def test_info_only_keeps_the_stored_certificate() -> None:
    stored = parse_group(_group_with({"certificate": ROOT.pem.decode()}))
    thumbprint = stored.attestation.primary_certificate.facts.sha256_thumbprint
    fetched = parse_group(_group_with({"info": {"sha256Thumbprint": thumbprint.lower()}}))
    assert fetched.attestation.primary_certificate.is_kept
    merged = keep_stored_certificates(fetched, stored)
    assert merged.attestation.primary_certificate == stored.attestation.primary_certificate
    assert keep_stored_certificates(stored, None) == stored


@pytest.mark.parametrize(
    ("info", "stored", "message"),
    [
        pytest.param(
            {"sha256Thumbprint": "00" * 32}, True, "names thumbprint", id="fail/other-thumbprint"
        ),
        pytest.param({}, False, "no certificate is stored", id="fail/nothing-stored"),
    ],
)
def test_info_only_is_refused_when_it_cannot_be_kept(info, stored, message) -> None:
    previous = parse_group(_group_with({"certificate": ROOT.pem.decode()})) if stored else None
    fetched = parse_group(_group_with({"info": info}))
    with pytest.raises(InvalidEnrollmentError, match=message):
        keep_stored_certificates(fetched, previous)


# --- symmetric keys a written-back record leaves out -------------------------------------------

STORED_PRIMARY = base64.b64encode(b"p" * 32).decode()
STORED_SECONDARY = base64.b64encode(b"q" * 32).decode()
NEW_KEY = base64.b64encode(b"n" * 32).decode()
SYMMETRIC = {
    "type": "symmetricKey",
    "symmetricKey": {"primaryKey": STORED_PRIMARY, "secondaryKey": STORED_SECONDARY},
}
X509_GROUP = {"type": "x509", "x509": {"caReferences": {"primary": "root"}}}


@pytest.mark.parametrize(
    ("stored", "attestation", "primary", "secondary"),
    [
        pytest.param(
            SYMMETRIC,
            {"type": "symmetricKey", "symmetricKey": {}},
            "stored",
            "stored",
            id="ok/empty-object-keeps-both",
        ),
        pytest.param(
            SYMMETRIC,
            {"type": "symmetricKey"},
            "stored",
            "stored",
            id="ok/no-symmetricKey-keeps-both",
        ),
        pytest.param(
            SYMMETRIC,
            {"type": "symmetricKey", "symmetricKey": {"primaryKey": None, "secondaryKey": None}},
            "stored",
            "stored",
            id="ok/null-keys-keep-both",
        ),
        pytest.param(
            SYMMETRIC,
            {"type": "symmetricKey", "symmetricKey": {"primaryKey": ""}},
            "stored",
            "stored",
            id="ok/empty-key-keeps-it",
        ),
        pytest.param(
            SYMMETRIC,
            {"type": "symmetricKey", "symmetricKey": {"primaryKey": NEW_KEY}},
            "new",
            "stored",
            id="ok/primary-only-changes-the-primary",
        ),
        pytest.param(
            SYMMETRIC,
            {"type": "symmetricKey", "symmetricKey": {"secondaryKey": NEW_KEY}},
            "stored",
            "new",
            id="ok/secondary-only-changes-the-secondary",
        ),
        pytest.param(
            SYMMETRIC,
            {
                "type": "symmetricKey",
                "symmetricKey": {"primaryKey": NEW_KEY, "secondaryKey": NEW_KEY},
            },
            "new",
            "new",
            id="ok/both-keys-change-both",
        ),
        pytest.param(
            None,
            {"type": "symmetricKey", "symmetricKey": {}},
            None,
            None,
            id="ok/create-keeps-nothing-so-keys-are-generated",
        ),
        pytest.param(
            X509_GROUP,
            {"type": "symmetricKey"},
            None,
            None,
            id="ok/x509-to-symmetric-key-keeps-nothing-so-keys-are-generated",
        ),
        pytest.param(
            X509_GROUP,
            {"type": "symmetricKey", "symmetricKey": {"primaryKey": NEW_KEY}},
            "new",
            None,
            id="ok/x509-to-symmetric-key-with-a-primary",
        ),
    ],
)
def test_keys_a_body_leaves_out_are_kept(stored, attestation, primary, secondary) -> None:
    previous = parse_group(group(**stored)) if stored else None
    merged = keep_stored_keys(parse_group(group(**attestation)), previous)
    expected = {"stored": (STORED_PRIMARY, STORED_SECONDARY), "new": (NEW_KEY, NEW_KEY)}
    assert merged.attestation.primary_key == (expected[primary][0] if primary else None)
    assert merged.attestation.secondary_key == (expected[secondary][1] if secondary else None)


def test_keys_are_kept_only_for_a_symmetric_key_record() -> None:
    """The reject twins: a record that is not symmetric-key now takes no keys from the stored
    one, and nothing else of the record changes."""
    stored = parse_group(group(**SYMMETRIC))
    to_x509 = parse_group(group(**X509_GROUP))
    assert keep_stored_keys(to_x509, stored) == to_x509
    assert keep_stored_keys(to_x509, stored).attestation.keys == ()
    disabled = parse_group({**group(type="symmetricKey"), "provisioningStatus": "disabled"})
    merged = keep_stored_keys(disabled, stored)
    assert merged.provisioning_status is ProvisioningStatus.DISABLED
    assert merged.attestation.keys == (STORED_PRIMARY, STORED_SECONDARY)
    individual_record = parse_individual(individual(type="symmetricKey"))
    assert keep_stored_keys(individual_record, None) is individual_record


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "attestation",
        "type",
        "x509",
        "symmetricKey",
        "tpm",
        "clientCertificates",
        "signingCertificates",
        "caReferences",
        "primary",
        "secondary",
        "certificate",
        "info",
        "primaryKey",
        "provisioningStatus",
        "allocationPolicy",
        "iotHubs",
        "reprovisionPolicy",
        "customAllocationDefinition",
        "initialTwin",
        "capabilities",
        "deviceId",
        "registrationId",
        "enrollmentGroupId",
        "webhookUrl",
        "apiVersion",
    ]
)
_documents = st.recursive(
    _json, lambda children: st.dictionaries(_keys, children, max_size=5), max_leaves=20
)


@settings(max_examples=300, deadline=None)
@given(_documents, st.sampled_from(list(EnrollmentKind)))
def test_arbitrary_documents_raise_only_input_errors(doc, kind) -> None:
    with contextlib.suppress(InvalidInputError):
        parse_enrollment(doc, kind, service="svc", path_id="dev-1")

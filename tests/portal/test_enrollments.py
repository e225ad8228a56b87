"""The enrollment pages: create each kind, the refusals with their messages, enable and disable,
keys on POST only, delete after a confirmation, paging to the end, escaping."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container
from devprov.core import document
from devprov.core.enrollment import EnrollmentKind
from devprov.service.enrollment import EnrollmentGroupNotFoundError, UnknownCredentialPolicyError
from tests import factory as f
from tests.portal.pages import link_named, post_form

GROUPS = "/portal/s/default/groups"
INDIVIDUALS = "/portal/s/default/enrollments"


def create(client: TestClient, base: str, data: dict[str, str], files=None):
    return post_form(client, f"{base}/new", f"{base}/new", {"enabled": "true", **data}, files)


def upload_ca(container: Container, name: str, *, verified: bool) -> f.Ca:
    ca = f.root(f"{name} root")
    container.registry.upload(
        "default", name, ca.pem, is_verified=verified, if_match=None, actor="t"
    )
    return ca


def stored(container: Container, kind: EnrollmentKind, id: str) -> dict:
    """The record as the service API renders it."""
    return document.enrollment(container.enrollments.get("default", kind, id))


# --- create: each attestation, and the refusals -----------------------------------------------


def test_a_group_on_a_verified_registry_ca_is_created_without_a_warning(
    signed_in: TestClient, container: Container
) -> None:
    upload_ca(container, "fleet-ca", verified=True)
    answer = create(signed_in, GROUPS, {"id": "fleet", "attestation": "ca", "ca": "fleet-ca"})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{GROUPS}/fleet"
    body = stored(container, EnrollmentKind.GROUP, "fleet")
    assert body["attestation"]["x509"]["caReferences"] == {"primary": "fleet-ca"}
    page = signed_in.get(f"{GROUPS}/fleet").text
    assert "is unverified" not in page
    assert "Verified" in page


def test_a_group_on_an_unverified_ca_is_created_and_warned_about(
    signed_in: TestClient, container: Container
) -> None:
    upload_ca(container, "new-ca", verified=False)
    form = signed_in.get(f"{GROUPS}/new").text
    assert "new-ca (unverified)" in form
    answer = create(signed_in, GROUPS, {"id": "pending", "attestation": "ca", "ca": "new-ca"})
    assert answer.status_code == 303
    page = signed_in.get(f"{GROUPS}/pending").text
    assert "is unverified" in page
    assert 'href="/portal/s/default/certificates/new-ca"' in page


def test_a_group_on_an_uploaded_ca_file_keeps_that_certificate(
    signed_in: TestClient, container: Container
) -> None:
    ca = f.root("Uploaded Root")
    answer = create(
        signed_in,
        GROUPS,
        {"id": "uploaded", "attestation": "upload"},
        {"certificate_file": ("root.pem", ca.pem, "application/x-pem-file")},
    )
    assert answer.status_code == 303
    record = container.enrollments.get("default", EnrollmentKind.GROUP, "uploaded")
    assert record.attestation.primary_certificate is not None
    assert record.attestation.primary_certificate.der == ca.der
    assert "Uploaded Root" in signed_in.get(f"{GROUPS}/uploaded").text


def test_an_individual_enrollment_on_the_device_certificate_der_file(
    signed_in: TestClient, container: Container
) -> None:
    device = f.device(f.root(), "sensor-1")
    answer = create(
        signed_in,
        INDIVIDUALS,
        {"id": "sensor-1", "attestation": "certificate", "device_id": "dev-one"},
        {"certificate_file": ("sensor-1.cer", device.der, "application/pkix-cert")},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{INDIVIDUALS}/sensor-1"
    body = stored(container, EnrollmentKind.INDIVIDUAL, "sensor-1")
    assert body["deviceId"] == "dev-one"
    assert "clientCertificates" in body["attestation"]["x509"]


def test_a_symmetric_key_enrollment_disabled_with_a_hub_and_a_twin(
    signed_in: TestClient, container: Container
) -> None:
    container.hubs.add("default", "hub-a.azure-devices.net", actor="test")
    answer = post_form(
        signed_in,
        f"{INDIVIDUALS}/new",
        f"{INDIVIDUALS}/new",
        {
            "id": "sym-1",
            "attestation": "symmetricKey",
            "hub": "hub-a.azure-devices.net",
            "allocation": "static",
            "initial_twin": '{"tags": {"site": "north"}}',
        },  # no "enabled": the checkbox left unticked
    )
    assert answer.status_code == 303
    body = stored(container, EnrollmentKind.INDIVIDUAL, "sym-1")
    assert body["provisioningStatus"] == "disabled"
    assert body["iotHubs"] == ["hub-a.azure-devices.net"]
    assert body["allocationPolicy"] == "static"
    assert body["initialTwin"] == {"tags": {"site": "north"}}


@pytest.mark.parametrize(
    ("data", "file", "status", "says"),
    [
        pytest.param(
            {"id": "bad id!", "attestation": "symmetricKey"},
            None,
            400,
            "InvalidEnrollmentGroupId",
            id="fail/bad-id",
        ),
        pytest.param(
            {"id": "g", "attestation": "upload"}, None, 400, "choose the file", id="fail/no-file"
        ),
        pytest.param(
            {"id": "g", "attestation": "ca", "ca": ""}, None, 400, "choose the CA", id="fail/no-ca"
        ),
        pytest.param(
            {"id": "g", "attestation": "ca", "ca": "absent"},
            None,
            400,
            "not in the registry",
            id="fail/unknown-ca",
        ),
        pytest.param(
            {"id": "g", "attestation": "upload"},
            ("ca.pem", b"not a certificate at all", "text/plain"),
            400,
            "MalformedCertificate",
            id="fail/garbage-file",
        ),
        pytest.param(
            {"id": "g", "attestation": "upload"},
            ("ca.exe", b"MZ", "application/octet-stream"),
            400,
            "not a certificate file",
            id="fail/wrong-type",
        ),
        pytest.param(
            {"id": "g", "attestation": "upload"},
            ("ca.pem", b"A" * (64 * 1024 + 1), "text/plain"),
            413,
            "larger than 64 KiB",
            id="fail/too-large",
        ),
        pytest.param(
            {"id": "g", "attestation": "symmetricKey", "initial_twin": "{not json"},
            None,
            400,
            "not valid JSON",
            id="fail/bad-twin-json",
        ),
    ],
)
def test_a_refused_group_shows_why_and_keeps_what_was_typed(
    signed_in: TestClient, container: Container, data, file, status: int, says: str
) -> None:
    files = {"certificate_file": file} if file else None
    answer = create(signed_in, GROUPS, data, files)
    assert answer.status_code == status
    assert says in answer.text
    assert 'role="alert"' in answer.text
    assert f'name="id" type="text" value="{data["id"]}"' in answer.text
    assert (
        container.enrollments.list(
            "default", EnrollmentKind.GROUP, continuation=None, max_items=10
        ).items
        == []
    )
    # Its accept twin: the same form, corrected, is created.
    fixed = create(signed_in, GROUPS, {"id": "g", "attestation": "symmetricKey"})
    assert fixed.status_code == 303


def test_a_duplicate_id_is_refused_with_the_conflict(
    signed_in: TestClient, container: Container
) -> None:
    assert (
        create(signed_in, GROUPS, {"id": "twice", "attestation": "symmetricKey"}).status_code == 303
    )
    again = create(signed_in, GROUPS, {"id": "TWICE", "attestation": "symmetricKey"})
    assert again.status_code == 409
    assert "already exists" in again.text
    other = create(signed_in, GROUPS, {"id": "once", "attestation": "symmetricKey"})
    assert other.status_code == 303


def test_html_in_ids_and_twins_is_shown_as_text(
    signed_in: TestClient, container: Container
) -> None:
    refused = create(signed_in, GROUPS, {"id": "<script>x</script>", "attestation": "symmetricKey"})
    assert refused.status_code == 400
    assert "<script>" not in refused.text
    assert "&lt;script&gt;" in refused.text
    create(
        signed_in,
        GROUPS,
        {
            "id": "twin",
            "attestation": "symmetricKey",
            "initial_twin": '{"tags": {"x": "<b>bold</b>"}}',
        },
    )
    page = signed_in.get(f"{GROUPS}/twin").text
    assert "<b>bold</b>" not in page
    assert "bold" in page


# --- the credential policy ----------------------------------------------------------------------


def add_policy(container: Container, name: str) -> None:
    container.credential_policies.create("default", name, key_type="ec-p256", actor="t")


def etag_of(page: str) -> str:
    return re.search(r'name="etag" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize("base", [GROUPS, INDIVIDUALS], ids=["groups", "individuals"])
def test_an_enrollment_names_a_policy_of_the_service_from_the_form(
    signed_in: TestClient, container: Container, base: str
) -> None:
    add_policy(container, "fleet")
    form = signed_in.get(f"{base}/new").text
    assert '<option value="">None</option>' in form
    assert '<option value="fleet">fleet</option>' in form
    answer = create(
        signed_in,
        base,
        {"id": "named", "attestation": "symmetricKey", "credential_policy": "fleet"},
    )
    assert answer.status_code == 303
    kind = EnrollmentKind.GROUP if base == GROUPS else EnrollmentKind.INDIVIDUAL
    assert container.enrollments.get("default", kind, "named").credential_policy == "fleet"
    assert stored(container, kind, "named")["credentialPolicyName"] == "fleet"
    page = signed_in.get(f"{base}/named").text
    assert link_named(page, "fleet") == "/portal/s/default/credential-policies/fleet"
    assert "no longer exists" not in page
    # the twin: "None" names no policy
    plain = create(signed_in, base, {"id": "plain", "attestation": "symmetricKey"})
    assert plain.status_code == 303
    assert container.enrollments.get("default", kind, "plain").credential_policy is None
    assert "<dt>Credential policy</dt>\n  <dd>None</dd>" in signed_in.get(f"{base}/plain").text


def test_an_unknown_policy_is_the_service_apis_400_shown_on_the_form(
    signed_in: TestClient, container: Container
) -> None:
    add_policy(container, "fleet")
    # The error the service API answers for the same document (the use case both call).
    with pytest.raises(UnknownCredentialPolicyError) as api:
        container.enrollments.create_or_update(
            "default",
            EnrollmentKind.GROUP,
            "gone",
            {"attestation": {"type": "symmetricKey"}, "credentialPolicyName": "gone-policy"},
            if_match=None,
            actor="t",
        )
    answer = create(
        signed_in,
        GROUPS,
        {"id": "gone", "attestation": "symmetricKey", "credential_policy": "gone-policy"},
    )
    assert answer.status_code == 400
    assert f"Error {api.value.code} ({api.value.number})" in answer.text
    assert api.value.message in html.unescape(answer.text)
    assert '<option value="gone-policy" selected>gone-policy (not a policy' in answer.text
    with pytest.raises(EnrollmentGroupNotFoundError):
        container.enrollments.get("default", EnrollmentKind.GROUP, "gone")


def test_the_policy_is_changed_on_the_records_page(
    signed_in: TestClient, container: Container
) -> None:
    add_policy(container, "fleet")
    add_policy(container, "spare")
    create(signed_in, INDIVIDUALS, {"id": "dev-1", "attestation": "symmetricKey"})
    here = f"{INDIVIDUALS}/dev-1"
    keys = container.enrollments.attestation_mechanism(
        "default", EnrollmentKind.INDIVIDUAL, "dev-1"
    )
    for chosen, expected in (("spare", "spare"), ("FLEET", "FLEET"), ("", None)):
        etag = etag_of(signed_in.get(here).text)
        answer = post_form(
            signed_in,
            here,
            f"{here}/credential-policy",
            {"credential_policy": chosen, "etag": etag},
        )
        assert answer.status_code == 303, answer.text
        record = container.enrollments.get("default", EnrollmentKind.INDIVIDUAL, "dev-1")
        assert record.credential_policy == expected
    # The write-back keeps the keys, and is in the audit log under the session.
    assert (
        container.enrollments.attestation_mechanism("default", EnrollmentKind.INDIVIDUAL, "dev-1")
        == keys
    )
    events = container.audit.events(limit=100)
    assert [e.actor for e in events if e.action.endswith("createOrUpdate")][-1] == "portal:admin"


def test_a_refused_policy_change_is_shown_on_the_records_page(
    signed_in: TestClient, container: Container
) -> None:
    add_policy(container, "fleet")
    create(signed_in, INDIVIDUALS, {"id": "dev-1", "attestation": "symmetricKey"})
    here = f"{INDIVIDUALS}/dev-1"
    old = etag_of(signed_in.get(here).text)
    unknown = post_form(
        signed_in, here, f"{here}/credential-policy", {"credential_policy": "nope", "etag": old}
    )
    assert unknown.status_code == 400
    assert f"UnknownCredentialPolicy ({UnknownCredentialPolicyError.number})" in unknown.text
    assert "<h1>dev-1</h1>" in unknown.text  # the record's page, with the error in it
    post_form(
        signed_in, here, f"{here}/credential-policy", {"credential_policy": "fleet", "etag": old}
    )
    stale = post_form(
        signed_in, here, f"{here}/credential-policy", {"credential_policy": "", "etag": old}
    )
    assert stale.status_code == 412
    record = container.enrollments.get("default", EnrollmentKind.INDIVIDUAL, "dev-1")
    assert record.credential_policy == "fleet"


# --- enable, disable, keys, delete --------------------------------------------------------------


def test_disable_and_enable_show_in_the_service_api_view(
    signed_in: TestClient, container: Container
) -> None:
    create(signed_in, GROUPS, {"id": "toggle", "attestation": "symmetricKey"})
    keys_before = container.enrollments.attestation_mechanism(
        "default", EnrollmentKind.GROUP, "toggle"
    )
    page = signed_in.get(f"{GROUPS}/toggle").text
    etag = re.search(r'name="etag" value="([^"]+)"', page).group(1)
    answer = post_form(
        signed_in,
        f"{GROUPS}/toggle",
        f"{GROUPS}/toggle/enabled",
        {"enabled": "false", "etag": etag},
    )
    assert answer.status_code == 303
    assert stored(container, EnrollmentKind.GROUP, "toggle")["provisioningStatus"] == "disabled"
    # The write-back keeps the keys (the rendered record carries none).
    assert (
        container.enrollments.attestation_mechanism("default", EnrollmentKind.GROUP, "toggle")
        == keys_before
    )
    page = signed_in.get(f"{GROUPS}/toggle").text
    assert ">Enable<" in page
    etag = re.search(r'name="etag" value="([^"]+)"', page).group(1)
    post_form(
        signed_in, f"{GROUPS}/toggle", f"{GROUPS}/toggle/enabled", {"enabled": "true", "etag": etag}
    )
    assert stored(container, EnrollmentKind.GROUP, "toggle")["provisioningStatus"] == "enabled"


def test_a_stale_page_gets_the_etag_error_and_changes_nothing(
    signed_in: TestClient, container: Container
) -> None:
    create(signed_in, GROUPS, {"id": "stale", "attestation": "symmetricKey"})
    old = re.search(r'name="etag" value="([^"]+)"', signed_in.get(f"{GROUPS}/stale").text).group(1)
    post_form(
        signed_in, f"{GROUPS}/stale", f"{GROUPS}/stale/enabled", {"enabled": "false", "etag": old}
    )
    answer = post_form(
        signed_in, f"{GROUPS}/stale", f"{GROUPS}/stale/enabled", {"enabled": "true", "etag": old}
    )
    assert answer.status_code == 412
    assert "ETag" in answer.text
    assert stored(container, EnrollmentKind.GROUP, "stale")["provisioningStatus"] == "disabled"


def test_keys_are_shown_on_post_with_the_csrf_token_only(
    signed_in: TestClient, container: Container
) -> None:
    create(signed_in, GROUPS, {"id": "keyed", "attestation": "symmetricKey"})
    keys = container.enrollments.attestation_mechanism("default", EnrollmentKind.GROUP, "keyed")
    assert keys.primary_key and keys.secondary_key
    page = signed_in.get(f"{GROUPS}/keyed")
    assert keys.primary_key not in page.text
    assert "Show keys" in page.text
    assert signed_in.get(f"{GROUPS}/keyed/keys").status_code == 405
    refused = signed_in.post(f"{GROUPS}/keyed/keys", data={})
    assert refused.status_code == 403
    assert keys.primary_key not in refused.text
    shown = post_form(signed_in, f"{GROUPS}/keyed", f"{GROUPS}/keyed/keys", {})
    assert shown.status_code == 200
    assert keys.primary_key in shown.text and keys.secondary_key in shown.text
    assert "--group-key" in shown.text
    assert shown.headers["cache-control"] == "no-store"


def test_delete_asks_first_then_deletes(signed_in: TestClient, container: Container) -> None:
    create(signed_in, GROUPS, {"id": "doomed", "attestation": "symmetricKey"})
    page = signed_in.get(f"{GROUPS}/doomed").text
    assert link_named(page, "Delete enrollment group") == f"{GROUPS}/doomed/delete"
    confirm = signed_in.get(f"{GROUPS}/doomed/delete")
    assert confirm.status_code == 200
    assert container.enrollments.get("default", EnrollmentKind.GROUP, "doomed")  # still there
    etag = re.search(r'name="etag" value="([^"]+)"', confirm.text).group(1)
    answer = post_form(
        signed_in, f"{GROUPS}/doomed/delete", f"{GROUPS}/doomed/delete", {"etag": etag}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == GROUPS
    gone = signed_in.get(f"{GROUPS}/doomed")
    assert gone.status_code == 404
    assert "EnrollmentGroupNotFound" in gone.text


def test_the_keys_and_delete_pages_link_and_post_to_the_record_not_to_themselves(
    signed_in: TestClient, container: Container
) -> None:
    """The layout's section navigation once set a template variable of the same name as the
    record's URL, so pages under a record (keys, delete) pointed back at themselves: "Back to"
    at the keys URL (a GET there is 405), the delete form at .../delete/delete."""
    create(signed_in, GROUPS, {"id": "linked", "attestation": "symmetricKey"})
    record = f"{GROUPS}/linked"
    keys = post_form(signed_in, record, f"{record}/keys", {}).text
    assert link_named(keys, "Back to linked") == record
    assert link_named(keys, "linked") == record
    confirm = signed_in.get(f"{record}/delete").text
    assert f'action="{record}/delete"' in confirm
    assert link_named(confirm, "Cancel") == record
    # the record's own page: its forms post under it
    page = signed_in.get(record).text
    assert f'action="{record}/enabled"' in page and f'action="{record}/keys"' in page
    # and the navigation still marks the section the page is in, and only that one
    assert page.count('aria-current="page"') == 1
    assert f'<a href="{GROUPS}" aria-current="page">Enrollment groups</a>' in page


# --- lists ----------------------------------------------------------------------------------


def test_the_list_pages_through_every_group_once(
    signed_in: TestClient, container: Container
) -> None:
    made = {f"group-{i:03d}" for i in range(63)}
    for id in made:
        container.enrollments.create_or_update(
            "default",
            EnrollmentKind.GROUP,
            id,
            {"attestation": {"type": "symmetricKey"}},
            if_match=None,
            actor="t",
        )
    seen: list[str] = []
    target: str | None = f"{GROUPS}?size=7"
    pages = 0
    while target:
        page = signed_in.get(target)
        assert page.status_code == 200
        seen += re.findall(r'href="/portal/s/default/groups/(group-\d+)"', page.text)
        target = link_named(page.text, "Next page")
        if target:
            target = GROUPS + target
        pages += 1
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(made)
    assert pages == -(-len(made) // 7)  # full pages of 7, the last one without a next link


def test_the_list_searches_by_the_start_of_the_id(
    signed_in: TestClient, container: Container
) -> None:
    for id in ("north-1", "north-2", "south-1"):
        create(signed_in, GROUPS, {"id": id, "attestation": "symmetricKey"})
    page = signed_in.get(GROUPS, params={"prefix": "NORTH"}).text
    assert "Group ID starts with" in page
    assert "north-1" in page and "north-2" in page and "south-1" not in page
    assert "Symmetric key" in page and "Enabled" in page
    none = signed_in.get(GROUPS, params={"prefix": "west"}).text
    assert "No enrollment group starts with" in none


def test_an_unknown_service_is_the_service_layers_not_found(signed_in: TestClient) -> None:
    answer = signed_in.get("/portal/s/nowhere/groups")
    assert answer.status_code == 404
    assert "ProvisioningServiceNotFound" in answer.text
    assert signed_in.get(GROUPS).status_code == 200

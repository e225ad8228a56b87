"""The linked hubs page: the hubs with their weights, linking one, removing one after a
confirmation."""

from __future__ import annotations

from starlette.testclient import TestClient

from devprov.bootstrap import Container
from devprov.service.hub_identity import HubKind
from tests.portal.pages import link_named, post_form

HUBS = "/portal/s/default/hubs"


def test_a_hub_is_linked_with_its_weight(signed_in: TestClient, container: Container) -> None:
    answer = post_form(
        signed_in,
        HUBS,
        HUBS,
        {"host_name": "Hub-B.azure-devices.net", "weight": "3", "apply_allocation_policy": "true"},
    )
    assert answer.status_code == 303
    (hub,) = container.hubs.all("default")
    assert (hub.host_name, hub.weight, hub.apply_allocation_policy) == (
        "hub-b.azure-devices.net",
        3,
        True,
    )
    page = signed_in.get(HUBS).text
    assert "hub-b.azure-devices.net" in page and 'data-label="Allocation weight">3<' in page


def test_a_bad_host_or_weight_is_refused_in_the_page(
    signed_in: TestClient, container: Container
) -> None:
    bad = post_form(signed_in, HUBS, HUBS, {"host_name": "not a host!", "weight": "1"})
    assert bad.status_code == 400
    assert "InvalidHubName" in bad.text
    assert 'value="not a host!"' in bad.text
    heavy = post_form(signed_in, HUBS, HUBS, {"host_name": "hub.example.net", "weight": "x"})
    assert heavy.status_code == 400
    assert container.hubs.all("default") == []
    good = post_form(signed_in, HUBS, HUBS, {"host_name": "hub.example.net", "weight": "1"})
    assert good.status_code == 303


def test_remove_asks_first(signed_in: TestClient, container: Container) -> None:
    container.hubs.add("default", "hub-c.azure-devices.net", actor="test")
    remove = link_named(signed_in.get(HUBS).text, "Remove")
    assert remove == f"{HUBS}/hub-c.azure-devices.net/remove"
    assert signed_in.get(remove).status_code == 200
    assert len(container.hubs.all("default")) == 1
    answer = post_form(signed_in, remove, remove, {})
    assert answer.status_code == 303
    assert container.hubs.all("default") == []
    assert signed_in.get(remove).status_code == 404


def test_the_kind_is_shown_and_the_settings_never(
    signed_in: TestClient, container: Container
) -> None:
    secret = "c2VjcmV0LW9mLXRoZS1wb3J0YWwtdGVzdA=="
    connection = (
        f"HostName=hub-k.azure-devices.net;SharedAccessKeyName=registryReadWrite;"
        f"SharedAccessKey={secret}"
    )
    container.hubs.add(
        "default",
        "hub-k.azure-devices.net",
        kind=HubKind.AZURE_IOTHUB,
        settings={"connection_string": connection},
        actor="test",
    )
    container.hubs.add("default", "hub-n.azure-devices.net", actor="test")
    page = signed_in.get(HUBS).text
    assert 'data-label="Kind">azure-iothub <span class="hint">(settings stored)' in page
    assert 'data-label="Kind">none</td>' in page
    assert "devprov hub add NAME --kind azure-iothub" in page  # other kinds: the command line
    # Re-linking from the page changes the weight and keeps the kind and its settings.
    answer = post_form(
        signed_in, HUBS, HUBS, {"host_name": "hub-k.azure-devices.net", "weight": "2"}
    )
    assert answer.status_code == 303
    hub = container.hubs.get("default", "hub-k.azure-devices.net")
    assert (hub.weight, hub.kind, hub.settings["connection_string"]) == (
        2,
        HubKind.AZURE_IOTHUB,
        connection,
    )
    audit = signed_in.get("/portal/s/default/audit").text
    assert "kind azure-iothub" in audit
    for shown in (page, audit, signed_in.get(HUBS).text):
        assert secret not in shown

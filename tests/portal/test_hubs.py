"""The linked hubs page: the hubs with their weights, linking one, removing one after a
confirmation."""

from __future__ import annotations

from starlette.testclient import TestClient

from devprov.bootstrap import Container
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

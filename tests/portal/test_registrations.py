"""The registrations page and a group's registrations: devices registered through the use cases,
shown with status, hub and enrollment, searched by the start of the ID, paged to the end."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from devprov.bootstrap import Container
from tests.portal.pages import link_named
from tests.portal.registered import HUB, register, symmetric_group

REGISTRATIONS = "/portal/s/default/registrations"


def test_registrations_show_status_hub_and_enrollment(
    signed_in: TestClient, container: Container
) -> None:
    symmetric_group(container, "sensors")
    register(container, "sensor-1")
    page = signed_in.get(REGISTRATIONS).text
    assert "Registrations of default" in page
    assert "sensor-1" in page and HUB in page
    assert '<span class="badge ok">assigned</span>' in page
    assert link_named(page, "Group: sensors") == "/portal/s/default/groups/sensors"


def test_the_search_finds_ids_by_their_start_ignoring_case(
    signed_in: TestClient, container: Container
) -> None:
    symmetric_group(container, "sensors")
    for id in ("north-1", "north-2", "south-1"):
        register(container, id)
    found = signed_in.get(REGISTRATIONS, params={"id": "NORTH"}).text
    assert "north-1" in found and "north-2" in found and "south-1" not in found
    exact = signed_in.get(REGISTRATIONS, params={"id": "south-1"}).text
    assert "south-1" in exact and "north-1" not in exact
    none = signed_in.get(REGISTRATIONS, params={"id": "west"}).text
    assert "No registration ID starts with" in none


def test_registrations_page_to_the_end_each_once(
    signed_in: TestClient, container: Container
) -> None:
    symmetric_group(container, "sensors")
    made = {f"dev-{i:02d}" for i in range(12)}
    for id in made:
        register(container, id)
    seen: list[str] = []
    target: str | None = f"{REGISTRATIONS}?size=5"
    while target:
        page = signed_in.get(target).text
        seen += re.findall(r'data-label="Registration ID">(dev-\d+)<', page)
        target = link_named(page, "Next page")
        target = REGISTRATIONS + target if target else None
    assert sorted(seen) == sorted(made)


def test_a_group_page_lists_its_registrations_only(
    signed_in: TestClient, container: Container
) -> None:
    symmetric_group(container, "sensors")
    register(container, "in-group")
    page = signed_in.get("/portal/s/default/groups/sensors").text
    assert "Registrations of sensors" in page
    assert "in-group" in page
    symmetric_group_other = "others"
    symmetric_group(container, symmetric_group_other)
    other = signed_in.get("/portal/s/default/groups/others").text
    assert "in-group" not in other
    assert "No device has registered" in other

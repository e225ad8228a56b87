"""The audit log page: newest first, each filter, the older-events cursor to the end."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container
from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import AlreadyExistsError
from tests.portal.pages import link_named
from tests.portal.registered import register, symmetric_group

AUDIT = "/portal/s/default/audit"
_ROW_ACTION = re.compile(r'data-label="Action"><code>([^<]+)</code>')


def make_group(container: Container, id: str, actor: str = "t") -> None:
    container.enrollments.create_or_update(
        "default",
        EnrollmentKind.GROUP,
        id,
        {"attestation": {"type": "symmetricKey"}},
        if_match=None,
        actor=actor,
    )


def test_events_are_shown_newest_first(signed_in: TestClient, container: Container) -> None:
    make_group(container, "first")
    container.enrollments.delete("default", EnrollmentKind.GROUP, "first", if_match=None, actor="t")
    page = signed_in.get(AUDIT).text
    assert _ROW_ACTION.findall(page)[:2] == [
        "enrollmentGroup.delete",
        "enrollmentGroup.createOrUpdate",
    ]


def test_each_filter_narrows_the_log(signed_in: TestClient, container: Container) -> None:
    make_group(container, "alpha", actor="portal:admin")
    make_group(container, "beta", actor="cli")
    with pytest.raises(AlreadyExistsError):
        make_group(container, "alpha", actor="cli")  # refused, and recorded
    by_actor = signed_in.get(AUDIT, params={"actor": "cli"}).text
    assert "beta" in by_actor and "portal:admin" not in by_actor.split("<table")[1]
    failed = signed_in.get(AUDIT, params={"outcome": "failed"}).text
    assert _ROW_ACTION.findall(failed) == ["enrollmentGroup.createOrUpdate"]
    assert "AlreadyExists" in failed
    by_id = signed_in.get(AUDIT, params={"registration": "ALPHA"}).text
    assert len(_ROW_ACTION.findall(by_id)) == 2
    by_action = signed_in.get(AUDIT, params={"action": "enrollmentGroup.delete"}).text
    assert _ROW_ACTION.findall(by_action) == []
    assert "No event matches these filters." in by_action
    everything = signed_in.get(AUDIT).text
    assert len(_ROW_ACTION.findall(everything)) >= 3


def test_a_registration_is_in_the_log_under_its_id(
    signed_in: TestClient, container: Container
) -> None:
    symmetric_group(container, "sensors")
    register(container, "sensor-9")
    page = signed_in.get(AUDIT, params={"registration": "sensor-9"}).text
    assert "sensor-9" in page
    assert _ROW_ACTION.findall(page)


def test_older_events_page_to_the_end_each_once(
    signed_in: TestClient, container: Container
) -> None:
    made = [f"g-{i:02d}" for i in range(11)]
    for id in made:
        make_group(container, id)
    seen: list[str] = []
    target: str | None = f"{AUDIT}?size=4&action=enrollmentGroup.createOrUpdate"
    while target:
        page = signed_in.get(target).text
        seen += re.findall(r"Group (g-\d+)", page)
        target = link_named(page, "Older events")
        target = AUDIT + target if target else None
    assert seen == list(reversed(made))


def test_a_forged_cursor_or_time_is_refused_in_the_page(signed_in: TestClient) -> None:
    assert signed_in.get(AUDIT, params={"older": "!!"}).status_code == 400
    assert signed_in.get(AUDIT, params={"since": "yesterday"}).status_code == 400
    assert signed_in.get(AUDIT, params={"since": "2020-01-01T00:00"}).status_code == 200

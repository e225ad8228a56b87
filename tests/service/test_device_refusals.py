"""Refused devices over real SQLite: an id DPS would not accept is refused before anything is
written for it, and refusals reach the audit trail and the log at a bounded rate, with a summary
of those left out."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from devprov.core.error import DevprovError, StorageUnavailableError
from devprov.core.refusal_limit import RECORDED_PER_INTERVAL, REFUSAL_INTERVAL
from devprov.core.sas import derive_device_key
from devprov.service.attestation import Credentials
from devprov.service.attestation_error import DeviceAttestationError, DeviceSasError
from devprov.service.device import DeviceRegistration
from devprov.service.model import AuditEvent, Outcome
from devprov.service.refusal_log import Origin
from tests.service.world import KEY, World, chain

HUGE = "x" * 15_000
OTHER_KEY = base64.b64encode(b"o" * 32).decode()


def audit(world: World) -> list[AuditEvent]:
    """The audit trail's refusals (the world's set-up writes successes)."""
    return [e for e in world.audit.events(limit=10_000) if e.outcome is Outcome.FAILED]


def audit_bytes(engine: Engine) -> int:
    """The characters every audit row holds, all columns together."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM audit_events")).all()
    return sum(len(str(value)) for row in rows for value in row if value is not None)


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "devprov.refusal"]


# --- registration ids DPS would not accept ---------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "refused"),
    [
        pytest.param(lambda world, pki: Credentials(), DeviceSasError, id="fail/no-credentials"),
        pytest.param(
            lambda world, pki: world.token(HUGE, derive_device_key(KEY, HUGE)),
            DeviceSasError,
            id="fail/sas-token",
        ),
        pytest.param(
            lambda world, pki: chain(pki[2], pki[1]), DeviceAttestationError, id="fail/x509-chain"
        ),
    ],
)
def test_an_id_dps_would_refuse_is_refused_before_anything_is_written_for_it(
    world: World,
    pki,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
    credentials: Callable[..., Credentials],
    refused: type[DevprovError],
) -> None:
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    scope = world.service.id_scope
    before = audit_bytes(engine)
    with caplog.at_level(logging.INFO, logger="devprov"):
        for call in (
            lambda: world.register(HUGE, credentials(world, pki)),
            lambda: world.devices.status_lookup(scope, HUGE, credentials(world, pki)),
            lambda: world.devices.operation_status(scope, HUGE, "5.x", credentials(world, pki)),
        ):
            with pytest.raises(refused) as caught:
                call()
            assert "15000 characters" in caught.value.message
            assert len(caught.value.message) < 300
    events = audit(world)
    assert [e.action for e in events] == ["register", "statusLookup", "operationStatus"]
    for event in events:
        assert event.outcome is Outcome.FAILED and event.registration_id is None
        assert "15000 characters" in event.actor and len(event.actor) < 120
    assert audit_bytes(engine) - before < 3 * 600  # a few hundred characters a row
    lines = refused_lines(caplog)
    assert len(lines) == 3 and all("15000 characters" in line for line in lines)
    assert all(len(line) < 400 for line in lines), lines
    assert not any(HUGE[:200] in r.getMessage() for r in caplog.records)


def test_a_valid_id_of_128_characters_goes_on_to_attestation(world: World) -> None:
    longest = "d" * 128
    with pytest.raises(DeviceSasError, match="no enrollment's key verifies") as caught:
        world.register(longest, world.token(longest, derive_device_key(OTHER_KEY, longest)))
    assert "is not a registration id" not in caught.value.message
    (event,) = audit(world)
    assert event.registration_id == longest
    # The actor "device:<id>" runs past its column (128), which PostgreSQL refuses: it is cut
    # to the column on both engines; the id itself is kept whole (docs/storage.md).
    assert event.actor == f"device:{longest}"[:128]


def test_an_unknown_id_scope_is_not_echoed_in_full(world: World) -> None:
    with pytest.raises(DevprovError, match="ID scope") as caught:
        world.devices.register("0" * 20_000, "dev-1", Credentials(), None)
    assert "20000 characters" in caught.value.message and len(caught.value.message) < 200
    assert audit(world) == []  # no service: nothing to file it under


# --- the rate of refusal rows and lines ------------------------------------------------------


def test_refusals_are_recorded_one_by_one_up_to_the_quota_then_summarised(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    origin = Origin(address="203.0.113.9", request="PUT /register")
    with caplog.at_level(logging.INFO, logger="devprov"):
        for i in range(50):
            rid = f"dev-{i}"
            with pytest.raises(DeviceSasError):
                world.devices.register(
                    world.service.id_scope,
                    rid,
                    world.token(rid, derive_device_key(OTHER_KEY, rid)),
                    None,
                    origin=origin,
                )
    assert len(audit(world)) == RECORDED_PER_INTERVAL  # not 50
    assert len(refused_lines(caplog)) == RECORDED_PER_INTERVAL
    assert [e.registration_id for e in audit(world)] == [
        f"dev-{i}" for i in range(RECORDED_PER_INTERVAL)
    ]

    caplog.clear()
    world.clock.advance(seconds=REFUSAL_INTERVAL.total_seconds())
    with caplog.at_level(logging.INFO, logger="devprov"):
        assert world.devices._refusals.flush() == 1
    summary = audit(world)[-1]
    left_out = 50 - RECORDED_PER_INTERVAL
    assert (summary.action, summary.outcome, summary.error_code) == (
        "register",
        Outcome.FAILED,
        "DeviceUnauthorized",
    )
    assert summary.actor == "devices from 203.0.113.0/24" and summary.registration_id is None
    assert summary.reason is not None and summary.reason.startswith(
        f"{left_out} more refusals of DeviceUnauthorized (register) from 203.0.113.0/24 in the "
        "60 s from "
    )
    assert f"e.g. 'dev-{RECORDED_PER_INTERVAL}'" in summary.reason
    (line,) = refused_lines(caplog)
    assert line == f"refusals of service 'default': {summary.reason}"
    assert world.devices._refusals.flush() == 0  # written once


def test_the_next_refusal_after_the_interval_writes_the_summary(world: World) -> None:
    for _ in range(RECORDED_PER_INTERVAL + 5):
        with pytest.raises(DeviceSasError):
            world.register("dev-1", Credentials())
    world.clock.advance(seconds=REFUSAL_INTERVAL.total_seconds() + 1)
    with pytest.raises(DeviceSasError):
        world.register("dev-1", Credentials())
    reasons = [e.reason or "" for e in audit(world)]
    assert len(reasons) == RECORDED_PER_INTERVAL + 2  # the quota, the summary, the new window
    assert reasons[-2].startswith("5 more refusals of DeviceUnauthorized (register)")
    assert reasons[-1] == "the device sent neither a client certificate nor a SAS token"


def test_open_windows_are_summarised_at_shutdown(world: World) -> None:
    for _ in range(RECORDED_PER_INTERVAL + 3):
        with pytest.raises(DeviceSasError):
            world.register("dev-1", Credentials())
    assert world.devices._refusals.flush() == 0  # the window is not over
    assert world.devices._refusals.flush(everything=True) == 1
    assert (audit(world)[-1].reason or "").startswith("3 more refusals")


def test_networks_and_codes_are_counted_apart(world: World, pki) -> None:
    _root, inter, leaf = pki
    for address in ("203.0.113.1", "198.51.100.1"):
        for _ in range(RECORDED_PER_INTERVAL):
            with pytest.raises(DeviceSasError):
                world.devices.register(
                    world.service.id_scope,
                    "dev-1",
                    Credentials(),
                    None,
                    origin=Origin(address=address),
                )
    with pytest.raises(DeviceAttestationError):
        world.devices.register(
            world.service.id_scope,
            "dev-1",
            chain(leaf, inter),
            None,
            origin=Origin(address="203.0.113.1"),
        )
    assert len(audit(world)) == 2 * RECORDED_PER_INTERVAL + 1


def test_an_audit_trail_that_cannot_take_the_row_does_not_change_the_answer(
    world: World, uow, clock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*, read_only: bool = False):
        if read_only:
            return uow(read_only=True)
        raise StorageUnavailableError("the database is locked")

    devices = DeviceRegistration(broken, clock, lambda n: b"\0" * n)
    with caplog.at_level(logging.WARNING, logger="devprov"), pytest.raises(DeviceSasError):
        devices.register(world.service.id_scope, "dev-1", Credentials(), None)
    assert any("could not record a refusal" in r.getMessage() for r in caplog.records)


# --- expired device tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("signer", [0, 1], ids=["first-group", "second-group"])
def test_an_expired_device_token_is_reported_as_expired_whichever_group_signed_it(
    world: World, signer: int
) -> None:
    keys = [KEY, OTHER_KEY]
    for index, key in enumerate(keys):
        world.group(f"grp-{index}", type="symmetricKey", symmetricKey={"primaryKey": key})
    device_key = derive_device_key(keys[signer], "dev-1")
    assert world.register("dev-1", world.token("dev-1", device_key)).operation.status == "assigned"
    expired = world.token("dev-1", device_key, expiry=world.epoch() - 5)
    with pytest.raises(DeviceSasError, match="expired"):
        world.register("dev-1", expired)
    assert "expired" in (world.audit_reasons("dev-1")[-1] or "")

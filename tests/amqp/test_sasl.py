"""SASL's server side: mechanisms offered, and what each sasl-init establishes or why it is
refused."""

from __future__ import annotations

import pytest

from devprov.amqp.application import SaslIdentity
from devprov.amqp.frames import SaslInit
from devprov.amqp.sasl import SaslRefused, authenticate, offered_mechanisms, parse_plain

WITHOUT = offered_mechanisms(client_certificate=False)
WITH = offered_mechanisms(client_certificate=True)


def test_external_is_offered_only_with_a_client_certificate() -> None:
    assert WITHOUT == ("PLAIN", "ANONYMOUS")
    assert WITH == ("EXTERNAL", "PLAIN", "ANONYMOUS")


@pytest.mark.parametrize(
    ("init", "offered", "identity"),
    [
        pytest.param(
            SaslInit(
                mechanism="PLAIN",
                initial_response=b"\0scope/registrations/d\0SharedAccessSignature sr=x",
                hostname="h",
            ),
            WITHOUT,
            SaslIdentity("PLAIN", "scope/registrations/d", "SharedAccessSignature sr=x", "h"),
            id="ok/plain",
        ),
        pytest.param(
            SaslInit(mechanism="PLAIN", initial_response="admin\0usér\0pässword".encode()),
            WITHOUT,
            SaslIdentity("PLAIN", "usér", "pässword"),
            id="ok/plain-authzid-ignored",
        ),
        pytest.param(
            SaslInit(mechanism="ANONYMOUS"), WITHOUT, SaslIdentity("ANONYMOUS"), id="ok/anonymous"
        ),
        pytest.param(
            SaslInit(mechanism="ANONYMOUS", initial_response=b"trace"),
            WITHOUT,
            SaslIdentity("ANONYMOUS"),
            id="ok/anonymous-trace",
        ),
        pytest.param(
            SaslInit(mechanism="EXTERNAL"), WITH, SaslIdentity("EXTERNAL"), id="ok/external"
        ),
        pytest.param(
            SaslInit(mechanism="EXTERNAL", initial_response=b"dev"),
            WITH,
            SaslIdentity("EXTERNAL", "dev"),
            id="ok/external-authzid",
        ),
    ],
)
def test_accepted_initial_responses(
    init: SaslInit, offered: tuple[str, ...], identity: SaslIdentity
) -> None:
    assert authenticate(init, offered) == identity


@pytest.mark.parametrize(
    ("init", "offered"),
    [
        pytest.param(
            SaslInit(mechanism="EXTERNAL"), WITHOUT, id="fail/external-without-certificate"
        ),
        pytest.param(SaslInit(mechanism="SCRAM-SHA-1"), WITH, id="fail/unoffered"),
        pytest.param(
            SaslInit(mechanism="plain", initial_response=b"\0u\0p"), WITH, id="fail/lower-case"
        ),
        pytest.param(SaslInit(mechanism="PLAIN"), WITH, id="fail/plain-no-response"),
        pytest.param(
            SaslInit(mechanism="PLAIN", initial_response=b"\0u"), WITH, id="fail/plain-one-nul"
        ),
        pytest.param(
            SaslInit(mechanism="PLAIN", initial_response=b"\0u\0p\0"),
            WITH,
            id="fail/plain-three-nuls",
        ),
        pytest.param(
            SaslInit(mechanism="PLAIN", initial_response=b"\0\0p"), WITH, id="fail/plain-empty-user"
        ),
        pytest.param(
            SaslInit(mechanism="PLAIN", initial_response=b"\0\xff\0p"),
            WITH,
            id="fail/plain-not-utf8",
        ),
        pytest.param(
            SaslInit(mechanism="EXTERNAL", initial_response=b"\xff"),
            WITH,
            id="fail/external-not-utf8",
        ),
    ],
)
def test_refused_initial_responses(init: SaslInit, offered: tuple[str, ...]) -> None:
    with pytest.raises(SaslRefused):
        authenticate(init, offered)


def test_plain_takes_an_empty_password() -> None:
    assert parse_plain(b"\0user\0") == ("user", "")

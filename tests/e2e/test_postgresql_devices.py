"""The device flow of tests/e2e/test_device_https.py (X.509 and symmetric-key devices over
mutual TLS, trust changed at run time, a custom allocation webhook), against a ``devprov serve
--database postgresql://...`` process on a fresh PostgreSQL database (skipped, with the reason,
where no PostgreSQL server answers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.cli.main import main
from tests.database import fresh_postgresql_database
from tests.e2e import test_device_https as flow
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e


# The same tests, on this module's server, in their module's order (some build on others).
test_trust_changes_take_effect_without_restart = flow.test_trust_changes_take_effect_without_restart
test_x509_rejects = flow.test_x509_rejects
test_self_signed_unknown_device = flow.test_self_signed_unknown_device
test_symmetric_key_device = flow.test_symmetric_key_device
test_bad_requests = flow.test_bad_requests
test_audit_trail_names_the_reason = flow.test_audit_trail_names_the_reason
test_custom_allocation_through_a_real_webhook = flow.test_custom_allocation_through_a_real_webhook


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with fresh_postgresql_database() as database:
        data = tmp_path_factory.mktemp("device-postgresql") / "data"
        with running_server(data, database=database) as server:
            assert main(["hub", "add", "hub-a.azure-devices.net", *server.cli_args()]) == 0
            yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("device-pki")
    assert main(["ca", "demo", str(directory)]) == 0
    return directory

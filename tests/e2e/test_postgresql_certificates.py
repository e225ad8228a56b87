"""The certificate flow of tests/e2e/test_certificate_flow.py, against a ``devprov serve
--database postgresql://...`` process on a fresh PostgreSQL database (skipped, with the reason,
where no PostgreSQL server answers). The database URL carries a password, which no output shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from devprov.cli.main import main
from tests.database import fresh_postgresql_database
from tests.e2e import test_certificate_flow as flow
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

# The test server trusts every local connection, so any password opens it; this one is there
# to be looked for in the output.
PASSWORD = "not-shown-7d2f9c"


# The same tests, on this module's server, in their module's order (some build on others).
test_server_prints_what_clients_need = flow.test_server_prints_what_clients_need
test_info_repeats_the_facts = flow.test_info_repeats_the_facts
test_prove_in_one_command = flow.test_prove_in_one_command
test_show_and_list_print_the_subject_as_the_service_answers = (
    flow.test_show_and_list_print_the_subject_as_the_service_answers
)
test_prove_with_the_wrong_key_is_refused_locally = (
    flow.test_prove_with_the_wrong_key_is_refused_locally
)
test_step_by_step_with_openssl = flow.test_step_by_step_with_openssl
test_generate_code_prints_the_code_alone = flow.test_generate_code_prints_the_code_alone
test_errors_map_to_exit_codes = flow.test_errors_map_to_exit_codes
test_audit_shows_refusals_with_reasons = flow.test_audit_shows_refusals_with_reasons


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with fresh_postgresql_database() as url:
        database = make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)
        data = tmp_path_factory.mktemp("e2e-postgresql") / "data"
        with running_server(data, database=database) as server:
            yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    assert main(["ca", "demo", str(directory)]) == 0
    return directory


def test_the_server_runs_on_postgresql_without_a_database_file(server: ServerProcess) -> None:
    assert not any(server.data_dir.glob("devprov.db*"))


def test_no_output_shows_the_database_password(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", *server.cli_args(), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["database"].startswith("postgresql://postgres:***@")
    assert main(["info", *server.cli_args()]) == 0
    assert PASSWORD not in capsys.readouterr().out
    assert PASSWORD not in "".join(server.output)

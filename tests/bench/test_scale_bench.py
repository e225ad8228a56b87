"""bench/scale.py runs end to end with tiny numbers against real ``devprov serve`` processes, on
SQLite and (where a server answers) PostgreSQL, and prints each of its figures. What the figures
are is not asserted: the bench measures, it does not judge."""

from __future__ import annotations

import re

import pytest

from bench import scale
from tests.database import postgresql_unreachable

pytestmark = pytest.mark.e2e

NUMBER = r"[\d.]+(?: \[[\d.]+-[\d.]+\])?"  # one figure, or a median [min-max] over rounds
LINE = (
    rf"{NUMBER} reg/s   p50 / p99 {NUMBER} / {NUMBER} ms   server CPU/reg {NUMBER} us"
    r"   RSS {memory} MiB   failures 0"
)


def test_prints_the_load_and_every_figure_on_both_engines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--registrations", "300", "--enrollments", "40", "--devices", "4", "--clients", "2"]

    assert scale.main([*argv, "--rounds", "2"]) == 0

    out = capsys.readouterr().out
    assert re.search(r"^devprov \S+, \d{4}-\d\d-\d\d: 300 registration records, 40 ", out, re.M)
    assert re.search(r"^machine: \d+ x .+ RAM", out, re.M)
    one, two = LINE.format(memory=r"[\d.]+"), LINE.format(memory=r"[\d.]+, [\d.]+")
    engines = ["sqlite"] if postgresql_unreachable() else ["sqlite", "postgresql"]
    for engine in engines:
        section = out.split(f"\n  {engine}:\n", 1)[1]
        assert re.search(
            r"load: 301 registration records \+ 40 individual enrollments in [\d.]+ s", section
        )
        assert f"{engine}: read back through the repositories" in out
        assert re.search(rf"empty store +{one}", section)
        assert re.search(rf"filled \(300 records\) +{one}", section)
        assert re.search(
            r"filled / empty: reg/s [\d.]+ \(target >= 0.80: (met|NOT met)\), p99 [\d.]+x,"
            r" server CPU/reg [\d.]+x",
            section,
        )
    if "postgresql" in engines:
        assert re.search(rf"two instances \(filled\) +{two}", out)
        assert re.search(r"two / one instance: reg/s [\d.]+x, server CPU/reg summed", out)
    else:
        assert "postgresql: not measured: PostgreSQL at" in out
    assert len(re.findall(r"round \d: .* ok 4  failures 0$", out, re.M)) == 2 * (
        2 * len(engines) + engines.count("postgresql")
    )
    assert "failure:" not in out


def test_sqlite_alone_measures_no_second_instance(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--registrations", "5", "--enrollments", "5", "--devices", "2", "--clients", "1"]

    assert scale.main([*argv, "--rounds", "1", "--engines", "sqlite"]) == 0

    out = capsys.readouterr().out
    assert "\n  sqlite:\n" in out
    assert "postgresql" not in out.split("machine:", 1)[1]
    assert "two instances" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engines", "sqlite,mysql"], "--engines: a comma-separated list of sqlite, postgresql"),
        (["--engines", ","], "--engines: a comma-separated list"),
        (["--registrations", "0"], "--registrations must be 1 to 10,000,000"),
        (["--enrollments", "10000001"], "--enrollments must be 1 to 10,000,000"),
        (["--devices", "2", "--clients", "3"], "--clients must be 1 to 64 and at most --devices"),
        (["--rounds", "0"], "--rounds must be 1 to 20"),
    ],
)
def test_refuses_options_out_of_bounds(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        scale.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err

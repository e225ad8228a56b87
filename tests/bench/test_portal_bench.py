"""bench/portal.py runs end to end with tiny numbers and prints every page's figures beside the
baseline's. What the figures are is not asserted: the bench measures, it does not judge."""

from __future__ import annotations

import re

import pytest

from bench import portal


def test_prints_every_page_beside_its_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    assert portal.main(["--count", "30", "--small", "4", "--requests", "2", "--batch", "7"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^filled 30 records of each kind in [\d.]+ s", out, re.M)
    for page in portal.pages("x", 30):
        assert re.search(
            rf"^{re.escape(page)}\s+[\d.]+ /\s+[\d.]+\s+[\d.]+ /\s+[\d.]+\s+[\d.]+$", out, re.M
        )


def test_refuses_numbers_too_small_to_measure() -> None:
    with pytest.raises(SystemExit):
        portal.main(["--requests", "1"])

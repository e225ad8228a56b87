"""The README's tour, run exactly as written: its shell blocks, in order, in a fresh folder beside
a real server, once with each of the two proof-of-possession flows it offers for the
intermediate (devprov's `ca verification`, or `openssl` alone).

Nothing of the tour is restated here: the commands are read from README.md, so a README that
drifts from the product fails this test. A command's expected exit code is 0 unless its line
ends with ``# exit N``; a ``#    -> text`` line under a command is text its output must contain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server import running_server

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
TOUR_START = "## A five-minute tour"
TOUR_END = "## The management API"
TOUR_TIMEOUT_SECONDS = 240

_FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
_EXIT = re.compile(r"#\s*exit (\d+)\s*$")
_EXPECT = re.compile(r"^#\s*->\s*(.+)$")
# The two alternative flows for proving the intermediate, told apart by what they run.
_FLOWS = {"devprov": "devprov ca verification", "openssl": "openssl req"}


@dataclass
class Command:
    line: str
    exit_code: int = 0
    expect: tuple[str, ...] = ()


def tour_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(TOUR_START), text.index(TOUR_END)
    return _FENCE.findall(text[start:end])


def commands(block: str) -> list[Command]:
    """The block's commands: comment lines dropped, continuation lines joined."""
    found: list[Command] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        expected = _EXPECT.match(line)
        if expected and found:
            found[-1].expect += (expected.group(1).strip(),)
            continue
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = pending + line, ""
        status = _EXIT.search(line)
        found.append(Command(line, int(status.group(1)) if status else 0))
    return found


def tour(flow: str) -> list[Command]:
    """Every command of the tour, with the other flow's block left out."""
    other = next(marker for name, marker in _FLOWS.items() if name != flow)
    return [c for block in tour_blocks() if other not in block for c in commands(block)]


def test_the_tour_names_both_flows_and_the_device() -> None:
    """The reject twin of the runs below: the parser finds what they rely on."""
    blocks = tour_blocks()
    assert all(any(marker in b for b in blocks) for marker in _FLOWS.values())
    devprov_flow = [c.line for c in tour("devprov")]
    assert not any(line.startswith("openssl") for line in devprov_flow)
    assert any("device register my-device" in line for line in devprov_flow)
    assert any(c.exit_code == 4 for c in tour("openssl"))
    parsed = commands("a \\\n  b  # exit 4\n#    -> out\n# note\nc")
    assert [(c.line, c.exit_code, c.expect) for c in parsed] == [
        ("a b  # exit 4", 4, ("out",)),
        ("c", 0, ()),
    ]


def script(steps: list[Command]) -> str:
    """One bash session, so that CODE=$(...) and KEY=$(...) carry over; markers around each
    command let the test attribute output and exit codes."""
    body = ["set -u", "exec 2>&1"]
    for number, step in enumerate(steps):
        body += [f"echo '::begin {number}'", step.line, f'echo "::end {number} $?"']
    return "\n".join(body) + "\n"


def transcript(output: str) -> dict[int, tuple[int, str]]:
    results: dict[int, tuple[int, str]] = {}
    for match in re.finditer(r"^::begin (\d+)\n(.*?)^::end \1 (\d+)$", output, re.M | re.S):
        results[int(match.group(1))] = (int(match.group(3)), match.group(2))
    return results


@pytest.mark.parametrize("flow", sorted(_FLOWS))
def test_the_readme_tour_assigns_my_device(tmp_path: Path, flow: str) -> None:
    if flow == "openssl" and shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; the README's openssl flow cannot run")
    steps = tour(flow)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DEVPROV_DATA_DIR", None)
    with running_server(tmp_path / "devprov-data"):
        done = subprocess.run(
            ["bash", "-c", script(steps)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TOUR_TIMEOUT_SECONDS,
            check=False,
        )
        results = transcript(done.stdout)
        for number, step in enumerate(steps):
            assert number in results, f"never ran: {step.line}\n{done.stdout}\n{done.stderr}"
            status, output = results[number]
            assert status == step.exit_code, f"{step.line} exited {status}:\n{output}"
            for text in step.expect:
                assert text in output, f"{step.line} did not print {text!r}:\n{output}"
        listed = subprocess.run(
            ["devprov", "registration", "list", "my-group", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    states = {s["registrationId"]: s for s in json.loads(listed.stdout)}
    state = states["my-device"]
    assert (state["status"], state["assignedHub"]) == ("assigned", "my-hub.azure-devices.net")

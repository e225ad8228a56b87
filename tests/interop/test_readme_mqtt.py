"""The README's Python device SDK example, run as written after the README's tour: the script is
read from README.md, saved as register.py in the tour's folder and run with this interpreter
against a real server on 8883, the one port Microsoft's Python device SDK connects to."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_readme_tour import README, script, tour, transcript
from tests.interop.ports import skip_unless_free
from tests.server import running_server

pytestmark = pytest.mark.interop

SECTION = "### Devices over MQTT: Microsoft's Python device SDK"
_PYTHON = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_PRINTS = re.compile(r"It prints `([^`]+)`")


def readme_example() -> tuple[str, str]:
    """The section's script and what the README says it prints."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ")]
    code = _PYTHON.search(section)
    prints = _PRINTS.search(section)
    assert code is not None and prints is not None, "the README's MQTT example changed shape"
    return code.group(1), prints.group(1)


def test_the_readme_python_sdk_example_assigns_my_device(tmp_path: Path) -> None:
    skip_unless_free([8883], "the Python device SDK")
    code, expected = readme_example()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DEVPROV_DATA_DIR", None)
    steps = tour("devprov")
    with running_server(tmp_path / "devprov-data", "--host", "localhost", "--mqtt-port", "8883"):
        done = subprocess.run(
            ["bash", "-c", script(steps)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        results = transcript(done.stdout)
        assert all(results[n][0] == s.exit_code for n, s in enumerate(steps)), done.stdout
        (tmp_path / "register.py").write_text(code, encoding="utf-8")
        # As the README says to run it, without the virtual environment on PATH.
        ran = subprocess.run(
            [sys.executable, "register.py"],
            cwd=tmp_path,
            env={**env, "PATH": os.environ.get("PATH", "")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == expected

"""Node.js for the interop tests: the node binary with Microsoft's Node SDK packages installed
from ``tests/interop/node/package-lock.json``, or a skip that says what is missing.

``make test`` works on a machine without Node: the Node tests then skip with that reason in
pytest's summary (``-ra``); with Node.js 20+ and npm they run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).parent / "node"
NPM_CI_TIMEOUT_SECONDS = 300
DRIVER_TIMEOUT_SECONDS = 60  # each driver gives up by itself after this (node/driver.js)


def node_with_packages() -> str:
    """The node binary, after ``npm ci`` from the lock file when node_modules is missing or older than the lock (what
    ``make node-deps`` runs; the packages have no install step the drivers need)."""
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not installed: the Node SDK interop tests need Node.js 20+")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"npm is not installed, so the packages of {NODE_DIR} cannot be installed")
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
            check=True,
            capture_output=True,
            timeout=NPM_CI_TIMEOUT_SECONDS,
        )
    return binary


@dataclass(frozen=True)
class DriverRun:
    returncode: int
    line: dict[str, Any]  # the one JSON line the driver printed last
    stderr: str


def run_driver(
    node: str, driver: Path, args: dict[str, Any], *, extra_ca: Path | None = None
) -> DriverRun:
    """Run one driver of ``tests/interop/node`` with its JSON arguments; its last line parsed.
    ``extra_ca``: a CA file node trusts besides its own (``NODE_EXTRA_CA_CERTS``), for the
    transports that take no CA option."""
    env = None if extra_ca is None else {**os.environ, "NODE_EXTRA_CA_CERTS": str(extra_ca)}
    done = subprocess.run(
        [node, str(driver), json.dumps({"timeoutSeconds": DRIVER_TIMEOUT_SECONDS, **args})],
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_SECONDS + 30,
        check=False,
        env=env,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"{driver.name} printed nothing (exit {done.returncode}):\n{done.stderr}"
    return DriverRun(done.returncode, json.loads(lines[-1]), done.stderr)

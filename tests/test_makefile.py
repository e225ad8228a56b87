"""``make reset``: it deletes ./devprov-data and ./pki and nothing else, and refuses while a
server still answers on the port the data directory records."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The Makefile (and what it reads when parsed) in a directory of its own, with a data
    directory, a PKI, files beside them and a directory outside linked from inside."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPOSITORY / name, tmp_path / name)
    (tmp_path / "devprov-data" / "tls").mkdir(parents=True)
    (tmp_path / "devprov-data" / "devprov.db").write_text("db")
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "root.key").write_text("key")
    (tmp_path / "notes.txt").write_text("mine")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "precious").write_text("kept")
    (tmp_path / "pki" / "linked").symlink_to(outside)
    return tmp_path


def reset(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "reset", f"PYTHON={sys.executable}"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_reset_deletes_the_data_directory_and_the_pki_only(checkout: Path) -> None:
    done = reset(checkout)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in checkout.iterdir()) == [
        "Makefile",
        "constraints.txt",
        "notes.txt",
        "pyproject.toml",
    ]
    assert (checkout.parent / f"{checkout.name}-outside" / "precious").read_text() == "kept"


def test_reset_refuses_while_a_server_answers(checkout: Path) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"https://localhost:{listening.getsockname()[1]}"
        endpoint = {"host": "127.0.0.1", "port": listening.getsockname()[1], "url": url}
        (checkout / "devprov-data" / "endpoint.json").write_text(json.dumps(endpoint))
        done = reset(checkout)
    assert done.returncode != 0
    assert f"a devprov server still answers on {url}; stop it (Ctrl+C) first" in done.stderr
    assert (checkout / "devprov-data" / "devprov.db").exists()
    assert (checkout / "pki" / "root.key").exists()
    # the twin: once it has stopped, the same reset goes ahead
    assert reset(checkout).returncode == 0
    assert not (checkout / "devprov-data").exists()

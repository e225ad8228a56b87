"""``make reset``: it deletes ./devprov-data and ./pki and nothing else, and refuses while a
server still answers on the port the data directory records. ``make system-deps``: it installs
what of haproxy, chromium and mosquitto is missing in one apt-get call, or says in one line why not."""

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


# `make system-deps` runs with a PATH of this directory alone: stand-ins for `id`, `apt-get`,
# `haproxy` and `chromium` where a case asks for them, and the real tools the Makefile's own
# parse-time `$(shell ...)` uses.
PARSE_TOOLS = ("cat", "sha1sum", "cut")
ALL_SKIP = "tests/e2e/test_haproxy.py, tests/portal, tests/hub will skip"
ALL = "haproxy chromium mosquitto"


def stand_in(directory: Path, name: str, body: str) -> None:
    script = directory / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


def system_deps(
    checkout: Path, *, uid: int, present: tuple[str, ...] = (), apt_get: str | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``make system-deps`` as user ``uid`` with ``present`` on PATH and, when given, an apt-get
    that runs ``apt_get``; returns the run and the calls apt-get recorded."""
    tools = checkout / "bin"
    shutil.rmtree(tools, ignore_errors=True)  # a second run in the same test starts afresh
    tools.mkdir()
    for name in PARSE_TOOLS:
        real = shutil.which(name)
        assert real is not None, name
        (tools / name).symlink_to(real)
    stand_in(tools, "id", f"echo {uid}")
    for name in present:
        stand_in(tools, name, "exit 0")
    calls = checkout / "apt-get.calls"
    calls.unlink(missing_ok=True)
    if apt_get is not None:
        stand_in(tools, "apt-get", f'echo "$DEBIAN_FRONTEND $*" >> {calls}\n{apt_get}')
    make = shutil.which("make")
    assert make is not None
    done = subprocess.run(
        # Debian's own chromium and mosquitto paths are pointed away, so that the machine's is not seen
        [
            make,
            "--no-print-directory",
            "system-deps",
            f"SYSTEM_CHROMIUM={checkout}/no-chromium",
            f"SYSTEM_MOSQUITTO={checkout}/no-mosquitto",
        ],
        cwd=checkout,
        env={"PATH": str(tools)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize(
    ("present", "uid", "apt_get", "said", "calls"),
    [
        pytest.param(("haproxy", "chromium", "mosquitto"), 1000, None, "", [], id="ok/all-present"),
        pytest.param(
            (),
            1000,
            None,
            f"{ALL} not found and not root: not installing ({ALL_SKIP})\n",
            [],
            id="skip/not-root",
        ),
        pytest.param(
            ("haproxy", "mosquitto"),
            1000,
            None,
            "chromium not found and not root: not installing (tests/portal will skip)\n",
            [],
            id="skip/not-root-chromium-only",
        ),
        pytest.param(
            (),
            0,
            None,
            f"{ALL} not found and no apt-get: not installing ({ALL_SKIP})\n",
            [],
            id="skip/no-apt-get",
        ),
        pytest.param(
            (),
            0,
            "exit 0",
            f"installing {ALL} with apt-get\n",
            [f"noninteractive install -y -qq --no-install-recommends {ALL}"],
            id="install/all-in-one-call",
        ),
        pytest.param(
            ("chromium", "mosquitto"),
            0,
            "exit 0",
            "installing haproxy with apt-get\n",
            ["noninteractive install -y -qq --no-install-recommends haproxy"],
            id="install/haproxy-only",
        ),
        pytest.param(
            (),
            0,
            # the first install fails on stale package lists; after the update it goes through
            'if [ "$1" = update ]; then : > updated; exit 0; fi; [ -e updated ]',
            f"installing {ALL} with apt-get\n",
            [
                f"noninteractive install -y -qq --no-install-recommends {ALL}",
                "noninteractive update -qq",
                f"noninteractive install -y -qq --no-install-recommends {ALL}",
            ],
            id="install/after-update",
        ),
        pytest.param(
            (),
            0,
            # the package lists refresh, the install still fails
            'case "$1" in update) exit 0;; esac; exit 100',
            f"installing {ALL} with apt-get\napt-get could not install {ALL} ({ALL_SKIP})\n",
            [
                f"noninteractive install -y -qq --no-install-recommends {ALL}",
                "noninteractive update -qq",
                f"noninteractive install -y -qq --no-install-recommends {ALL}",
            ],
            id="fail/apt-get-refuses",
        ),
    ],
)
def test_system_deps_installs_what_is_missing_in_one_apt_get_call(
    checkout: Path,
    present: tuple[str, ...],
    uid: int,
    apt_get: str | None,
    said: str,
    calls: list[str],
) -> None:
    done, recorded = system_deps(checkout, uid=uid, present=present, apt_get=apt_get)
    assert done.returncode == 0, done.stderr
    assert done.stdout == said
    assert recorded == calls


def test_system_deps_takes_chromium_where_debian_puts_it(checkout: Path) -> None:
    debian = checkout / "no-chromium"  # the path system_deps() names as SYSTEM_CHROMIUM
    debian.write_text("#!/bin/sh\n")
    debian.chmod(0o755)
    done, recorded = system_deps(
        checkout, uid=0, present=("haproxy", "mosquitto"), apt_get="exit 0"
    )
    assert (done.returncode, done.stdout, recorded) == (0, "", [])
    # the twin: a file there that cannot be run is not a chromium
    debian.chmod(0o644)
    done, recorded = system_deps(
        checkout, uid=0, present=("haproxy", "mosquitto"), apt_get="exit 0"
    )
    assert done.stdout == "installing chromium with apt-get\n"
    assert recorded == ["noninteractive install -y -qq --no-install-recommends chromium"]


def test_system_deps_takes_mosquitto_where_debian_puts_it(checkout: Path) -> None:
    debian = checkout / "no-mosquitto"  # the path system_deps() names as SYSTEM_MOSQUITTO
    debian.write_text("#!/bin/sh\n")
    debian.chmod(0o755)
    present = ("haproxy", "chromium")
    done, recorded = system_deps(checkout, uid=0, present=present, apt_get="exit 0")
    assert (done.returncode, done.stdout, recorded) == (0, "", [])
    # the twin: without it there, nor on PATH, it is installed
    debian.unlink()
    done, recorded = system_deps(checkout, uid=0, present=present, apt_get="exit 0")
    assert done.stdout == "installing mosquitto with apt-get\n"
    assert recorded == ["noninteractive install -y -qq --no-install-recommends mosquitto"]

"""Time ``devprov ca demo`` beside the equivalent ``openssl`` command sequence, in the same run.

For each key type (EC P-256, RSA-4096) one round makes a root CA, an intermediate CA and one device
certificate with its full chain, three ways, interleaved and in rotating order:

- ``devprov ca demo`` in-process (``devprov.cli.main.main([...])``, imports already paid);
- ``devprov ca demo`` as a subprocess (the console script, else ``python -m devprov.cli.main``),
  so interpreter start-up and imports are counted as a user would pay them;
- the same with only the ca command module registered (``python -c``), which shows what the
  imports of the other command modules add to start-up;
- the openssl sequence a certGen.sh user would run: genpkey + ``req -x509`` for the root; genpkey,
  ``req`` and ``x509 -req -CA`` with CA extensions from a temporary extfile for the intermediate;
  the same with clientAuth for the device; then the full chain concatenated.

devprov writes a little more (a chain file per certificate); openssl is given no chain files
beyond the full chain. Each way's outputs are checked once with ``openssl verify`` before timing.

    .venv/bin/python bench/ca_demo.py [--rounds 5]

``run(rounds)`` returns the figures as a flat dict so another bench can import this file.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
KEY_TYPES = ("ec-p256", "rsa-4096")
WAYS = ("devprov-inprocess", "devprov-subprocess", "devprov-ca-only-subprocess", "openssl")
DAYS = "365"

if importlib.util.find_spec("devprov") is None:  # run from a checkout without an install
    sys.path.insert(0, str(PROJECT / "src"))

from devprov.cli import main as cli_main

# The ca commands alone, as `python -c`. Timed as a way of its own: `devprov` imports every command
# module (server, admin, ...) to build its parser, and that start-up cost is worth seeing apart.
# It is also the fallback while another command module does not import.
_CA_ONLY = (
    "import sys, devprov.cli.main as m; m.COMMAND_MODULES = ('ca',); sys.exit(m.main(sys.argv[1:]))"
)


def _full_cli_imports() -> bool:
    try:
        cli_main.build_parser()
    except ImportError:
        return False
    return True


def _subprocess_command() -> tuple[list[str], str]:
    if not _full_cli_imports():
        cli_main.COMMAND_MODULES = ("ca",)  # type: ignore[assignment]  # see _CA_ONLY
        return [sys.executable, "-c", _CA_ONLY], "python -c (ca commands only)"
    script = PROJECT / ".venv" / "bin" / "devprov"
    if script.exists():
        return [str(script)], str(script.relative_to(PROJECT))
    return [sys.executable, "-m", "devprov.cli.main"], "python -m devprov.cli.main"


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    source = str(PROJECT / "src")
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (source, environment.get("PYTHONPATH", "")) if p
    )
    return environment


# --- the openssl sequence -------------------------------------------------------------------

_GENPKEY = {
    "ec-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "rsa-4096": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
}

# The same profiles as devprov.core.issuance, so that both sides sign the same extensions.
_EXTFILE = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,digitalSignature,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_device]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature{encipherment}
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def _openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _serial() -> str:
    return f"0x{secrets.randbits(150):x}"


def _openssl_signed(d: Path, name: str, cn: str, ca: str, section: str, key_type: str) -> None:
    """genpkey, a CSR, and the CA's signature with ``section``'s extensions from the extfile."""
    key, csr, pem, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / "ext.cnf"
    _openssl("genpkey", *_GENPKEY[key_type], "-out", key)
    _openssl("req", "-new", "-key", key, "-config", extfile, "-subj", f"/CN={cn}", "-out", csr)
    signing = ["-CA", d / f"{ca}.pem", "-CAkey", d / f"{ca}.key", "-set_serial", _serial()]
    extensions = ["-extfile", extfile, "-extensions", section]
    _openssl(
        "x509", "-req", "-in", csr, *signing, "-days", DAYS, "-sha256", *extensions, "-out", pem
    )


def openssl_demo(directory: Path, key_type: str) -> None:
    encipherment = ",keyEncipherment" if key_type.startswith("rsa") else ""
    extfile = directory / "ext.cnf"
    extfile.write_text(_EXTFILE.format(encipherment=encipherment))
    root_key, root_pem = directory / "root.key", directory / "root.pem"
    _openssl("genpkey", *_GENPKEY[key_type], "-out", root_key)
    profile = ["-config", extfile, "-extensions", "v3_root", "-subj", "/CN=devprov Test Root CA"]
    validity = ["-set_serial", _serial(), "-days", DAYS, "-sha256"]
    _openssl("req", "-x509", "-new", "-key", root_key, *profile, *validity, "-out", root_pem)
    intermediate_cn = "devprov Test Intermediate CA"
    _openssl_signed(directory, "intermediate", intermediate_cn, "root", "v3_intermediate", key_type)
    _openssl_signed(directory, "my-device", "my-device", "intermediate", "v3_device", key_type)
    full_chain = b"".join(
        (directory / f"{name}.pem").read_bytes() for name in ("my-device", "intermediate", "root")
    )
    (directory / "my-device-full-chain.pem").write_bytes(full_chain)


# --- the devprov ways -----------------------------------------------------------------------


def _demo_argv(directory: Path, key_type: str) -> list[str]:
    return ["ca", "demo", str(directory), "--key-type", key_type, "--days", DAYS, "--json"]


def _devprov_inprocess(directory: Path, key_type: str) -> None:
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            code = cli_main.main(_demo_argv(directory, key_type))
        finally:
            sys.stdout = stdout
    if code != 0:
        raise RuntimeError(f"devprov ca demo exited with {code}")


def _devprov_subprocess(command: list[str]) -> Callable[[Path, str], None]:
    environment = _environment()

    def run(directory: Path, key_type: str) -> None:
        subprocess.run(
            [*command, *_demo_argv(directory, key_type)],
            check=True,
            capture_output=True,
            env=environment,
        )

    return run


def _check_chain(directory: Path) -> None:
    trust = ["-CAfile", str(directory / "root.pem")]
    untrusted = ["-untrusted", str(directory / "intermediate.pem")]
    result = subprocess.run(
        ["openssl", "verify", *trust, *untrusted, str(directory / "my-device.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"chain in {directory} does not verify: {result.stdout}{result.stderr}")


# --- timing ---------------------------------------------------------------------------------


def run(rounds: int = 5) -> dict[str, float]:
    """Seconds per demo set: ``{way}/{key_type}/{median,min,max}`` and ``ratio/{way}/{key_type}``
    (the devprov median over the openssl median of the same key type)."""
    command, _ = _subprocess_command()
    ways: dict[str, Callable[[Path, str], None]] = {
        "devprov-inprocess": _devprov_inprocess,
        "devprov-subprocess": _devprov_subprocess(command),
        "devprov-ca-only-subprocess": _devprov_subprocess([sys.executable, "-c", _CA_ONLY]),
        "openssl": openssl_demo,
    }
    times: dict[tuple[str, str], list[float]] = {(w, k): [] for w in ways for k in KEY_TYPES}
    with tempfile.TemporaryDirectory(prefix="ca-demo-bench-") as scratch:
        base = Path(scratch)
        for way, make in ways.items():  # warm-up, untimed, and a check that each way is right
            target = base / f"check-{way}"
            target.mkdir()
            make(target, "ec-p256")
            _check_chain(target)
        for index in range(rounds):
            order = list(WAYS[index % len(WAYS) :] + WAYS[: index % len(WAYS)])
            for key_type in KEY_TYPES:
                for way in order:
                    target = base / f"{index}-{key_type}-{way}"
                    target.mkdir()
                    started = time.perf_counter()
                    ways[way](target, key_type)
                    times[way, key_type].append(time.perf_counter() - started)
    return _figures(times)


def _figures(times: dict[tuple[str, str], list[float]]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for (way, key_type), samples in times.items():
        figures[f"{way}/{key_type}/median"] = statistics.median(samples)
        figures[f"{way}/{key_type}/min"] = min(samples)
        figures[f"{way}/{key_type}/max"] = max(samples)
    for way in WAYS[:-1]:
        for key_type in KEY_TYPES:
            figures[f"ratio/{way}/{key_type}"] = (
                figures[f"{way}/{key_type}/median"] / figures[f"openssl/{key_type}/median"]
            )
    return figures


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:,.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args()
    report(run(args.rounds), args.rounds)


def report(figures: dict[str, float], rounds: int) -> None:
    """Print the figures of :func:`run` as a table."""
    _, label = _subprocess_command()
    openssl_version = subprocess.run(
        ["openssl", "version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"root + intermediate + device set, {rounds} rounds interleaved; wall time")
    print(f"openssl: {openssl_version}; devprov subprocess: {label}")
    width = max(map(len, WAYS)) + 2
    print(f"{'key type':<10}{'way':<{width}}{'median':>10}{'min - max':>24}{'/ openssl':>11}")
    for key_type in KEY_TYPES:
        for way in WAYS:
            low = _milliseconds(figures[f"{way}/{key_type}/min"])
            high = _milliseconds(figures[f"{way}/{key_type}/max"])
            ratio = figures.get(f"ratio/{way}/{key_type}")
            print(
                f"{key_type:<10}{way:<{width}}{_milliseconds(figures[f'{way}/{key_type}/median']):>10}"
                f"{low + ' - ' + high:>24}{'' if ratio is None else f'{ratio:.2f}x':>11}"
            )


if __name__ == "__main__":
    main()

"""``devprov ca``: a local test CA, the replacement for the C SDK's certGen.sh
(docs/sdk-clients.md#certgensh).

Subcommands ``root``, ``intermediate``, ``device``, ``verification`` and ``demo``. Each handler
turns its options into values, reads the clock once and calls one use case of
:mod:`devprov.service.pki.ca`; this module only parses and prints. No server, no data directory.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devprov.cli.files import input_file, input_prefix
from devprov.cli.output import add_json_flag, emit
from devprov.core.certificate import describe_certificate
from devprov.service.pki.ca import (
    DEFAULT_KEY_TYPE,
    DEMO_INTERMEDIATE_COMMON_NAME,
    DEMO_ROOT_COMMON_NAME,
    DemoResult,
    Issued,
    KeyType,
    NewKey,
    build_demo,
    create_device,
    create_intermediate,
    create_root,
    create_verification,
    validate_common_name,
    validate_registration_id,
)
from devprov.service.pki.file import PkiFiles, read_password_file
from devprov.service.pki.issuer import LoadedIssuer, load_issuer

# Validity in days. A root outlives the intermediates it signs and they outlive their devices;
# a verification certificate is needed only for the minutes of one upload
# (docs/dps-wire.md#proof-of-possession).
DEFAULT_DAYS = {"root": 3650, "intermediate": 1825, "device": 365, "verification": 1, "demo": 365}

DEFAULT_ROOT_COMMON_NAME = DEMO_ROOT_COMMON_NAME
DEFAULT_INTERMEDIATE_COMMON_NAME = DEMO_INTERMEDIATE_COMMON_NAME
# certGen.sh's prefix (docs/sdk-clients.md#certgensh-files)
DEFAULT_VERIFICATION_FILE = "verification-code.pem"
DEFAULT_DEVICE_NAME = "my-device"

# argparse has no public name for the object add_subparsers returns.
_Subparsers = argparse._SubParsersAction


def register(subparsers: _Subparsers[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ca",
        help="make test CA, device and verification certificates (replaces certGen.sh)",
        description=(
            "A local test CA: root and intermediate CAs, device certificates with the full chain "
            "a device presents, and proof-of-possession certificates. Needs no server."
        ),
    )
    commands = parser.add_subparsers(dest="ca_command", metavar="SUBCOMMAND", required=True)
    _register_root(commands)
    _register_intermediate(commands)
    _register_device(commands)
    _register_verification(commands)
    _register_demo(commands)


# --- options --------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _add_new_key_options(parser: argparse.ArgumentParser, *, days: int) -> None:
    parser.add_argument(
        "--dir", type=Path, default=Path("."), help="where files go (default: current directory)"
    )
    parser.add_argument(
        "--key-type",
        choices=[k.value for k in KeyType],
        default=DEFAULT_KEY_TYPE.value,
        help=f"algorithm of the new key (default: {DEFAULT_KEY_TYPE.value})",
    )
    parser.add_argument(
        "--days", type=_positive_int, default=days, help=f"validity in days (default: {days})"
    )
    parser.add_argument(
        "--password-file",
        type=input_file,
        metavar="FILE",
        help="encrypt the new key with the first line of FILE (default: not encrypted)",
    )
    parser.add_argument("--force", action="store_true", help="replace files that exist")
    add_json_flag(parser)


def _add_issuer_options(parser: argparse.ArgumentParser, *, self_signed: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--issuer",
        type=input_prefix,
        metavar="PREFIX",
        help="the signing CA: PREFIX.pem and PREFIX.key; a bare name is looked up in --dir",
    )
    group.add_argument(
        "--issuer-cert", type=input_file, metavar="FILE", help="the signing CA's certificate"
    )
    if self_signed:
        group.add_argument(
            "--self-signed",
            action="store_true",
            help="sign the certificate with its own key (individual enrollments accept it)",
        )
    parser.add_argument(
        "--issuer-key",
        type=input_file,
        metavar="FILE",
        help="the signing CA's key (default: PREFIX.key, or the certificate file with .key)",
    )
    parser.add_argument(
        "--issuer-password-file",
        type=input_file,
        metavar="FILE",
        help="password of the issuer's key",
    )
    parser.set_defaults(ca_parser=parser)


def _register_root(commands: _Subparsers[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("root", help="a self-signed root CA")
    parser.add_argument("--name", default="root", help="file prefix (default: root)")
    parser.add_argument("--cn", default=DEFAULT_ROOT_COMMON_NAME, help="subject common name")
    parser.add_argument("--path-length", type=_non_negative_int, help="basicConstraints pathLen")
    _add_new_key_options(parser, days=DEFAULT_DAYS["root"])
    parser.set_defaults(func=_root)


def _register_intermediate(commands: _Subparsers[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("intermediate", help="an intermediate CA signed by --issuer")
    parser.add_argument("--name", default="intermediate", help="file prefix")
    parser.add_argument("--cn", default=DEFAULT_INTERMEDIATE_COMMON_NAME, help="common name")
    parser.add_argument("--path-length", type=_non_negative_int, help="basicConstraints pathLen")
    _add_issuer_options(parser)
    _add_new_key_options(parser, days=DEFAULT_DAYS["intermediate"])
    parser.set_defaults(func=_intermediate)


def _register_device(commands: _Subparsers[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("device", help="a device (TLS client) certificate")
    parser.add_argument("name", metavar="NAME", help="registration id, also the CN and prefix")
    _add_issuer_options(parser, self_signed=True)
    parser.add_argument("--pfx", action="store_true", help="also write NAME.pfx (PKCS#12)")
    parser.add_argument(
        "--pfx-password-file",
        type=input_file,
        metavar="FILE",
        help="encrypt NAME.pfx with the first line of FILE (implies --pfx)",
    )
    _add_new_key_options(parser, days=DEFAULT_DAYS["device"])
    parser.set_defaults(func=_device)


def _register_verification(commands: _Subparsers[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "verification", help="a proof-of-possession certificate whose CN is CODE"
    )
    parser.add_argument("code", metavar="CODE", help="the verification code the service gave")
    _add_issuer_options(parser)
    parser.add_argument(
        "--out", type=Path, help=f"certificate file (default: --dir/{DEFAULT_VERIFICATION_FILE})"
    )
    parser.add_argument(
        "--keep-key", action="store_true", help="also write the throwaway key beside --out"
    )
    _add_new_key_options(parser, days=DEFAULT_DAYS["verification"])
    parser.set_defaults(func=_verification)


def _register_demo(commands: _Subparsers[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo", help="root, intermediate and one device in DIR, with the next commands to run"
    )
    parser.add_argument("directory", metavar="DIR", type=Path)
    parser.add_argument(
        "--key-type",
        choices=[k.value for k in KeyType],
        default=DEFAULT_KEY_TYPE.value,
        help=f"algorithm of every key (default: {DEFAULT_KEY_TYPE.value})",
    )
    days = DEFAULT_DAYS["demo"]
    parser.add_argument(
        "--days", type=_positive_int, default=days, help=f"validity in days (default: {days})"
    )
    parser.add_argument("--device-name", default=DEFAULT_DEVICE_NAME, help="registration id")
    parser.add_argument("--force", action="store_true", help="replace files that exist")
    add_json_flag(parser)
    parser.set_defaults(func=_demo)


# --- handlers -------------------------------------------------------------------------------


def _password(path: Path | None) -> bytes | None:
    return None if path is None else read_password_file(path)


def _new_key(args: argparse.Namespace) -> NewKey:
    return NewKey(
        key_type=KeyType(args.key_type),
        days=args.days,
        password=_password(args.password_file),
        overwrite=args.force,
    )


def _load_issuer(args: argparse.Namespace, now: datetime) -> LoadedIssuer:
    if args.issuer is not None:
        files = PkiFiles.locate(args.issuer, args.dir)
        certificate, key = files.certificate, args.issuer_key or files.key
    else:
        certificate = args.issuer_cert
        key = args.issuer_key or certificate.with_suffix(".key")
    password = _password(args.issuer_password_file)
    return load_issuer(certificate, key, password, now=now)


def _device_issuer(args: argparse.Namespace, now: datetime) -> LoadedIssuer | None:
    if not args.self_signed:
        return _load_issuer(args, now)
    if args.issuer_key is not None or args.issuer_password_file is not None:
        args.ca_parser.error("--issuer-key and --issuer-password-file need an issuer")
    return None


def _root(args: argparse.Namespace) -> int:
    issued = create_root(
        PkiFiles.locate(args.name, args.dir),
        _new_key(args),
        common_name=args.cn,
        path_length=args.path_length,
        now=datetime.now(UTC),
    )
    _report(args, "root CA", issued)
    return 0


def _intermediate(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    validate_common_name(args.cn)
    new = _new_key(args)
    issuer = _load_issuer(args, now)
    issued = create_intermediate(
        PkiFiles.locate(args.name, args.dir),
        issuer,
        new,
        common_name=args.cn,
        path_length=args.path_length,
        now=now,
    )
    _report(args, "intermediate CA", issued)
    return 0


def _device(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    validate_registration_id(args.name)  # before any file is read: the cheapest error first
    new = _new_key(args)
    pfx_password = _password(args.pfx_password_file)
    issued = create_device(
        PkiFiles(args.dir / args.name),
        _device_issuer(args, now),
        new,
        registration_id=args.name,
        now=now,
        pfx=args.pfx or pfx_password is not None,
        pfx_password=pfx_password,
    )
    _report(args, "device", issued)
    return 0


def _verification(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    validate_common_name(args.code, "verification code")
    new = _new_key(args)
    issuer = _load_issuer(args, now)
    out: Path = args.out or args.dir / DEFAULT_VERIFICATION_FILE
    key_path = None
    if args.keep_key:
        key_path = out.with_suffix(".key") if out.suffix != ".key" else Path(f"{out}.key")
    issued = create_verification(out, issuer, new, code=args.code, key_path=key_path, now=now)
    _report(args, "verification certificate", issued)
    return 0


def _demo(args: argparse.Namespace) -> int:
    directory: Path = args.directory
    result = build_demo(
        directory,
        key_type=KeyType(args.key_type),
        days=args.days,
        device_name=args.device_name,
        now=datetime.now(UTC),
        overwrite=args.force,
    )
    parts = {"root": result.root, "intermediate": result.intermediate, "device": result.device}
    summaries = {role: _summary(issued) for role, issued in parts.items()}
    steps = _next_steps(result)
    data: dict[str, Any] = {"directory": str(directory), **summaries, "next_steps": steps}
    for issued in parts.values():
        _warn(issued.warnings)
    human = [f"Wrote a test PKI to {directory} (keys not encrypted: for tests only).", ""]
    titles = {"root": "root CA", "intermediate": "intermediate CA", "device": "device"}
    for role, summary in summaries.items():
        human += [_human(titles[role], summary), ""]
    human.append("Next steps:")
    human += [f"  {step}" for step in steps]
    emit(args, data, "\n".join(human))
    return 0


# --- output ---------------------------------------------------------------------------------


def _next_steps(result: DemoResult) -> list[str]:
    root_files = dict(result.root.files)
    device_files = dict(result.device.files)
    cert, key = shlex.quote(str(root_files["certificate"])), shlex.quote(str(root_files["key"]))
    full_chain, device_key = device_files["full-chain"], device_files["key"]
    registration_id = describe_certificate(result.device.certificate).common_name
    return [
        "1. Register the root CA with devprov and prove you hold its key:",
        f"     devprov certificate prove root --cert {cert} --key {key}",
        "2. Create an enrollment group whose signing certificate is that root.",
        f"3. The device registers as {registration_id!r} (its CN) and presents the full chain",
        f"   (leaf, intermediate, root) {full_chain} with the key {device_key}, e.g.",
        f'     azure-iot-device: X509(cert_file="{full_chain}", key_file="{device_key}")',
    ]


def _summary(issued: Issued) -> dict[str, Any]:
    facts = describe_certificate(issued.certificate)
    data: dict[str, Any] = {
        "subject": facts.subject,
        "issuer": facts.issuer,
        "self_signed": facts.self_signed,
        "is_ca": facts.is_ca,
        "path_length": facts.path_length,
        "key_type": issued.key_type,
        "key_encrypted": issued.key_encrypted,
        "serial_number": facts.serial_number,
        "not_before": facts.not_before.isoformat(),
        "not_after": facts.not_after.isoformat(),
        "thumbprint": facts.thumbprint,
        "sha256_thumbprint": facts.sha256_thumbprint,
        "files": {role: str(path) for role, path in issued.files},
        "warnings": list(issued.warnings),
    }
    if issued.pfx_encrypted is not None:
        data["pfx_encrypted"] = issued.pfx_encrypted
    return data


def _human(title: str, summary: dict[str, Any]) -> str:
    key = "key file encrypted" if summary["key_encrypted"] else "key file not encrypted"
    if "key" not in summary["files"]:
        key = "key not kept"
    issuer = summary["issuer"] + (" (self-signed)" if summary["self_signed"] else "")
    lines = [
        f"{title}: {summary['subject']}",
        f"  issuer      {issuer}",
        f"  key type    {summary['key_type']} ({key})",
        f"  expires     {summary['not_after']}",
        f"  thumbprint  {summary['thumbprint']} (SHA-1)",
        "  files",
    ]
    lines += [f"    {role:<12} {path}" for role, path in summary["files"].items()]
    if summary.get("pfx_encrypted") is False:
        lines.append("  the .pfx is NOT encrypted (no --pfx-password-file was given)")
    elif summary.get("pfx_encrypted"):
        lines.append("  the .pfx is encrypted with the password from --pfx-password-file")
    return "\n".join(lines)


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _report(args: argparse.Namespace, title: str, issued: Issued) -> None:
    _warn(issued.warnings)
    summary = _summary(issued)
    emit(args, summary, _human(title, summary))

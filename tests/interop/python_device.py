"""Register one device with Microsoft's Python device SDK (``azure-iot-device``) and print the
outcome as one JSON line; run as a child process by tests/interop/test_python_device.py.

usage: python python_device.py '<json>'
  {"host": "localhost", "idScope": "0ne...", "registrationId": "my-device",
   "cert": "chain.pem", "key": "device.key"        (X.509: the PEM chain the device presents)
   | "symmetricKey": "<base64 device key>",        (symmetric key: the device's own key)
   "ca": "ca.pem", "websockets": false,            (MQTT over TLS on 8883, or WebSocket on 443)
   "payload": {...}, "timeoutSeconds": 60}         (both optional)
prints {"ok": true, "status", "deviceId", "assignedHub", "substatus", "payload"} and exits 0;
       {"ok": false, "error": <class>, "message", "cause": "<class>: <message>" | null} and exits
       1 when register() raises; {"ok": false, "error": "Timeout", ...} and exits 2 when it has
       not returned within timeoutSeconds.

The SDK is used as a device would use it: its port is its own (8883, or 443 with websockets,
docs/sdk-clients.md#python-device-host-port-and-tls), and the server's CA is handed over as PEM
text. It retries some failures for a long time, so the deadline is kept here: the registration
runs in a daemon thread and the process ends when the deadline passes, whatever the SDK is
doing.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from azure.iot.device import X509, ProvisioningDeviceClient

DEFAULT_TIMEOUT_SECONDS = 60


def build_client(args: dict[str, Any]) -> ProvisioningDeviceClient:
    common = {
        "provisioning_host": args["host"],
        "registration_id": args["registrationId"],
        "id_scope": args["idScope"],
        "server_verification_cert": Path(args["ca"]).read_text(),
        "websockets": bool(args.get("websockets", False)),
    }
    if "symmetricKey" in args:
        return ProvisioningDeviceClient.create_from_symmetric_key(
            symmetric_key=args["symmetricKey"], **common
        )
    return ProvisioningDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=args["cert"], key_file=args["key"]), **common
    )


def register(args: dict[str, Any]) -> dict[str, Any]:
    """The outcome line of one ``register()``."""
    try:
        client = build_client(args)
        if "payload" in args:
            client.provisioning_payload = args["payload"]
        result = client.register()
    except Exception as exc:  # every SDK error is reported, by class
        cause = exc.__cause__
        return {
            "ok": False,
            "error": type(exc).__name__,
            "message": str(exc),
            "cause": None if cause is None else f"{type(cause).__name__}: {cause}",
        }
    state = result.registration_state
    return {
        "ok": True,
        "status": result.status,
        "deviceId": state.device_id if state else None,
        "assignedHub": state.assigned_hub if state else None,
        "substatus": state.sub_status if state else None,
        # The SDK keeps the answer's payload and hands it back as JSON text ("null" when absent).
        "payload": json.loads(state.response_payload) if state else None,
    }


def finish(line: dict[str, Any], code: int) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    os._exit(code)  # the SDK's threads may still run; none of them may keep the process alive


def main() -> None:
    args = json.loads(sys.argv[1])
    timeout = float(args.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS))
    outcome: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: outcome.append(register(args)), daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        finish({"ok": False, "error": "Timeout", "message": f"no outcome within {timeout} s"}, 2)
    line = outcome[0]
    finish(line, 0 if line["ok"] else 1)


if __name__ == "__main__":
    main()

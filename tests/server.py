"""Start a real ``devprov serve`` process on a free port, for end-to-end and interop tests."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_SECONDS = 60
_LISTENING = re.compile(r"devprov is listening on (https://\S+) ")
_MQTT = re.compile(r" and mqtts://\S+:(\d+) ")
_AMQP = re.compile(r" and amqps://\S+:(\d+) ")


@dataclass
class ServerProcess:
    url: str
    data_dir: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    mqtt_port: int | None = None  # MQTT over TLS, when the server was started with it
    amqp_port: int | None = None  # AMQP over TLS, when the server was started with it
    database: str | None = None  # --database, when the server was started with one

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port or 443  # the URL names no port when it is 443

    def cli_args(self) -> list[str]:
        database = [] if self.database is None else ["--database", self.database]
        return ["--data-dir", str(self.data_dir), *database]


@contextmanager
def running_server(
    data_dir: Path, *extra: str, open_files: int | None = None, database: str | None = None
) -> Iterator[ServerProcess]:
    """``devprov serve`` with ``extra`` options; ``open_files`` lowers its descriptor limit;
    ``database`` is the --database URL (default: the data directory's SQLite file).

    The HTTPS port is a free one unless ``extra`` names ``--port``; MQTT over TLS is off unless
    ``extra`` names ``--mqtt-port`` (its default, 8883, is a port only one server can hold), and
    AMQP over TLS unless it names ``--amqp-port`` (its default, 5671, likewise).
    """

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    command = [
        sys.executable,
        "-m",
        "devprov.cli.main",
        "serve",
        "--data-dir",
        str(data_dir),
        *([] if "--port" in extra else ["--port", "0"]),
        *([] if "--mqtt-port" in extra else ["--mqtt-port", "0"]),
        *([] if "--amqp-port" in extra else ["--amqp-port", "0"]),
        *([] if database is None else ["--database", database]),
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=limit if open_files is not None else None,  # noqa: PLW1509 - setrlimit only
    )
    assert process.stdout is not None
    output: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if os.environ.get("DEVPROV_TEST_ECHO"):
                sys.stderr.write(line)
            match = _LISTENING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not ready.wait(0.1):
            if time.monotonic() > deadline:
                raise TimeoutError("devprov serve did not start:\n" + "".join(output))
        if not found:
            raise RuntimeError("devprov serve exited early:\n" + "".join(output))
        mqtt = next((m for line in output if (m := _MQTT.search(line))), None)
        amqp = next((m for line in output if (m := _AMQP.search(line))), None)
        yield ServerProcess(
            found[0],
            data_dir,
            process,
            output,
            mqtt_port=int(mqtt.group(1)) if mqtt else None,
            amqp_port=int(amqp.group(1)) if amqp else None,
            database=database,
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
        process.stdout.close()

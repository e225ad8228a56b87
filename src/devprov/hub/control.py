"""One admin connection to Mosquitto's dynamic-security plugin: commands out, answers back.

The plugin takes JSON ``{"commands": [...]}`` published to ``$CONTROL/dynamic-security/v1``
and publishes ``{"responses": [...]}`` to ``$CONTROL/dynamic-security/v1/response``, each
response naming its command, echoing the command's ``correlationData`` and holding ``error``
when it failed (the plugin's README and plugin.c in Mosquitto's source). The session sends one
command at a time and waits for the answer carrying that command's correlation data, so
answers to other admins on the same topic are passed over.

paho-mqtt drives the connection synchronously here (``loop()`` called until the awaited answer
comes or the deadline passes), on the caller's worker thread: no thread of its own. Failures are
translated where they enter: no connection, a TLS failure, a lost connection or no answer in time
is :class:`HubUnreachableError`; a refused admin login or a command answered with an error is
:class:`HubRefusedError` quoting the broker. No message holds a password.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt

from devprov.service.hub_identity import HubRefusedError, HubUnreachableError

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
# How long one loop() call may block: the deadline is checked between calls.
LOOP_SLICE = 0.25


class ControlSession:
    """A context manager: connected on entry, disconnected on exit."""

    def __init__(
        self,
        *,
        broker: str,
        host: str,
        port: int,
        tls: bool,
        ca_file: str | None,
        username: str,
        password: str,
        connect_timeout: float,
        command_timeout: float,
    ) -> None:
        self._broker = broker  # how messages name the broker
        self._username = username
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._client = mqtt.Client(
            client_id=f"devprov-admin-{uuid.uuid4().hex}", clean_session=True
        )
        self._client.username_pw_set(username, password)
        self._tls: _TrackedContext | None = None
        if tls:
            self._tls = _TrackedContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the host name
            try:
                if ca_file:
                    self._tls.load_verify_locations(cafile=ca_file)
                else:
                    self._tls.load_default_certs()
            except OSError as exc:  # the CA file cannot be read or parsed
                raise HubUnreachableError(
                    f"cannot trust {self._broker}: CA file {ca_file}: {exc}"
                ) from exc
            self._client.tls_set_context(self._tls)
        self._connack: int | None = None
        self._suback: tuple[int, ...] | None = None
        self._answers: dict[str, dict[str, Any]] = {}
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- paho callbacks (called from loop(), on this thread) --

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, rc: int) -> None:
        self._connack = rc

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, granted: tuple[int, ...]
    ) -> None:
        self._suback = tuple(granted)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload).get("responses", [])
        except (ValueError, AttributeError):
            return  # not the plugin's answer: nothing this session waits for
        for response in responses if isinstance(responses, list) else []:
            if isinstance(response, dict) and isinstance(response.get("correlationData"), str):
                self._answers[response["correlationData"]] = response

    # -- connection --

    def __enter__(self) -> ControlSession:
        # paho 1.6 bounds the TCP connect by its own 5 s and the TLS handshake by the keepalive:
        # the keepalive is the connect timeout, and the CONNACK is awaited within what is left.
        keepalive = max(5, round(self._connect_timeout))
        deadline = time.monotonic() + self._connect_timeout
        try:
            self._client.connect(self._host, self._port, keepalive=keepalive)
        except (OSError, ValueError) as exc:  # refused, unreachable, name unknown, TLS failed
            if self._tls is not None and self._tls.wrapped is not None:
                self._tls.wrapped.close()  # paho 1.6 leaves a failed handshake's socket open
            raise HubUnreachableError(f"cannot reach {self._broker}: {_reason(exc)}") from exc
        try:
            self._log_in(deadline)
        except BaseException:
            self._client.disconnect()
            raise
        return self

    def _log_in(self, deadline: float) -> None:
        """Await the CONNACK, then subscribe to the plugin's answers."""
        self._loop_until(lambda: self._connack is not None, deadline, "the admin login")
        connack = self._connack if self._connack is not None else mqtt.CONNACK_ACCEPTED
        if connack != mqtt.CONNACK_ACCEPTED:
            raise HubRefusedError(
                f"{self._broker} refused the admin login as user {self._username!r}: "
                f"{mqtt.connack_string(connack)}"
            )
        self._client.subscribe(RESPONSE_TOPIC, qos=1)
        deadline = time.monotonic() + self._command_timeout
        self._loop_until(lambda: self._suback is not None, deadline, "the subscription")
        if self._suback is None or self._suback[0] not in (0, 1, 2):
            raise HubRefusedError(
                f"{self._broker} refused the admin a subscription to {RESPONSE_TOPIC}"
            )

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._client.disconnect()

    # -- commands --

    def run(self, command: dict[str, Any], *tolerated: str) -> dict[str, Any]:
        """Send ``command`` and return the plugin's answer to it: one without ``error``, or one
        whose error is among ``tolerated``; any other error is :class:`HubRefusedError`."""
        name = str(command["command"])
        correlation = uuid.uuid4().hex
        payload = json.dumps({"commands": [{**command, "correlationData": correlation}]})
        info = self._client.publish(CONTROL_TOPIC, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise HubUnreachableError(
                f"{self._broker}: cannot send {name}: {mqtt.error_string(info.rc)}"
            )
        deadline = time.monotonic() + self._command_timeout
        self._loop_until(lambda: correlation in self._answers, deadline, f"{name}")
        answer = self._answers.pop(correlation)
        error = answer.get("error")
        if error is None or error in tolerated:
            return answer
        subject = command.get("username") or command.get("rolename") or ""
        raise HubRefusedError(
            f"{self._broker} refused {name} {subject}: {error}".replace("  ", " ")
        )

    def _loop_until(self, done: Callable[[], bool], deadline: float, waiting_for: str) -> None:
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise HubUnreachableError(
                    f"{self._broker} did not answer {waiting_for} in time (docs/hubs-mosquitto.md#timeouts)"
                )
            rc = self._client.loop(timeout=min(LOOP_SLICE, left))
            if rc != mqtt.MQTT_ERR_SUCCESS and not done():
                raise HubUnreachableError(
                    f"{self._broker} closed the connection awaiting {waiting_for}: "
                    f"{mqtt.error_string(rc)}"
                )


class _TrackedContext(ssl.SSLContext):
    """An SSL context that keeps the last socket it wrapped, so that a connection whose TLS
    handshake failed inside paho can still be closed."""

    wrapped: ssl.SSLSocket | None = None

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.wrapped = super().wrap_socket(*args, **kwargs)
        return self.wrapped


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return str(exc) or type(exc).__name__

"""The custom allocation webhook client (DPS's custom allocation policy).

DPS calls the webhook with a POST and a JSON body and expects the chosen hub back; an error or a
timeout fails the registration. devprov bounds the call by ``WEBHOOK_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from devprov.core.error import UnavailableError

# Long enough for an Azure Function cold start, short of the 30 s a device waits for an answer
# (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts).
WEBHOOK_TIMEOUT_SECONDS = 10.0

# A webhook's answer is a small JSON document; anything larger is refused unread.
MAX_WEBHOOK_RESPONSE_BYTES = 96 * 1024


class WebhookFailedError(UnavailableError):
    """The custom allocation webhook failed, timed out (10 s) or answered badly; the registration fails."""

    code = "CustomAllocationWebhookFailed"
    number = 503430


class HttpAllocationWebhook:
    def __init__(
        self, *, verify: bool | str = True, timeout: float = WEBHOOK_TIMEOUT_SECONDS
    ) -> None:
        self._verify = verify
        self._timeout = timeout

    def call(self, url: str, body: Mapping[str, Any]) -> object:
        try:
            with httpx.Client(timeout=self._timeout, verify=self._verify) as client:
                response = client.post(url, json=dict(body))
        except httpx.HTTPError as exc:
            raise WebhookFailedError(f"the custom allocation webhook {url} failed: {exc}") from exc
        if response.status_code >= 300:
            raise WebhookFailedError(
                f"the custom allocation webhook {url} answered {response.status_code}"
            )
        if len(response.content) > MAX_WEBHOOK_RESPONSE_BYTES:
            raise WebhookFailedError(
                f"the custom allocation webhook {url} answered with too large a body"
            )
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise WebhookFailedError(
                f"the custom allocation webhook {url} answered with invalid JSON"
            ) from exc

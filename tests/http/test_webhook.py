"""The custom allocation webhook client against real HTTP(S) servers on 127.0.0.1: the answer, the
failures, the one deadline, the streamed size cap, redirects, the destination policy and the
redaction of the URL in every message."""

from __future__ import annotations

import base64
import functools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network

import httpcore
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.error import WebhookDestinationRefusedError, WebhookFailedError
from devprov.core.outbound import MAX_WEBHOOK_RESPONSE_BYTES
from devprov.http.webhook import (
    MAX_PENDING_LOOKUPS,
    HttpAllocationWebhook,
    _target,
    resolve_host,
)
from tests.http.conftest import Pki

OK = json.dumps({"iotHubHostName": "hub-a"}).encode()
SECRET = "k3y-SECRET"


@dataclass
class Seen:
    """What the test server received and sent."""

    requests: list[dict] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)


def _drip(handler: BaseHTTPRequestHandler, data: bytes, gap: float) -> None:
    for i in range(len(data)):
        handler.wfile.write(data[i : i + 1])
        time.sleep(gap)


def _endless(handler: BaseHTTPRequestHandler, seen: Seen, *, chunked: bool) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Connection", "close")
    handler.end_headers()
    piece = b"[" + b"1," * 32 * 1024
    sent = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # a client that reads on is stopped by the test's guard
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
        handler.wfile.write(frame)
        sent += len(piece)
        seen.sent[handler.path] = sent


def _behave(handler: BaseHTTPRequestHandler, behaviour: str, seen: Seen) -> None:
    def answer(status: int, body: bytes, **headers: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    if behaviour == "ok":
        answer(200, OK)
    elif behaviour == "error":
        answer(500, b"{}")
    elif behaviour == "garbage":
        answer(200, b"not json")
    elif behaviour == "deep":
        answer(200, b"[" * 90_000)  # within the size cap, deeper than Python's recursion limit
    elif behaviour == "slow":
        time.sleep(1.0)
        answer(200, OK)
    elif behaviour == "at-the-cap":
        answer(200, b'"' + b"a" * (MAX_WEBHOOK_RESPONSE_BYTES - 2) + b'"')
    elif behaviour == "declared-too-large":
        # A Content-Length past the cap: refused without reading the body, which never comes.
        handler.send_response(200)
        handler.send_header("Content-Length", str(MAX_WEBHOOK_RESPONSE_BYTES + 1))
        handler.end_headers()
        time.sleep(2)
    elif behaviour in ("endless", "endless-chunked"):
        _endless(handler, seen, chunked=behaviour == "endless-chunked")
    elif behaviour == "drip-body":
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(OK)))
        handler.end_headers()
        _drip(handler, OK, 0.05)
    elif behaviour == "drip-head":
        _drip(handler, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK) + OK, 0.05)
    elif behaviour == "redirect":
        answer(302, b"", Location=f"/ok?code={SECRET}")
    elif behaviour == "gzip":
        answer(200, OK, Content_Encoding="gzip")
    elif behaviour == "auth":
        answer(200, json.dumps({"authorization": handler.headers["Authorization"]}).encode())


def _handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.requests.append(
                {
                    "path": self.path,
                    "body": body,
                    "type": self.headers["Content-Type"],
                    "host": self.headers["Host"],
                }
            )
            _behave(self, self.path.strip("/").split("?")[0], seen)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hangs up on purpose in the limit cases: broken pipes are expected


@dataclass
class Webhook:
    port: int
    seen: Seen

    def url(self, path: str, *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}/{path}"


@contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[Webhook]:
    seen = Seen()
    server = QuietServer(("127.0.0.1", 0), _handler(seen))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(server.server_address[1], seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serving() as running:
        yield running


def finishes_within(seconds: float, call: Callable[[], object]) -> BaseException | object:
    """Run ``call`` on a thread; fail the test if it has not returned after ``seconds`` (the
    code before this change read on for as long as a server kept sending)."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call was still running after {seconds} s"
    return outcome[0]


# --- the answer --------------------------------------------------------------------------------


def test_posts_json_and_returns_the_answer(webhook: Webhook) -> None:
    answer = HttpAllocationWebhook().call(
        webhook.url(f"ok?code={SECRET}"), {"deviceRuntimeContext": {"registrationId": "d1"}}
    )
    assert answer == {"iotHubHostName": "hub-a"}
    (request,) = webhook.seen.requests
    assert request["path"] == f"/ok?code={SECRET}" and request["type"] == "application/json"
    assert request["body"] == {"deviceRuntimeContext": {"registrationId": "d1"}}
    assert request["host"] == f"127.0.0.1:{webhook.port}"


def test_an_answer_of_exactly_the_cap_is_read(webhook: Webhook) -> None:
    answer = HttpAllocationWebhook().call(webhook.url("at-the-cap"), {})
    assert isinstance(answer, str) and len(answer) == MAX_WEBHOOK_RESPONSE_BYTES - 2


def test_userinfo_becomes_basic_authentication_and_stays_out_of_the_path(
    webhook: Webhook,
) -> None:
    url = webhook.url("auth").replace("http://", "http://fn-user:p%40ss@")
    answer = HttpAllocationWebhook().call(url, {})
    assert answer == {"authorization": "Basic " + base64.b64encode(b"fn-user:p@ss").decode()}
    assert webhook.seen.requests[0]["host"] == f"127.0.0.1:{webhook.port}"


# --- failures, each with the URL redacted --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("error", "answered 500$", id="fail/status"),
        pytest.param("garbage", "answered with invalid JSON", id="fail/not-json"),
        pytest.param("deep", "answered with invalid JSON", id="fail/nested-too-deep"),
        pytest.param("slow", "did not answer within its 0.3 s deadline", id="fail/timeout"),
        pytest.param("gzip", "Content-Encoding 'gzip'; devprov asks for", id="fail/compressed"),
        pytest.param(
            "declared-too-large",
            f"answered with more than {MAX_WEBHOOK_RESPONSE_BYTES} bytes",
            id="fail/declared-too-large",
        ),
    ],
)
def test_failures_are_devprov_errors_with_the_url_redacted(
    webhook: Webhook, path: str, message: str
) -> None:
    url = webhook.url(f"{path}?code={SECRET}").replace("http://", f"http://u:{SECRET}@")
    with pytest.raises(WebhookFailedError, match=message) as caught:
        HttpAllocationWebhook(timeout=0.3).call(url, {})
    assert SECRET not in caught.value.message
    assert f"http://<redacted>@127.0.0.1:{webhook.port}/{path}?<redacted>" in caught.value.message


def test_unreachable_webhook() -> None:
    url = f"http://127.0.0.1:9/nothing?code={SECRET}"
    with pytest.raises(WebhookFailedError, match=r"failed: .*refused") as caught:
        HttpAllocationWebhook(timeout=1).call(url, {})
    assert SECRET not in caught.value.message


# --- one deadline for the whole call ------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [pytest.param("drip-body", id="fail/body-drips"), pytest.param("drip-head", id="fail/head")],
)
def test_one_deadline_for_the_whole_call(webhook: Webhook, path: str) -> None:
    # Each byte comes 0.05 s after the last, well within any per-read timeout; the whole answer
    # takes about 1.5 s (the head) or 1.2 s (the body), past the 0.5 s deadline.
    started = time.monotonic()
    outcome = finishes_within(
        5, lambda: HttpAllocationWebhook(timeout=0.5).call(webhook.url(path), {})
    )
    elapsed = time.monotonic() - started
    assert isinstance(outcome, WebhookFailedError), outcome
    assert "did not answer within its 0.5 s deadline" in outcome.message
    assert elapsed < 0.5 + 0.4


def test_the_deadline_covers_a_slow_name_lookup(webhook: Webhook) -> None:
    def slow_getaddrinfo(*args: object, **kwargs: object) -> list[object]:
        time.sleep(3)  # a resolver that does not answer: the fault simulated
        return socket.getaddrinfo(*args, **kwargs)  # type: ignore[arg-type]

    webhook_client = HttpAllocationWebhook(
        timeout=0.5, resolve=functools.partial(resolve_host, getaddrinfo=slow_getaddrinfo)
    )
    started = time.monotonic()
    outcome = finishes_within(5, lambda: webhook_client.call(webhook.url("ok", host="fn.test"), {}))
    assert isinstance(outcome, WebhookFailedError), outcome
    assert "deadline" in outcome.message
    assert time.monotonic() - started < 0.9
    assert webhook.seen.requests == []


def test_a_hanging_resolver_cannot_pile_up_threads() -> None:
    release = threading.Event()

    def hanging_getaddrinfo(*args: object, **kwargs: object) -> list[object]:
        release.wait(10)  # a resolver that does not answer: the fault simulated
        return []

    resolve = functools.partial(resolve_host, getaddrinfo=hanging_getaddrinfo)
    refused: list[str] = []
    try:
        # Each call gives up after 0.01 s and leaves its lookup pending (another test's may be
        # pending too): within the cap's count of calls, one is refused without a thread.
        for _ in range(MAX_PENDING_LOOKUPS + 1):
            try:
                resolve("fn.test", 80, 0.01)
            except httpcore.ConnectTimeout:
                continue
            except httpcore.ConnectError as exc:
                refused.append(str(exc))
                break
    finally:
        release.set()
    assert refused and "name lookups are already pending" in refused[0]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the pending lookups end; a new one is accepted again
        try:
            assert resolve_host("localhost", 80, 1)
            break
        except httpcore.ConnectError:
            time.sleep(0.05)
    else:
        pytest.fail("the pending lookups were never released")


# --- the size cap, counted while the answer streams in -----------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("endless", id="fail/endless-body"),
        pytest.param("endless-chunked", id="fail/endless-chunked-body"),
    ],
)
def test_an_endless_answer_is_cut_at_the_cap(webhook: Webhook, path: str) -> None:
    # The server sends as fast as it can for 30 s; the client must stop at the cap, well before
    # the deadline, without buffering the rest.
    outcome = finishes_within(8, lambda: HttpAllocationWebhook().call(webhook.url(path), {}))
    assert isinstance(outcome, WebhookFailedError), outcome
    assert f"answered with more than {MAX_WEBHOOK_RESPONSE_BYTES} bytes" in outcome.message


# --- redirects ---------------------------------------------------------------------------------


def test_a_redirect_is_not_followed(webhook: Webhook) -> None:
    with pytest.raises(WebhookFailedError) as caught:
        HttpAllocationWebhook().call(webhook.url(f"redirect?code={SECRET}"), {})
    message = caught.value.message
    assert (
        "answered 302, a redirect to /ok?<redacted>; devprov does not follow redirects" in message
    )
    assert SECRET not in message
    assert [r["path"] for r in webhook.seen.requests] == [f"/redirect?code={SECRET}"]


# --- destinations ------------------------------------------------------------------------------


def test_a_refused_address_is_never_connected_to(webhook: Webhook) -> None:
    # 0.0.0.0 reaches this machine's listeners on Linux, so the twin below shows both sides with
    # a real server: refused by default, called once the operator allows it.
    url = webhook.url(f"ok?code={SECRET}", host="0.0.0.0")
    with pytest.raises(WebhookDestinationRefusedError) as caught:
        HttpAllocationWebhook().call(url, {})
    message = caught.value.message
    assert f"http://0.0.0.0:{webhook.port}/ok?<redacted> was not called" in message
    assert "0.0.0.0 is in 0.0.0.0/8" in message and "--webhook-allow 0.0.0.0/8" in message
    assert SECRET not in message
    assert webhook.seen.requests == []
    allowed = HttpAllocationWebhook(allowed=[ip_network("0.0.0.0/32")])
    assert allowed.call(url, {}) == {"iotHubHostName": "hub-a"}
    assert len(webhook.seen.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://169.254.169.254/latest/meta-data/", id="fail/metadata-v4"),
        pytest.param("http://[fd00:ec2::254]/latest/meta-data/", id="fail/metadata-v6"),
        pytest.param("http://[::ffff:169.254.169.254]/", id="fail/mapped-metadata"),
        pytest.param("http://2852039166/", id="fail/metadata-as-a-number"),
        pytest.param("https://[fe80::1]:8443/fn", id="fail/link-local-v6"),
    ],
)
def test_metadata_and_link_local_addresses_are_refused(url: str) -> None:
    outcome = finishes_within(3, lambda: HttpAllocationWebhook().call(url, {}))
    assert isinstance(outcome, WebhookDestinationRefusedError), outcome
    assert "was not called" in outcome.message


class Resolver:
    """A name service under the test's control: the fault a rebinding DNS is."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, timeout: float) -> list[str]:
        self.asked.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_the_address_checked_is_the_address_connected_to(webhook: Webhook) -> None:
    # The first lookup answers with this machine, any later one with the metadata service: the
    # client must ask once and connect to what it checked.
    resolver = Resolver(["127.0.0.1"], ["169.254.169.254"])
    client = HttpAllocationWebhook(resolve=resolver)
    assert client.call(webhook.url("ok", host="fn.test"), {}) == {"iotHubHostName": "hub-a"}
    assert resolver.asked == ["fn.test"]
    assert webhook.seen.requests[0]["host"] == f"fn.test:{webhook.port}"


def test_a_name_with_one_refused_address_is_refused(webhook: Webhook) -> None:
    resolver = Resolver(["127.0.0.1", "169.254.169.254"])
    with pytest.raises(WebhookDestinationRefusedError, match=r"fn.test \(169.254.169.254\)"):
        HttpAllocationWebhook(resolve=resolver).call(webhook.url("ok", host="fn.test"), {})
    assert webhook.seen.requests == []


def test_a_metadata_name_is_refused_wherever_it_points(webhook: Webhook) -> None:
    resolver = Resolver(["127.0.0.1"])
    url = webhook.url("ok", host="metadata.google.internal")
    with pytest.raises(WebhookDestinationRefusedError, match="cloud metadata service"):
        HttpAllocationWebhook(resolve=resolver).call(url, {})
    assert webhook.seen.requests == []
    allowed = HttpAllocationWebhook(resolve=resolver, allowed=[ip_network("127.0.0.1/32")])
    assert allowed.call(url, {}) == {"iotHubHostName": "hub-a"}


# --- TLS: the host name is verified, the checked address is connected to ------------------------


def _server_tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_chain_file, pki.server_key_file)
    return context


@pytest.mark.parametrize(
    ("host", "trust", "error"),
    [
        pytest.param("localhost", "root", None, id="ok/name-in-certificate"),
        pytest.param("fn.test", "root", "match", id="fail/name-not-in-certificate"),
        pytest.param("localhost", "other", "certificate verify failed", id="fail/untrusted"),
    ],
)
def test_https_verifies_the_name_while_connecting_to_the_checked_address(
    pki: Pki, host: str, trust: str, error: str | None
) -> None:
    cafile = str(pki.root_file if trust == "root" else pki.other_root_file)
    client = HttpAllocationWebhook(verify=cafile, resolve=Resolver(["127.0.0.1"]))
    with serving(_server_tls(pki)) as tls_webhook:
        url = tls_webhook.url(f"ok?code={SECRET}", host=host, scheme="https")
        if error is None:
            assert client.call(url, {}) == {"iotHubHostName": "hub-a"}
            return
        with pytest.raises(WebhookFailedError, match=error) as caught:
            client.call(url, {})
        assert SECRET not in caught.value.message
        assert tls_webhook.seen.requests == []


# --- the URL parser ----------------------------------------------------------------------------


@given(
    st.one_of(
        st.text(),
        st.builds(
            lambda scheme, rest: f"{scheme}://{rest}",
            st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
            st.text(),
        ),
    )
)
def test_any_webhook_url_parses_or_fails_as_a_webhook_failure(url: str) -> None:
    try:
        target = _target(url)
    except WebhookFailedError as exc:
        assert "custom allocation webhook" in exc.message
        return
    assert target.url.scheme in (b"http", b"https") and target.url.host

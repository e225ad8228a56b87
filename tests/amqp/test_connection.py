"""The AMQP engine's behaviour against a real server over TLS on loopback (a small test
application, tests/amqp/conftest.py): SASL, open, links, requests and their outcomes, credit,
settlement, large and split messages, heartbeats and timeouts, and shutting down."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from devprov.amqp.application import AmqpError, Message, Role
from devprov.amqp.connection import CHANNEL_MAX, MAX_FRAME_SIZE
from devprov.amqp.frames import (
    SND_SETTLED,
    Accepted,
    Attach,
    Begin,
    Detach,
    Disposition,
    End,
    Flow,
    Open,
    Rejected,
    Transfer,
)
from devprov.amqp.message import encode_message
from devprov.amqp.session import LINK_CREDIT, MAX_MESSAGE_BYTES
from tests.amqp.client import ServerClosed
from tests.amqp.conftest import ANSWER_ERROR, TEST_POLICY, AmqpServer, start_server, stop_server

PLAIN = ("PLAIN", "0ne00000001/registrations/dev-1", "SharedAccessSignature sr=x&sig=y")


def _echo(client, body: bytes = b"{}", **properties) -> Message:
    correlation = str(uuid.uuid4())
    outcome = client.send(Message(body, properties, correlation_id=correlation))
    assert outcome == Accepted()
    answer = client.receive()
    assert answer.correlation_id == correlation
    return answer


@pytest.mark.parametrize(
    ("sasl", "mechanism", "username", "password"),
    [
        pytest.param(PLAIN, "PLAIN", PLAIN[1], PLAIN[2], id="plain"),
        pytest.param("ANONYMOUS", "ANONYMOUS", None, None, id="anonymous"),
        pytest.param(None, "none", None, None, id="no-sasl"),
    ],
)
def test_the_sasl_identity_reaches_the_application(
    amqp_server: AmqpServer, sasl, mechanism: str, username, password
) -> None:
    with amqp_server.ready(sasl, "dps/registrations/dev-1") as client:
        answer = _echo(client, b'{"registrationId":"dev-1"}')
    assert answer.body == b'{"registrationId":"dev-1"}'
    assert answer.application_properties == {
        "address": "dps/registrations/dev-1",
        "mechanism": mechanism,
        "username": username,
        "password": password,
        "chain": 0,
        "size": 26,
    }
    assert answer.content_type == "application/json"


def test_external_is_offered_to_a_client_with_a_certificate(amqp_server: AmqpServer) -> None:
    identity = (amqp_server.pki.device_chain_file, amqp_server.pki.device_key_file)
    with amqp_server.ready("EXTERNAL", identity=identity) as client:
        assert client.mechanisms[0] == "EXTERNAL"
        answer = _echo(client)
    assert answer.application_properties["mechanism"] == "EXTERNAL"
    assert answer.application_properties["chain"] == 2  # leaf and intermediate


def test_a_client_with_a_certificate_may_skip_sasl(amqp_server: AmqpServer) -> None:
    identity = (amqp_server.pki.device_chain_file, amqp_server.pki.device_key_file)
    with amqp_server.ready(None, identity=identity) as client:
        answer = _echo(client)
    assert (answer.application_properties["mechanism"], answer.application_properties["chain"]) == (
        "none",
        2,
    )


@pytest.mark.parametrize(
    "sasl",
    [
        pytest.param("EXTERNAL", id="external-without-certificate"),
        pytest.param("CRAM-MD5", id="unoffered"),
        pytest.param(("PLAIN", "a\0b", "c"), id="plain-three-nuls"),
    ],
)
def test_a_refused_sasl_init_gets_outcome_auth_and_a_close(amqp_server: AmqpServer, sasl) -> None:
    with pytest.raises(ServerClosed, match="SASL outcome 1"):
        amqp_server.connect(sasl)


def test_the_open_answer(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        answer = client.open()
    assert (answer.container_id, answer.channel_max, answer.max_frame_size) == (
        "devprov",
        CHANNEL_MAX,
        MAX_FRAME_SIZE,
    )
    assert answer.idle_time_out == int(TEST_POLICY.keep_alive_timeout * 1000)
    with amqp_server.connect(PLAIN) as client:
        assert client.open(max_frame_size=1024).max_frame_size == 1024


def test_links_are_answered_with_the_mirrored_role(amqp_server: AmqpServer) -> None:
    properties = {"com.microsoft:api-version": "2019-03-31"}
    with amqp_server.connect(PLAIN) as client:
        client.open()
        begin = client.begin()
        assert begin.remote_channel == 0
        receiving = client.attach_receiver("dps/x", properties, credit=0)
        sending = client.attach_sender("dps/x", properties)
        credit = client.expect(Flow)
    assert isinstance(receiving, Attach)
    assert (receiving.role, receiving.source.address, receiving.initial_delivery_count) == (
        False,
        "dps/x",
        0,
    )
    assert isinstance(sending, Attach)
    assert (sending.role, sending.target.address, sending.max_message_size) == (
        True,
        "dps/x",
        MAX_MESSAGE_BYTES,
    )
    assert (credit.handle, credit.link_credit, credit.delivery_count) == (
        sending.handle,
        LINK_CREDIT,
        0,
    )
    seen = [
        (link.address, link.role, dict(link.properties))
        for _, link, _ in amqp_server.seen.attaches[-2:]
    ]
    assert seen == [("dps/x", Role.RECEIVER, properties), ("dps/x", Role.SENDER, properties)]


def test_a_refused_link_is_detached_with_the_error(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.open()
        client.begin()
        refused = client.attach_receiver("refused/dev")
        assert refused == Detach(
            handle=0,
            closed=True,
            error=AmqpError("amqp:unauthorized-access", '{"errorCode":401002}'),
        )
        client.send_frame(Detach(handle=0, closed=True))  # the client's answer is taken quietly
        client.attach_receiver("echo")
        client.attach_sender("echo")
        _echo(client)


def test_a_link_without_an_address_is_refused(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.open()
        client.begin()
        refused = client.attach_receiver("")
    assert isinstance(refused, Detach)
    assert refused.error is not None and refused.error.condition == "amqp:invalid-field"


def test_a_rejected_message_is_settled_rejected(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        outcome = client.send(Message(b"{}", {"op": "reject"}))
        assert outcome == Rejected(error=ANSWER_ERROR)
        _echo(client)  # the connection goes on


def test_an_answer_without_message_is_only_accepted(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        assert client.send(Message(b"", {"op": "silent"})) == Accepted()
        answer = _echo(client, b"next")
    assert answer.body == b"next"  # the first request had no answer


def test_a_message_sent_settled_gets_no_disposition_but_its_answer(amqp_server: AmqpServer):
    with amqp_server.ready(PLAIN) as client:
        assert client.send(Message(b"settled", correlation_id="s"), settled=True) is None
        answer = client.receive()
        assert answer.correlation_id == "s"
        assert not [f for f in client.pending if isinstance(f.body, Disposition)]


def test_the_answer_waits_for_credit(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.open()
        client.begin()
        client.attach_receiver("echo", credit=0)
        client.attach_sender("echo")
        assert client.send(Message(b"held", correlation_id="h")) == Accepted()
        with pytest.raises(TimeoutError):
            client.receive(timeout=0.3)
        client.flow("echo", 1)
        assert client.receive().correlation_id == "h"
        assert client.send(Message(b"again")) == Accepted()
        with pytest.raises(TimeoutError):  # the one credit was used
            client.receive(timeout=0.3)
        client.flow("echo", 1, delivery_count=1)
        assert client.receive().body == b"again"


@pytest.mark.parametrize(
    ("mode", "settled"),
    [(SND_SETTLED, True), (0, False), (2, False)],
    ids=["settled", "unsettled", "mixed"],
)
def test_answers_are_sent_as_the_receiver_asked(amqp_server: AmqpServer, mode: int, settled: bool):
    with amqp_server.connect(PLAIN) as client:
        client.open()
        client.begin()
        assert client.attach_receiver("echo", snd_settle_mode=mode).snd_settle_mode == mode
        client.attach_sender("echo")
        _echo(client)
        assert client.last_transfer.settled is settled


def test_delivery_ids_and_counts_advance(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        ids = []
        for _ in range(3):
            _echo(client)
            ids.append(client.last_transfer.delivery_id)
        client.flow("echo", 5, delivery_count=3, echo=True)
        flow = client.expect(Flow)
    assert ids == [0, 1, 2]
    assert (flow.delivery_count, flow.link_credit) == (3, 5)


def test_drain_spends_the_credit_left(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        client.flow("echo", 4, drain=True)
        flow = client.expect(Flow)
    assert (flow.delivery_count, flow.link_credit, flow.drain) == (4, 0, True)


def test_a_message_in_many_transfers_is_reassembled(amqp_server: AmqpServer) -> None:
    body = bytes(range(256)) * 300
    with amqp_server.ready(PLAIN) as client:
        client.send(Message(body, correlation_id="big"), frame_payload=1000)
        assert client.receive().body == body


def test_an_answer_larger_than_the_clients_frames_is_split(amqp_server: AmqpServer) -> None:
    body = b"x" * 3000
    with amqp_server.connect(PLAIN) as client:
        client.open(max_frame_size=512)
        client.begin()
        client.attach_receiver("echo")
        client.attach_sender("echo")
        client.send(Message(body), frame_payload=400)
        assert client.receive().body == body


def test_the_largest_message_dps_takes_is_served(amqp_server: AmqpServer) -> None:
    body = b"p" * (96 * 1024)
    with amqp_server.ready(PLAIN) as client:
        assert _echo(client, body).body == body


def test_an_oversized_message_detaches_its_link(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        # Three transfers: the second passes the limit, the third is in flight after the detach.
        client.transfer(b"\x00\x53\x75\xb0" + b"x" * (MAX_MESSAGE_BYTES + 20000), size=50000)
        detach = client.expect(Detach)
        assert detach.error is not None
        assert detach.error.condition == "amqp:link:message-size-exceeded"
        client.send_frame(Detach(handle=1, closed=True))
        client.attach_sender("echo2")
        client.attach_receiver("echo2")
        assert client.send(Message(b"small"), address="echo2") == Accepted()


def test_client_end_detach_and_close_are_answered(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        client.send_frame(Detach(handle=0, closed=True))
        assert client.expect(Detach).closed is True
        client.send_frame(End())
        assert client.expect(End).error is None
        assert client.close().error is None
        assert client.closed_by_server()


def test_an_application_failure_closes_with_internal_error(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        client.transfer(encode_message(Message(b"", {"op": "fail"})))
        error = client.expect_close()
    assert error == AmqpError("amqp:internal-error", "internal error")


def test_empty_frames_are_sent_at_half_the_clients_idle_time_out(amqp_server: AmqpServer):
    with amqp_server.connect(PLAIN) as client:
        client.open(idle_time_out=1000)
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            client.send_raw(b"\x00\x00\x00\x08\x02\x00\x00\x00")  # ours keep it open
            with pytest.raises(TimeoutError):
                client.read_frame(timeout=0.4)
        assert client.heartbeats >= 2


def test_a_silent_client_is_closed_after_the_idle_time_out(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.open()
        started = time.monotonic()
        error = client.expect_close(timeout=TEST_POLICY.keep_alive_timeout + 5)
        waited = time.monotonic() - started
    assert error == AmqpError("amqp:resource-limit-exceeded", "idle timeout")
    assert waited >= TEST_POLICY.keep_alive_timeout * 0.9


def test_a_client_that_never_opens_is_closed(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        started = time.monotonic()
        error = client.expect_close(timeout=TEST_POLICY.head_timeout + 5)
        assert time.monotonic() - started >= TEST_POLICY.head_timeout * 0.5
    assert error is not None and error.condition == "amqp:resource-limit-exceeded"


def test_shutting_down_finishes_the_request_at_work(amqp_pki) -> None:
    server = start_server(amqp_pki)
    try:
        with server.ready(PLAIN) as busy, server.ready(PLAIN) as idle:
            sleeping = Message(b"", {"op": "sleep", "seconds": "0.5"}, correlation_id="s")
            busy.transfer(encode_message(sleeping))
            server.request_seen("s")  # the request is at work
            closing = asyncio.run_coroutine_threadsafe(server.server.close(), server.loop)
            forced = AmqpError("amqp:connection:forced", "the server is stopping")
            assert idle.expect_close() == forced
            assert busy.receive().correlation_id == "s"
            assert busy.expect_close() == forced
            closing.result(30)
    finally:
        stop_server(server)


def test_a_reply_with_no_receiving_link_is_dropped(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.open()
        client.begin()
        client.attach_sender("echo")
        assert client.send(Message(b"nobody listens")) == Accepted()
        client.attach_receiver("echo")
        assert _echo(client, b"now").body == b"now"


def test_an_aborted_delivery_is_dropped(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        requests = len(amqp_server.seen.requests)
        for delivery_id in range(LINK_CREDIT + 2):  # more than the credit: each is counted
            first = Transfer(handle=1, delivery_id=delivery_id, delivery_tag=b"a", more=True)
            client.send_frame(first, payload=b"\x00\x53\x75")
            client.send_frame(Transfer(handle=1, aborted=True))
        assert _echo(client, b"after").body == b"after"
    assert len(amqp_server.seen.requests) == requests + 1


def test_a_session_flow_is_echoed(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        client.send_frame(
            Flow(incoming_window=100, next_outgoing_id=0, outgoing_window=100, echo=True)
        )
        flow = client.expect(Flow)
    assert (flow.handle, flow.link_credit, flow.next_incoming_id) == (None, None, 0)


def test_only_the_sessions_a_client_allows_are_begun(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.send_frame(Open(container_id="c", channel_max=0))
        client.expect(Open)
        client.begin()
        client.send_frame(Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=1), 1)
        error = client.expect_close()
    assert error == AmqpError("amqp:not-allowed", "no channel left for another session")


def test_a_message_devprov_does_not_take_is_rejected(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        client.transfer(b"\x00\x53\x76\x45")  # an amqp-sequence body
        state = client.expect(Disposition).state
        assert isinstance(state, Rejected) and state.error is not None
        assert state.error.condition == "amqp:decode-error"
        client.transfer(b"\x40", settled=True)  # sent settled: dropped without a word
        _echo(client)


def test_the_answer_waits_for_the_clients_session_window(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.open()
        client.send_frame(Begin(next_outgoing_id=0, incoming_window=0, outgoing_window=9))
        client.expect(Begin)
        client.attach_receiver("echo", credit=0)
        client.flow("echo", 10, incoming_window=0)  # credit, but no room in the session
        client.attach_sender("echo")
        assert client.send(Message(b"windowed")) == Accepted()
        with pytest.raises(TimeoutError):
            client.receive(timeout=0.3)
        client.send_frame(
            Flow(next_incoming_id=0, incoming_window=10, next_outgoing_id=1, outgoing_window=9)
        )
        assert client.receive().body == b"windowed"

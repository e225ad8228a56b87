"""Server-side TLS for every endpoint (HTTPS, MQTT): the pyOpenSSL context and one connection's
TLS.

Devices authenticate with X.509 client certificates that may be self-signed or issued through
intermediates the server has never seen, and the set of trusted certificates changes while the
server runs (enrollments and CA uploads). Python's ``ssl`` cannot serve that: it has no verify
callback, and with ``CERT_OPTIONAL`` an unknown self-signed client certificate aborts the
handshake. pyOpenSSL can, and measured on the development machine it also costs about half the
server CPU per mutual-TLS handshake of ``ssl`` with asyncio.

So TLS only *collects* the client's certificates: the context requests one, accepts whatever is
presented (or nothing), and :class:`TlsSession` hands the presented chain, leaf first, to the
protocol above (HTTP, MQTT). The application validates it later, against the trust store of the
moment, with ``cryptography.x509.verification`` (see ``devprov.core``); a failed validation is then an
authentication error the device can read, instead of a handshake alert it cannot.

:class:`TlsSession` runs one connection over memory BIOs so that the asyncio protocol in
``devprov.http.connection`` (or ``devprov.transport.stream``) owns the socket and no thread is
spent per connection.

:class:`TlsContexts` bounds the memory of OpenSSL's session cache (see
``SESSION_CACHE_BYTES``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from OpenSSL import SSL
from OpenSSL.crypto import X509

logger = logging.getLogger(__name__)

# TLS 1.2 suites: forward secret AEAD only (Mozilla "intermediate"), ECDSA and RSA server keys.
# TLS 1.2 stays because the Azure IoT Python device SDK negotiates nothing newer; TLS 1.3 keeps
# OpenSSL's default suites.
TLS12_CIPHERS = b":".join(
    (
        b"ECDHE-ECDSA-AES128-GCM-SHA256",
        b"ECDHE-RSA-AES128-GCM-SHA256",
        b"ECDHE-ECDSA-AES256-GCM-SHA384",
        b"ECDHE-RSA-AES256-GCM-SHA384",
        b"ECDHE-ECDSA-CHACHA20-POLY1305",
        b"ECDHE-RSA-CHACHA20-POLY1305",
    )
)

ALPN_HTTP11 = b"http/1.1"

# OpenSSL refuses to resume a session on a context that requests client certificates unless
# the context names itself (SSL_R_SESSION_ID_CONTEXT_UNINITIALIZED fails the handshake).
SESSION_ID_CONTEXT = b"devprov"

# Resumed sessions skip the certificate exchange, so the chain must come from the session.
# OpenSSL keeps the peer's intermediates only in the server's in-memory session cache: a session
# restored from a ticket has the leaf but get_peer_cert_chain() returns None (measured with
# OpenSSL 4.0.3, TLS 1.2 and 1.3). Tickets are therefore off and resumption is stateful, in
# OpenSSL's cache (default size 20480 sessions; pyOpenSSL cannot change it). Resuming stays safe
# while trust changes, since the application validates the chain on every request.
SESSION_TIMEOUT_SECONDS = 300

# Which sessions stay in that cache: OpenSSL removes a session when its connection is freed
# before the server sent close_notify (ssl_clear_bad_session) and on any fatal alert (RFC 5246
# 7.2 requires that). :meth:`TlsSession.close` sends close_notify, and the HTTPS server calls it
# whenever it closes a connection TLS has not failed on, and in answer to the client's
# close_notify, so both ends keep the session. A client that drops TCP without close_notify, a
# premature close, loses it on purpose: RFC 9112 9.8 requires clients to send close_notify, and
# RFC 2818 2.2 (obsoleted by RFC 9110) forbade reusing a session closed without one. RFC 5246
# 7.2.1 would allow resuming it; OpenSSL's default is kept.

# The cache's memory is bounded here, since OpenSSL's bound is a count, not bytes. A cached
# session holds the client's parsed chain: measured with bench/session_cache.py, about 12 KB for
# a session whose chain is 855 bytes of DER and 209 KB for one of 90 KB, so the default entry
# limit of 20,480 sessions let a client presenting large chains pin about 4 GB. pyOpenSSL can
# set neither the cache's size nor flush it, but a cache belongs to its SSL context and dies
# with it. So :class:`TlsContexts` estimates what each handshake adds (SESSION_BASE_BYTES plus
# SESSION_BYTES_PER_CHAIN_BYTE per byte of the presented chain), and when the current context
# has taken half of SESSION_CACHE_BYTES it starts a fresh context; the server then retires the
# connections of the older one (each finishes its current request and closes), so the old
# context and its cache are freed within one request's time. Two generations at most are alive:
# the cache stays under SESSION_CACHE_BYTES (estimated). The cost: sessions of the old generation
# no longer resume, and their clients make a full handshake once.
SESSION_CACHE_BYTES = 64 * 1024 * 1024
SESSION_BASE_BYTES = 12 * 1024
SESSION_BYTES_PER_CHAIN_BYTE = 2.5

# Bytes moved per BIO call; a TLS record is at most 16 KiB plus overhead, so one call usually
# drains everything the socket delivered.
BIO_CHUNK = 65536


class TlsError(Exception):
    """The peer broke TLS (bad handshake, bad record, plaintext on a TLS port)."""


def build_server_context(
    certificate_chain_file: Path,
    private_key_file: Path,
    *,
    request_client_certificate: bool = True,
) -> SSL.Context:
    """A TLS 1.2/1.3 server context that requests, but does not verify, client certificates.

    ``certificate_chain_file`` holds the server certificate followed by its intermediates (PEM).
    With ``request_client_certificate`` the server sends a CertificateRequest and accepts any
    chain or none (no VERIFY_FAIL_IF_NO_PEER_CERT): validation is the application's job, see
    the module docstring. Raises ``OpenSSL.SSL.Error`` if the files are unreadable or the key
    does not match the certificate.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.use_certificate_chain_file(str(certificate_chain_file))
    context.use_privatekey_file(str(private_key_file))
    _configure(context, request_client_certificate=request_client_certificate)
    return context


def _configure(context: SSL.Context, *, request_client_certificate: bool) -> None:
    """Everything of a server context but its certificate and key, which are set already."""
    context.check_privatekey()
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(TLS12_CIPHERS)
    # Renegotiation could swap the client certificate after the chain was handed to the app,
    # and client-initiated renegotiation is a cheap way to burn server CPU. No tickets: see
    # SESSION_TIMEOUT_SECONDS.
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    # OpenSSL keeps a connection's read and write record buffers (about 17 KiB each) for its
    # whole life unless told to free them when empty. Most connections are idle devices (MQTT
    # keeps them open for hours), so free them: 24 KiB less per idle connection, measured in
    # docs/performance.md#memory-per-idle-connection.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.set_alpn_select_callback(_select_alpn)
    context.set_timeout(SESSION_TIMEOUT_SECONDS)
    if request_client_certificate:
        context.set_verify(SSL.VERIFY_PEER, _accept_any_certificate)
        context.set_session_id(SESSION_ID_CONTEXT)


class TlsContexts:
    """The server's SSL contexts: the current one, replaced by a fresh one as its session cache
    fills (see SESSION_CACHE_BYTES).

    ``build`` makes a context; :attr:`generation` counts the contexts made. A server opens each
    new connection on :attr:`context`, reports each finished handshake to :meth:`charge`, and
    retires the connections of older generations when :meth:`charge` returns True.
    """

    def __init__(
        self,
        build: Callable[[], SSL.Context],
        *,
        session_cache_bytes: int | None = SESSION_CACHE_BYTES,
    ) -> None:
        self._build = build
        # Each generation may take half: the current one fills while the previous one drains.
        self._budget = None if session_cache_bytes is None else session_cache_bytes // 2
        self._spent = 0
        self.context = build()
        self.generation = 0

    @classmethod
    def fixed(cls, context: SSL.Context) -> TlsContexts:
        """One context for ever: its session cache is bounded only by OpenSSL's entry limit."""
        return cls(lambda: context, session_cache_bytes=None)

    def charge(self, generation: int, chain_bytes: int) -> bool:
        """A handshake finished on a context of ``generation`` with a client chain of
        ``chain_bytes`` (DER, 0 for none). True if that started a fresh context."""
        if self._budget is None or generation != self.generation:
            return False
        self._spent += SESSION_BASE_BYTES + int(chain_bytes * SESSION_BYTES_PER_CHAIN_BYTE)
        if self._spent < self._budget:
            return False
        self.context = self._build()
        self.generation += 1
        self._spent = 0
        return True


def server_contexts(
    certificate_chain_file: Path,
    private_key_file: Path,
    *,
    request_client_certificate: bool = True,
    session_cache_bytes: int = SESSION_CACHE_BYTES,
) -> TlsContexts:
    """:class:`TlsContexts` of :func:`build_server_context` contexts, the session cache bounded.

    The files are read once, when this is called (with build_server_context's errors); fresh
    contexts are built from the certificates and key then read, never from the files again.
    """
    first = build_server_context(
        certificate_chain_file,
        private_key_file,
        request_client_certificate=request_client_certificate,
    )
    chain = x509.load_pem_x509_certificates(certificate_chain_file.read_bytes())
    key = load_pem_private_key(private_key_file.read_bytes(), None)
    contexts = [first]

    def build() -> SSL.Context:
        if contexts:
            return contexts.pop()
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.use_certificate(chain[0])
        for certificate in chain[1:]:
            context.add_extra_chain_cert(certificate)
        context.use_privatekey(key)  # type: ignore[arg-type]  # any key type OpenSSL takes
        _configure(context, request_client_certificate=request_client_certificate)
        return context

    return TlsContexts(build, session_cache_bytes=session_cache_bytes)


def _accept_any_certificate(
    connection: SSL.Connection, certificate: X509, error: int, depth: int, ok: int
) -> bool:
    # Accept-all on purpose: an unknown issuer or a self-signed leaf is normal for a device
    # here, and trust is decided by the application after the handshake (module docstring).
    return True


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> Any:
    # Only HTTP/1.1 is spoken; a client offering just h2 gets no ALPN answer and may go on.
    # (Any: pyOpenSSL's sentinel type for "no overlap" is private.)
    return ALPN_HTTP11 if ALPN_HTTP11 in offered else SSL.NO_OVERLAPPING_PROTOCOLS


class TlsSession:
    """The server side of one TLS connection over memory BIOs.

    Feed it what the socket delivered (:meth:`receive`), drive :meth:`handshake` until it returns
    True, then :meth:`read` plaintext and :meth:`write` replies. After every call, send
    :meth:`outgoing` to the socket. Every OpenSSL failure surfaces as :class:`TlsError`.
    """

    __slots__ = ("_connection", "_extension", "handshake_complete")

    def __init__(self, context: SSL.Context) -> None:
        self._connection = SSL.Connection(context, None)
        self._connection.set_accept_state()
        self.handshake_complete = False
        self._extension: dict[str, Any] | None = None

    def receive(self, data: bytes) -> None:
        """Queue bytes read from the socket."""
        self._connection.bio_write(data)

    def handshake(self) -> bool:
        """Advance the handshake; True once it is complete. Raises :class:`TlsError`."""
        try:
            self._connection.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as exc:
            raise TlsError(f"TLS handshake failed: {exc}") from exc
        self.handshake_complete = True
        return True

    def read(self) -> tuple[bytes, bool]:
        """All plaintext decryptable now, and whether the peer sent close_notify."""
        chunks: list[bytes] = []
        closed = False
        recv = self._connection.recv
        while True:
            try:
                chunks.append(recv(BIO_CHUNK))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                closed = True
                break
            except SSL.Error as exc:
                raise TlsError(f"TLS record rejected: {exc}") from exc
        if len(chunks) == 1:
            return chunks[0], closed
        return b"".join(chunks), closed

    def write(self, data: bytes) -> None:
        """Encrypt ``data``; a memory BIO never blocks, so it is written whole."""
        try:
            self._connection.sendall(data)
        except SSL.Error as exc:
            raise TlsError(f"TLS write failed: {exc}") from exc

    def outgoing(self) -> bytes:
        """Everything OpenSSL has queued for the socket (records, alerts), or b""."""
        chunks: list[bytes] = []
        bio_read = self._connection.bio_read
        while True:
            try:
                chunks.append(bio_read(BIO_CHUNK))
            except SSL.WantReadError:
                break
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def close(self) -> None:
        """Queue close_notify (RFC 8446 6.1), which also keeps the session cached.

        Also the answer to the peer's close_notify, once :meth:`read` reported one.
        """
        try:
            self._connection.shutdown()
        except SSL.Error:
            logger.debug("TLS shutdown failed", exc_info=True)

    def extension(self) -> dict[str, Any]:
        """The ASGI ``tls`` scope extension for this connection, computed once per connection.

        Follows the ASGI TLS extension, except that ``cipher_suite`` is OpenSSL's name, and adds
        ``devprov.client_chain_der``: the presented chain as DER, leaf first.
        """
        if self._extension is None:
            chain = self.peer_chain()
            self._extension = {
                "server_cert": None,
                "client_cert_chain": [c.public_bytes(Encoding.PEM).decode("ascii") for c in chain],
                "client_cert_name": chain[0].subject.rfc4514_string() if chain else None,
                "client_cert_error": None,
                "tls_version": self._connection.get_protocol_version(),
                "cipher_suite": self._connection.get_cipher_name(),
                "devprov.client_chain_der": [c.public_bytes(Encoding.DER) for c in chain],
            }
        return self._extension

    def peer_chain(self) -> list[x509.Certificate]:
        """The client's certificates as presented, leaf first; empty if it sent none."""
        leaf = self._connection.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            return []
        # On the server OpenSSL's list leaves the leaf out (OpenSSL 4.0.3 measured; its docs say
        # the same), while client-side lists start with it: drop a leading copy either way.
        rest = self._connection.get_peer_cert_chain(as_cryptography=True) or []
        if rest and rest[0] == leaf:
            rest = rest[1:]
        return [leaf, *rest]

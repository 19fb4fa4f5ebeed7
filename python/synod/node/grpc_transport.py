"""Peer links over gRPC with mutual TLS: one bidirectional stream per member pair.

The member with the lower id dials, the higher one serves; both directions of
the stream carry signed envelopes as opaque bytes. Every connection is
checked twice: by TLS (the committee CA is the only root, client certificates
are required) and by this module: on the serving side the client certificate
must name a member (SAN ``synod-member:<id>``) whose manifest fingerprint it
matches; on the dialing side the server's certificate must be the one the
manifest lists (see `server_certificate`: gRPC Python does not show a client the
server's certificate, so the dialer fetches it once in a TLS handshake of its
own, checks its fingerprint, and then gives gRPC that certificate as the only
trust anchor of the channel), TLS verifies the name ``member-<id>.synod``, and
the server's first frame must announce the same member and epoch. Every
envelope on a stream must be signed as the member the stream is authenticated
for, else it is dropped (``peer_mismatch``).

Everything runs on one asyncio event loop in one thread (no thread per peer or
per message). `send` and `receive` are called from the node's own thread:
per-peer send queues and receive buffers are bounded; every drop and every
refused connection is counted by reason in `counters`. Lost links are redialled
with exponential backoff and jitter; frames queued meanwhile are kept (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import random
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError

from synod.node.manifest import Endpoint, Manifest
from synod.node.pki import PkiError, Role, cert_from_pem, identify, member_dns_name
from synod.node.pki import peer_certificate as _peer_certificate
from synod.node.proto import peer_pb2
from synod.protocols.envelope import Envelope, EnvelopeError

log = logging.getLogger("synod.node.transport")

LINK_METHOD = "/synod.node.peer.Peer/Link"
FRAME_OVERHEAD = 64  # protobuf framing around an envelope
CONTROL_THREADS = 4  # threads that run the services' (blocking) handlers


class Drop(enum.StrEnum):
    """Why a frame was not delivered."""

    SEND_QUEUE_FULL = "send_queue_full"
    RECV_QUEUE_FULL = "recv_queue_full"
    OVERSIZE = "oversize"
    PEER_MISMATCH = "peer_mismatch"
    UNKNOWN_PEER = "unknown_peer"
    MALFORMED = "malformed"


class Refused(enum.StrEnum):
    """Why a connection was refused (counted as ``refused_<reason>``)."""

    NO_CERTIFICATE = "no_certificate"
    BAD_CERTIFICATE = "bad_certificate"  # not from the committee CA, or no member id
    NOT_A_MEMBER = "not_a_member"  # e.g. the operator certificate
    UNKNOWN_MEMBER = "unknown_member"
    FINGERPRINT = "fingerprint"  # a CA-issued certificate the manifest does not list (either side)
    DIRECTION = "direction"  # only a lower id dials a higher one
    HELLO = "hello"  # the served side announced another member or epoch
    TLS = "tls"  # our dial failed in the TLS handshake (peer not from our CA)


class _Undecodable:
    """A frame that was not parsed."""


_OVERSIZE = _Undecodable()
_MALFORMED = _Undecodable()


class PeerState(enum.StrEnum):
    DOWN = "down"
    CONNECTING = "connecting"
    CONNECTED = "connected"


STOP_STEP_S = 5.0  # the longest one step of stopping a transport may take


@dataclass(frozen=True)
class Limits:
    max_message: int = 4 << 20  # bytes of one envelope, both directions
    send_queue: int = 4096  # frames per peer
    recv_queue: int = 4096  # frames per peer
    send_queue_bytes: int = 32 << 20  # bytes per peer
    recv_queue_bytes: int = 32 << 20  # bytes per peer
    link_delay: float = 0.0  # seconds added to every frame sent (emulated latency; benchmarks)
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    hello_timeout: float = 10.0
    keepalive: float = 10.0  # seconds between HTTP/2 pings on an idle link


@dataclass(frozen=True)
class TlsMaterial:
    """This member's TLS key and certificate and the committee CA (PEM)."""

    key_pem: bytes = field(repr=False)
    cert_pem: bytes
    ca_pem: bytes


@dataclass
class _Peer:
    member_id: int
    outbox: deque[tuple[float, bytes]] = field(default_factory=deque)  # (due, frame)
    inbox: deque[bytes] = field(default_factory=deque)
    outbox_bytes: int = 0
    inbox_bytes: int = 0
    state: PeerState = PeerState.DOWN
    wake: asyncio.Event | None = None
    link: asyncio.Task[None] | None = None  # the stream currently carrying this link
    evict: asyncio.Event | None = None  # set to end that stream (a newer one replaces it)
    links: int = 0  # streams established so far
    pinned: bytes | None = None  # dialing side: the member's manifest-listed certificate (PEM)


class GrpcTransport:
    """The peer transport of one member (implements `synod.node.transport.Transport`)."""

    def __init__(
        self,
        manifest: Manifest,
        me: int,
        tls: TlsMaterial,
        limits: Limits | None = None,
        services: Sequence[Callable[[Any], None]] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.manifest = manifest
        self.me = me
        self.endpoint = manifest.member(me).endpoint
        self.limits = limits or Limits()
        self._tls = tls
        self._ca = cert_from_pem(tls.ca_pem)
        self._services = tuple(services)
        self._rng = rng or random.SystemRandom()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._counters: Counter[str] = Counter()
        self._peers = {m: _Peer(m) for m in manifest.ids if m != me}
        self._order = sorted(self._peers)
        self._rr = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- the node's side -----------------------------------------------------
    def send(self, to: int, data: bytes, kind: str = "") -> None:
        peer = self._peers.get(to)
        if peer is None:
            self._count(Drop.UNKNOWN_PEER)
            return
        if len(data) > self.limits.max_message:
            self._count(Drop.OVERSIZE)
            return
        with self._lock:
            if (
                len(peer.outbox) >= self.limits.send_queue
                or peer.outbox_bytes + len(data) > self.limits.send_queue_bytes
            ):
                self._counters[Drop.SEND_QUEUE_FULL] += 1
                return
            was_empty = not peer.outbox
            peer.outbox.append((time.monotonic() + self.limits.link_delay, bytes(data)))
            peer.outbox_bytes += len(data)
        if was_empty and self._loop is not None and peer.wake is not None:
            with contextlib.suppress(RuntimeError):  # loop closed while stopping
                self._loop.call_soon_threadsafe(peer.wake.set)

    def receive(self, timeout: float) -> list[tuple[int, bytes]]:
        """Frames received so far (member id, bytes), fairly interleaved; waits up to `timeout`."""
        with self._ready:
            if not any(p.inbox for p in self._peers.values()):
                self._ready.wait(timeout)
            out: list[tuple[int, bytes]] = []
            budget = self.limits.recv_queue
            while budget > 0:
                took = False
                for _ in range(len(self._order)):
                    peer = self._peers[self._order[self._rr]]
                    self._rr = (self._rr + 1) % len(self._order)
                    if peer.inbox:
                        data = peer.inbox.popleft()
                        peer.inbox_bytes -= len(data)
                        out.append((peer.member_id, data))
                        budget -= 1
                        took = True
                if not took:
                    break
            return out

    @property
    def counters(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counters)

    def peers(self) -> dict[int, PeerState]:
        with self._lock:
            return {m: p.state for m, p in self._peers.items()}

    def links(self) -> dict[int, int]:
        """How many streams each link has had (reconnects show as more than one)."""
        with self._lock:
            return {m: p.links for m, p in self._peers.items()}

    # -- lifecycle -----------------------------------------------------------
    def add_service(self, add: Callable[[Any], None]) -> None:
        """Serve another gRPC service on the same port (called with the server before start)."""
        if self._thread is not None:
            raise RuntimeError("add services before the transport starts")
        self._services = (*self._services, add)

    def start(self) -> None:
        """Bind the server and start dialling; raises if the endpoint cannot be bound."""
        if self._thread is not None:
            raise RuntimeError("transport already started")
        self._thread = threading.Thread(target=self._run, name="synod-transport", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise self._start_error

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._stopping is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout=4 * STOP_STEP_S)
        if thread.is_alive():  # a daemon thread: it cannot keep the process up
            log.warning("member %d: transport thread still running after stop", self.me)
        self._thread = None
        with self._ready:
            self._ready.notify_all()

    # -- the loop thread -----------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as err:  # bind failure, reported by start()
            if not self._started.is_set():
                self._start_error = err
                self._started.set()
            else:
                log.exception("transport loop failed")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    def _decode(self, data: bytes) -> Any:
        """Parse a frame; one over the limit is not parsed (`_inbound` counts it)."""
        if len(data) > self.limits.max_message + FRAME_OVERHEAD:
            return _OVERSIZE
        try:
            return peer_pb2.Frame.FromString(data)
        except DecodeError:
            return _MALFORMED

    def _options(self) -> list[tuple[str, Any]]:
        # gRPC itself cuts a stream at twice the limit; up to that, an oversize frame is
        # dropped and counted by `_decode` and the stream goes on.
        size = 2 * (self.limits.max_message + FRAME_OVERHEAD)
        return [
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            ("grpc.keepalive_time_ms", int(self.limits.keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.limits.keepalive * 500) + 1),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # the serving side must accept the dialer's keepalive pings (its default of one
            # per 5 minutes answers a 10 s keepalive with GOAWAY "too_many_pings")
            ("grpc.http2.min_ping_interval_without_data_ms", int(self.limits.keepalive * 500)),
            ("grpc.so_reuseport", 0),
        ]

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        for peer in self._peers.values():
            peer.wake = asyncio.Event()
            if peer.outbox:
                peer.wake.set()
        if self._services:
            self._pool = ThreadPoolExecutor(
                max_workers=CONTROL_THREADS, thread_name_prefix="synod-control"
            )
        server = grpc.aio.server(
            options=[*self._options(), ("grpc.max_concurrent_streams", 4 * len(self._peers) + 16)],
            migration_thread_pool=self._pool,
            maximum_concurrent_rpcs=4 * len(self._peers) + 64,
        )
        handler = grpc.stream_stream_rpc_method_handler(
            self._serve_link,
            request_deserializer=self._decode,
            response_serializer=peer_pb2.Frame.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("synod.node.peer.Peer", {"Link": handler}),)
        )
        for add in self._services:
            add(server)
        creds = grpc.ssl_server_credentials(
            [(self._tls.key_pem, self._tls.cert_pem)],
            root_certificates=self._tls.ca_pem,
            require_client_auth=True,
        )
        address = f"{self.endpoint.host}:{self.endpoint.port}"
        try:
            bound = server.add_secure_port(address, creds)
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(f"cannot listen on {address} (address in use?)")
        await server.start()
        dialers = [
            asyncio.create_task(self._dial(p)) for m, p in self._peers.items() if m > self.me
        ]
        self._started.set()
        log.info("member %d listening on %s", self.me, address)
        await self._stopping.wait()
        for task in dialers:
            task.cancel()
        for peer in self._peers.values():
            if peer.link is not None:
                peer.link.cancel()
        # Every step of the shutdown is bounded: a stream that does not end when cancelled
        # (seen under load: a link's reader never returned) must not keep the member up.
        if dialers:
            await asyncio.wait(dialers, timeout=STOP_STEP_S)
        try:
            await asyncio.wait_for(server.stop(0.2), STOP_STEP_S)
        except TimeoutError:
            log.warning("member %d: gRPC server did not stop in %.0f s", self.me, STOP_STEP_S)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _count(self, reason: str) -> None:
        with self._lock:
            self._counters[reason] += 1

    def _refuse(self, reason: Refused, detail: str) -> None:
        self._count(f"refused_{reason.value}")
        log.warning("member %d refused a connection: %s (%s)", self.me, reason.value, detail)

    def _set_state(self, peer: _Peer, state: PeerState) -> None:
        with self._lock:
            if state is PeerState.CONNECTED:
                peer.links += 1
            peer.state = state

    # -- inbound frames ------------------------------------------------------
    def _inbound(self, peer: _Peer, frame: Any) -> None:
        if frame is _OVERSIZE:
            self._count(Drop.OVERSIZE)
            return
        if frame is _MALFORMED or frame.WhichOneof("body") != "envelope":
            self._count(Drop.MALFORMED)
            return
        data: bytes = frame.envelope
        try:
            sender = Envelope.from_bytes(data).sender
        except EnvelopeError:
            self._count(Drop.MALFORMED)
            return
        if sender != peer.member_id:
            self._count(Drop.PEER_MISMATCH)
            return
        with self._ready:
            if (
                len(peer.inbox) >= self.limits.recv_queue
                or peer.inbox_bytes + len(data) > self.limits.recv_queue_bytes
            ):
                self._counters[Drop.RECV_QUEUE_FULL] += 1
                return
            peer.inbox.append(data)
            peer.inbox_bytes += len(data)
            self._ready.notify()

    async def _pump(self, peer: _Peer, write: Callable[[Any], Awaitable[None]]) -> None:
        assert peer.wake is not None
        while True:
            await peer.wake.wait()
            peer.wake.clear()
            while True:
                with self._lock:
                    if not peer.outbox:
                        break
                    due = peer.outbox[0][0]
                wait = due - time.monotonic()
                if wait > 0:  # only with an emulated link delay
                    await asyncio.sleep(wait)
                with self._lock:
                    _, data = peer.outbox.popleft()
                    peer.outbox_bytes -= len(data)
                await write(peer_pb2.Frame(envelope=data))

    async def _carry(
        self,
        peer: _Peer,
        read: Callable[[], Awaitable[Any]],
        write: Callable[[Any], Awaitable[None]],
    ) -> None:
        """Run one established stream until it ends or is replaced."""
        if peer.evict is not None:
            # A newer stream replaces an older one (the peer restarted). The older one ends
            # by returning, which closes its call for the other side too; cancelling its task
            # would leave that side believing the link is up.
            peer.evict.set()
        current = asyncio.current_task()
        evict = asyncio.Event()
        peer.link, peer.evict = current, evict
        self._set_state(peer, PeerState.CONNECTED)
        assert peer.wake is not None
        peer.wake.set()  # flush what queued while the link was down
        pump = asyncio.create_task(self._pump(peer, write))
        reader = asyncio.create_task(self._read_all(peer, read))
        evicted = asyncio.create_task(evict.wait())
        try:  # the link ends when either direction ends, or a newer stream replaces it
            await asyncio.wait({pump, reader, evicted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if peer.link is current:
                peer.link, peer.evict = None, None
                self._set_state(peer, PeerState.DOWN)
            tasks: list[asyncio.Task[Any]] = [pump, reader, evicted]
            for task in tasks:
                task.cancel()
            ended, _ = await asyncio.wait(tasks, timeout=STOP_STEP_S)  # bounded: see _main
            for done in ended:
                err = None if done.cancelled() else done.exception()
                if isinstance(err, Exception) and not isinstance(err, grpc.aio.AioRpcError):
                    log.warning("member %d: link to %d failed: %r", self.me, peer.member_id, err)

    async def _read_all(self, peer: _Peer, read: Callable[[], Awaitable[Any]]) -> None:
        try:
            while True:
                frame = await read()
                if frame is grpc.aio.EOF:
                    return
                self._inbound(peer, frame)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                self._count(Drop.OVERSIZE)
            log.info("member %d: link to %d ended: %s", self.me, peer.member_id, err.code())

    # -- serving side ----------------------------------------------------------
    def _authenticate(self, context: Any) -> _Peer | None:
        cert = _peer_certificate(context.auth_context())
        if cert is None:
            self._refuse(Refused.NO_CERTIFICATE, "no client certificate")
            return None
        return self._check_member(cert)

    def _check_member(self, cert: x509.Certificate) -> _Peer | None:
        try:
            who = identify(cert, self._ca)
        except PkiError as err:
            self._refuse(Refused.BAD_CERTIFICATE, str(err))
            return None
        if who.role is not Role.MEMBER or who.member_id is None:
            self._refuse(Refused.NOT_A_MEMBER, f"{who.role.value} {who.name}")
            return None
        peer = self._peers.get(who.member_id)
        if peer is None:
            self._refuse(Refused.UNKNOWN_MEMBER, f"member {who.member_id}")
            return None
        if who.fingerprint != self.manifest.member(who.member_id).tls_fingerprint:
            self._refuse(Refused.FINGERPRINT, f"member {who.member_id}")
            return None
        if who.member_id > self.me:
            self._refuse(Refused.DIRECTION, f"member {who.member_id} dialled a lower id")
            return None
        return peer

    async def _serve_link(self, requests: Any, context: Any) -> None:
        peer = self._authenticate(context)
        if peer is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a committee member link")
            return
        await context.write(
            peer_pb2.Frame(hello=peer_pb2.Hello(member_id=self.me, epoch=self.manifest.epoch))
        )
        iterator = requests.__aiter__()

        async def read() -> Any:
            try:
                return await iterator.__anext__()
            except StopAsyncIteration:
                return grpc.aio.EOF

        await self._carry(peer, read, context.write)

    # -- dialing side ----------------------------------------------------------
    async def _dial(self, peer: _Peer) -> None:
        failures = 0
        while True:
            self._set_state(peer, PeerState.CONNECTING)
            pinned = peer.pinned or await self._pin(peer)
            if pinned is None:
                self._set_state(peer, PeerState.DOWN)
            elif await self._link(peer, pinned):
                failures = 0
            delay = min(self.limits.backoff_max, self.limits.backoff_initial * 2**failures)
            failures = min(failures + 1, 30)
            await asyncio.sleep(delay * self._rng.uniform(0.5, 1.0))

    async def _pin(self, peer: _Peer) -> bytes | None:
        """The certificate `peer` serves (PEM), kept if it is the one the manifest lists;
        None if it is not, or cannot be read now (the reason counted or logged)."""
        member = self.manifest.member(peer.member_id)
        name = member_dns_name(peer.member_id)
        try:
            der = await server_certificate(
                member.endpoint, name, self._tls.ca_pem, self.limits.hello_timeout
            )
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as err:  # hung up mid-handshake
            log.debug("member %d: dial %d failed: %r", self.me, peer.member_id, err)
            return None
        except ssl.SSLError as err:  # another CA, another name, no TLS 1.3 ...
            self._refuse(Refused.TLS, f"member {peer.member_id}: {err}")
            return None
        except (OSError, TimeoutError) as err:  # not listening (yet), unreachable
            log.debug("member %d: dial %d failed: %r", self.me, peer.member_id, err)
            return None
        served = hashlib.sha256(der).hexdigest()
        if served != member.tls_fingerprint:
            detail = f"member {peer.member_id} serves certificate {served}, not the manifest's"
            self._refuse(Refused.FINGERPRINT, detail)
            return None
        peer.pinned = ssl.DER_cert_to_PEM_cert(der).encode()
        return peer.pinned

    async def _link(self, peer: _Peer, pinned: bytes) -> bool:
        """One stream to `peer`, run until it ends; whether it was established. The channel
        trusts `pinned` alone: gRPC's handshake fails on any other server certificate."""
        creds = grpc.ssl_channel_credentials(
            root_certificates=pinned,
            private_key=self._tls.key_pem,
            certificate_chain=self._tls.cert_pem,
        )
        options = [
            *self._options(),
            ("grpc.ssl_target_name_override", member_dns_name(peer.member_id)),
        ]
        endpoint = str(self.manifest.member(peer.member_id).endpoint)
        channel = grpc.aio.secure_channel(endpoint, creds, options=options)
        linked = False
        try:
            call = channel.stream_stream(
                LINK_METHOD,
                request_serializer=peer_pb2.Frame.SerializeToString,
                response_deserializer=self._decode,
            )()
            hello = await asyncio.wait_for(call.read(), self.limits.hello_timeout)
            if (
                hello is grpc.aio.EOF
                or isinstance(hello, _Undecodable)
                or hello.WhichOneof("body") != "hello"
            ):
                self._refuse(Refused.HELLO, f"member {peer.member_id} sent no hello")
            elif (hello.hello.member_id, hello.hello.epoch) != (
                peer.member_id,
                self.manifest.epoch,
            ):
                self._refuse(Refused.HELLO, f"member {peer.member_id} announced another")
            else:
                linked = True
                await self._carry(peer, call.read, call.write)
        except grpc.aio.AioRpcError as err:
            self._dial_failed(peer, err)
        except TimeoutError:
            self._refuse(Refused.HELLO, f"member {peer.member_id}: no hello in time")
        finally:
            self._set_state(peer, PeerState.DOWN)
            await channel.close(None)
        return linked

    def _dial_failed(self, peer: _Peer, err: grpc.aio.AioRpcError) -> None:
        details = (err.details() or "").lower()
        if any(word in details for word in ("handshake", "ssl", "certificate", "tls")):
            self._refuse(Refused.TLS, f"member {peer.member_id}: {err.details()}")
        elif err.code() == grpc.StatusCode.PERMISSION_DENIED:
            log.warning("member %d: member %d refused our link", self.me, peer.member_id)
        elif err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            self._count(Drop.OVERSIZE)
        else:
            log.debug("member %d: dial %d failed: %s", self.me, peer.member_id, err.code())


async def server_certificate(endpoint: Endpoint, name: str, ca_pem: bytes, timeout: float) -> bytes:
    """The certificate (DER) the TLS server at `endpoint` presents, verified against the CA
    `ca_pem` and the name `name`; raises `ssl.SSLError`, `OSError` or `TimeoutError`.

    The dialing side's way to the certificate a peer serves: gRPC Python gives a client no
    access to it, and takes no verification callback. This is a separate connection, so the
    caller pins what it read (`_link` makes it the channel's only trust anchor) rather than
    trusting that the gRPC connection reaches the same server. The handshake offers no client
    certificate (Python's `ssl` loads keys from files only; the member's key stays in memory)
    and is TLS 1.3, where the client holds the server's certificate before it sends its own,
    so the server refusing the missing one comes after; that refusal is not an error here.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(["h2"])
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(endpoint.host, endpoint.port, ssl=context, server_hostname=name),
        timeout,
    )
    try:
        der: bytes | None = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
    if der is None:
        raise ssl.SSLError("the server presented no certificate")
    return der

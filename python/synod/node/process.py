"""One committee member as an OS process: keystore, gRPC server, peer transport, node loop.

`run_node` opens the member's keystore, starts the gRPC server (the peer service
and, when this build has it, the control service) and the peer transport, then
runs a single-threaded loop: inbound envelopes from `GrpcTransport.receive` go
to the node's `on_message`, and `on_tick` runs every tick. The process writes
``node.pid`` while it runs and ``status.json`` (state, links, drop counters;
public information only) every half second; it stops cleanly on SIGTERM or
SIGINT. Logs go to stderr.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import signal
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

from synod.node.committee import NodeMaterial
from synod.node.grpc_transport import GrpcTransport, Limits
from synod.node.keystore import SecretKind, atomic_write
from synod.node.transport import Clock, Transport
from synod.protocols.router import Router
from synod.state.session_store import SessionStore

log = logging.getLogger("synod.node.process")

PID_FILE = "node.pid"
STATUS_FILE = "status.json"
SESSION_DB = "sessions.sqlite"
STORAGE_KEY_ID = "session-store"
TICK = 0.05
T = TypeVar("T")
STATUS_EVERY = 0.5


class MessageHandler(Protocol):
    """What the loop drives: a `SignerNode`, or anything with the same two entry points."""

    def on_message(self, data: bytes, now: float) -> None: ...

    def on_tick(self, now: float) -> None: ...


class RouterNode:
    """A member that only routes: verifies, de-duplicates and buffers envelopes.

    Used while this build has no `synod.node.signer_node`; the loop, the transport
    and the router's checks are the production ones.
    """

    def __init__(self, router: Router, transport: Transport) -> None:
        self.router = router
        self.transport = transport

    def on_message(self, data: bytes, now: float) -> None:
        for out in self.router.receive(data, now):
            self.transport.send(out.to, out.data, out.kind)

    def on_tick(self, now: float) -> None:
        for out in self.router.tick(now):
            self.transport.send(out.to, out.data, out.kind)


def _optional(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        return None


def storage_key(material: NodeMaterial) -> bytes:
    """The session store's key, kept in the keystore (created on a member's first run)."""
    ks = material.keystore
    if ks.info(STORAGE_KEY_ID) is None:
        ks.put(STORAGE_KEY_ID, SecretKind.STORAGE_KEY, material.manifest.epoch, os.urandom(32))
    return ks.get(STORAGE_KEY_ID)


def make_handler(
    material: NodeMaterial, transport: Transport, store: SessionStore
) -> MessageHandler:
    """A `SignerNode` when this build has one, else a routing-only member."""
    directory = material.manifest.directory()
    epoch = material.manifest.epoch
    signer_node = _optional("synod.node.signer_node")
    if signer_node is not None:
        node: MessageHandler = signer_node.SignerNode(
            material.identity, directory, epoch, transport, store, seen=store, now=time.time()
        )
        return node
    log.warning("this build has no synod.node.signer_node: member routes envelopes only")
    # The session store keeps the replay memory, so a replay after a restart is still one.
    router = Router(material.identity, directory, epoch, seen_store=store, now=time.time())
    return RouterNode(router, transport)


def control_services(runner: NodeRunner) -> list[Callable[[Any], None]]:
    control = _optional("synod.node.control")
    if control is None:
        log.warning("this build has no control service (synod.node.control): peer service only")
        return []
    return [lambda server: control.add_control_service(server, runner)]


@dataclass
class Status:
    """The public state of a running member, written to status.json."""

    member_id: int
    pid: int
    state: str
    endpoint: str
    peers: dict[str, str]
    transport: dict[str, int]
    router: dict[str, int]

    def write(self, directory: Path) -> None:
        doc = {**self.__dict__, "updated": time.time()}
        atomic_write(directory / STATUS_FILE, json.dumps(doc, sort_keys=True).encode(), 0o644)


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        self.requested = True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(directory: Path) -> int | None:
    """The pid of the member process running in `directory`, if any."""
    try:
        pid = int((directory / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid
    return pid if b"node" in cmdline and b"run" in cmdline else None


class NodeRunner:
    """The node loop's owner. Other threads (the control service) never touch the node
    directly: `submit` queues a call that the loop thread runs between messages."""

    def __init__(self, material: NodeMaterial, handler: MessageHandler, transport: GrpcTransport):
        self.material = material
        self.node = handler
        self.transport = transport
        self._calls: queue.SimpleQueue[tuple[Callable[[Any], Any], Future[Any]]] = (
            queue.SimpleQueue()
        )

    def submit(self, call: Callable[[Any], T]) -> Future[T]:
        """Run `call(node)` on the loop thread; the future holds its result or exception."""
        future: Future[T] = Future()
        self._calls.put((call, future))
        return future

    def run_pending(self) -> None:
        while True:
            try:
                call, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(self.node))
            except Exception as err:
                future.set_exception(err)


class WallClock:
    """The node's clock in a member process: the system's wall clock.

    Every envelope carries its sender's send time, which the receiver compares with its
    own clock (replay window, future-dated envelopes), so the members of a committee need
    one time base across hosts: wall-clock time kept in sync (NTP), not a per-process
    monotonic clock.
    """

    def now(self) -> float:
        return time.time()


def run_node(
    material: NodeMaterial, limits: Limits | None = None, clock: Clock | None = None
) -> int:
    """Run the member until SIGTERM/SIGINT; returns the exit status."""
    clock = clock or WallClock()
    directory = material.directory
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    store = SessionStore(directory / SESSION_DB, storage_key(material))
    transport = GrpcTransport(material.manifest, material.member_id, material.tls, limits)
    handler = make_handler(material, transport, store)
    runner = NodeRunner(material, handler, transport)
    for add in control_services(runner):
        transport.add_service(add)
    me = material.manifest.member(material.member_id)
    status = Status(material.member_id, os.getpid(), "starting", str(me.endpoint), {}, {}, {})
    wrote_pid = False
    try:
        transport.start()
        atomic_write(directory / PID_FILE, f"{os.getpid()}\n".encode(), 0o644)
        wrote_pid = True
        status.state = "ready"
        log.info("member %d ready on %s (pid %d)", material.member_id, me.endpoint, os.getpid())
        next_status = 0.0
        next_tick = 0.0
        while not stop.requested:
            for _peer, data in transport.receive(TICK):
                handler.on_message(data, clock.now())
            runner.run_pending()
            now = time.monotonic()  # schedules the loop; the node sees `clock`
            if now >= next_tick:
                handler.on_tick(clock.now())
                next_tick = now + TICK
            if now >= next_status:
                _refresh(status, transport, handler).write(directory)
                next_status = now + STATUS_EVERY
        status.state = "stopping"
        _refresh(status, transport, handler).write(directory)
    finally:
        transport.stop()
        store.close()
        if wrote_pid:
            (directory / PID_FILE).unlink(missing_ok=True)
        for sig, old in previous.items():
            signal.signal(sig, old)
    status.state = "stopped"
    _refresh(status, transport, handler).write(directory)
    log.info("member %d stopped", material.member_id)
    return 0


def _refresh(status: Status, transport: GrpcTransport, handler: MessageHandler) -> Status:
    status.peers = {str(k): v.value for k, v in sorted(transport.peers().items())}
    status.transport = dict(transport.counters)
    counters = getattr(getattr(handler, "router", None), "counters", None)
    status.router = dict(counters) if isinstance(counters, Counter) else {}
    return status

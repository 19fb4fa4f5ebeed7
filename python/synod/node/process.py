"""One committee member as an OS process: keystore, gRPC server, peer transport, node runner.

`run_node` opens the member's keystore, builds its `SignerNode` with the key shares
the keystore holds (`KeystoreShares`; a share a DKG gives is stored there before it
is used) and runs it on a `synod.node.runner.NodeRunner` (one thread owns the node).
The gRPC server carries the peer service and the control service on the member's
endpoint, both behind mutual TLS with the committee CA; the control service admits
only the operator's client certificate. The main thread moves inbound envelopes
from the transport to the runner's inbox and writes ``status.json`` (state, links,
drop counters; public information only) every half second; ``node.pid`` exists
while it runs. SIGTERM or SIGINT stops it cleanly. Logs go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import start_http_server

from synod.crypto import ecdsa
from synod.node.aux_info import AuxInfoCeremony
from synod.node.committee import NodeMaterial
from synod.node.control import AdhocRecorder, OperatorOnly, add_control_service
from synod.node.faults import fault_factory
from synod.node.grpc_transport import GrpcTransport, Limits, PeerState
from synod.node.key_shares import KeystoreShares
from synod.node.keystore import SecretKind, atomic_write
from synod.node.metrics import node_registry
from synod.node.operators import OPERATORS, OperatorFile
from synod.node.presign_pool import PoolPolicy, PresignPool
from synod.node.runner import NodeRunner, RunnerStopped
from synod.node.signer_node import SignerNode
from synod.node.templates import TemplateCheck
from synod.node.transport import Clock
from synod.processes import pid_alive
from synod.state.audit import AuditAction, AuditLog, prepare_audit
from synod.state.db import SqliteDatabase
from synod.state.session_store import SessionStore

log = logging.getLogger("synod.node.process")

PID_FILE = "node.pid"
STATUS_FILE = "status.json"
SESSION_DB = "sessions.sqlite"
STORAGE_KEY_ID = "session-store"
TICK = 0.05
STATUS_EVERY = 0.5
SWITCH_INTERVAL_S = 0.001  # the GIL's switch interval in a member process


def storage_key(material: NodeMaterial) -> bytes:
    """The session store's key, kept in the keystore (created on a member's first run)."""
    ks = material.keystore
    if ks.info(STORAGE_KEY_ID) is None:
        ks.put(STORAGE_KEY_ID, SecretKind.STORAGE_KEY, material.manifest.epoch, os.urandom(32))
    return ks.get(STORAGE_KEY_ID)


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
    fault: str | None = None  # a test-only fault it runs with
    presignatures: dict[str, int] = field(default_factory=dict)  # fresh ones per ECDSA key

    def write(self, directory: Path) -> None:
        doc = {**self.__dict__, "updated": time.time()}
        atomic_write(directory / STATUS_FILE, json.dumps(doc, sort_keys=True).encode(), 0o644)


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        self.requested = True


def running_pid(
    directory: Path, pid_file: str = PID_FILE, command: tuple[bytes, ...] = (b"node", b"run")
) -> int | None:
    """The pid in `directory/pid_file` if that process runs and its command line holds the
    words of `command` (a pid reused by another program after a crash is not it)."""
    try:
        pid = int((directory / pid_file).read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid
    return pid if all(word in cmdline for word in command) else None


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
    material: NodeMaterial,
    limits: Limits | None = None,
    clock: Clock | None = None,
    metrics_port: int | None = None,
    template_check: TemplateCheck | None = None,
    fault: str | None = None,
    primes: ecdsa.Primes | None = None,
    pool_policy: PoolPolicy | None = None,
    adhoc_signing: bool = False,
) -> int:
    """Run the member until SIGTERM/SIGINT; returns the exit status. With `metrics_port`,
    Prometheus metrics are served on 127.0.0.1 at that port (`synod.node.metrics`).

    With `template_check` (the member's view of the ledger) the member signs withdrawals
    whose recorded template gives the message, and no operator's ad-hoc message; without
    one, only ad-hoc messages and only with `adhoc_signing` (a development tool, off by
    default: then the member signs nothing). `fault` names a test-only fault (`synod.node.faults`);
    `primes` (tests only) are the pregenerated primes an aux-info ceremony uses;
    `pool_policy` sizes the member's presignature pool (`synod.node.presign_pool`)."""
    clock = clock or WallClock()
    directory = material.directory
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    store = SessionStore(directory / SESSION_DB, storage_key(material))
    # A member's threads (peer links, control calls, the node's own) share the GIL: one
    # that wakes for a message should not wait out CPython's default 5 ms switch interval
    # while another computes (measured: pooled ECDSA p50 on the loopback cluster 20.7 ms
    # -> 17.5 ms). Restored on return.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    transport = GrpcTransport(material.manifest, material.member_id, material.tls, limits)
    shares = KeystoreShares(material.keystore, material.manifest.epoch)
    factory = fault_factory(fault)
    if fault is not None:
        log.warning("TEST-ONLY FAULT %r: this member misbehaves on purpose", fault)
    node = SignerNode(
        material.identity,
        material.manifest.directory(),
        material.manifest.epoch,
        transport,
        store,
        shares.load(),
        factory,
        seen=store,  # the replay memory outlives a restart
        now=clock.now(),
    )

    def linked() -> set[int]:
        return {m for m, state in transport.peers().items() if state is PeerState.CONNECTED}

    pool = PresignPool(node, store, pool_policy or PoolPolicy(), linked)
    # ECDSA only where this member has CGGMP aux info (each member's Paillier primes)
    if template_check is None and adhoc_signing:
        log.warning("DEVELOPMENT: this member signs operators' ad-hoc messages (--adhoc-signing)")
    runner = NodeRunner(
        node,
        clock,
        template_check,
        aux_info=shares.aux_info(),
        operator_signing=template_check is None and adhoc_signing,
        pool=pool,
    )
    operator_only = OperatorOnly(
        material.tls.ca_pem, OperatorFile(material.directory / OPERATORS), material.tls.cert_pem
    )
    if primes is not None:
        log.warning("TEST-ONLY: pregenerated Paillier primes for the aux-info ceremony")
        aux = AuxInfoCeremony(runner, shares.store_aux_info, lambda: primes)
    else:
        aux = AuxInfoCeremony(runner, shares.store_aux_info)

    record_adhoc = _adhoc_audit(material.directory) if runner.operator_signing else None

    def serve_control(server: Any) -> None:
        add_control_service(server, runner, operator_only, aux, record_adhoc)

    transport.add_service(serve_control)
    me = material.manifest.member(material.member_id)
    status = Status(
        material.member_id, os.getpid(), "starting", str(me.endpoint), {}, {}, {}, fault
    )
    wrote_pid = False
    exporter: Any = None
    try:
        runner.start()
        transport.start()
        if metrics_port is not None:
            exporter, _ = start_http_server(
                metrics_port, addr="127.0.0.1", registry=node_registry(lambda: status)
            )
        atomic_write(directory / PID_FILE, f"{os.getpid()}\n".encode(), 0o644)
        wrote_pid = True
        status.state = "ready"
        log.info("member %d ready on %s (pid %d)", material.member_id, me.endpoint, os.getpid())
        next_status = 0.0
        while not stop.requested:
            for _peer, data in transport.receive(TICK):
                runner.deliver(data)
            if time.monotonic() >= next_status:
                _store_aux_info(aux)
                _refresh(status, transport, runner, operator_only).write(directory)
                next_status = time.monotonic() + STATUS_EVERY
        status.state = "stopping"
        _refresh(status, transport, runner, operator_only).write(directory)
    finally:
        if exporter is not None:
            exporter.shutdown()
        runner.stop()
        transport.stop()
        store.close()
        if wrote_pid:
            (directory / PID_FILE).unlink(missing_ok=True)
        for sig, old in previous.items():
            signal.signal(sig, old)
        sys.setswitchinterval(switch_interval)
    status.state = "stopped"
    status.write(directory)
    log.info("member %d stopped", material.member_id)
    return 0


def _store_aux_info(aux: AuxInfoCeremony) -> None:
    """A finished aux-info ceremony's output into the keystore (a busy runner: next time)."""
    with contextlib.suppress(RunnerStopped, TimeoutError, queue.Full):
        aux.poll()


def _refresh(
    status: Status, transport: GrpcTransport, runner: NodeRunner, operator_only: OperatorOnly
) -> Status:
    status.peers = {str(k): v.value for k, v in sorted(transport.peers().items())}
    status.transport = {**transport.counters, **operator_only.counters, **runner.counters}
    # a runner busy with long work (CGGMP proofs) must not hold up this loop's relaying:
    # then the last known counters stay
    pool = runner.pool

    def read(node: SignerNode, _now: float) -> tuple[dict[str, int], dict[str, int]]:
        return dict(node.router.counters), pool.levels() if pool is not None else {}

    with contextlib.suppress(RunnerStopped, TimeoutError, queue.Full):
        status.router, status.presignatures = runner.call(read, timeout=0.5)
    return status


ADHOC_AUDIT = "audit.db"  # in the member directory: the trail of its ad-hoc signing sessions


def _adhoc_audit(directory: Path) -> AdhocRecorder:
    """A member with ad-hoc signing on (a development tool) records every such session, who
    asked and the message's hash, in its own hash-chained audit trail (`synod audit verify
    --db DIR/audit.db`) before it starts."""
    db = SqliteDatabase(directory / ADHOC_AUDIT)
    prepare_audit(db)
    trail = AuditLog(db)
    lock = threading.Lock()  # control calls arrive on several threads

    def record(caller: str, detail: dict[str, str]) -> None:
        with lock:
            trail.append(caller, AuditAction.ADHOC_SIGN, detail)

    return record

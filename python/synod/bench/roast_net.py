"""ROAST over real sockets with an emulated round-trip time (`python -m synod.bench --roast-net`).

A development committee (t-of-n on 127.0.0.1, certificates from its CA) runs as n
production `SignerNode`s, each with its own `GrpcTransport` (gRPC over mutual TLS,
one stream per member pair) and its own `NodeRunner` thread, all hosted by this one
OS process. The round-trip time is emulated by the transport's per-link delay
(`Limits.link_delay` = RTT/2 on every frame sent): this machine's kernel has no
`netem` queueing discipline, so `tc netem` inside network namespaces is not
available. Corrupted members follow the simulator's adaptive attacker
(`synod.sim.adversary`: one signer of each new sub-session withholds, up to f), through
the same `ByzantineFactory` the simulator uses.

Each case reports the wall time from the start of signing to the aggregated
signature (verified), next to the simulator's virtual time for the same parameters
(same RTT, no jitter) and the floor (f+1)·RTT, and the process CPU time the session
took: with every member in one process on two cores, CPU is what the larger
committees wait for.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from synod.chains.localnode import free_base_port
from synod.crypto import frost
from synod.node.committee import init_committee, load_node, node_dir
from synod.node.grpc_transport import GrpcTransport, Limits, PeerState
from synod.node.keyring import KeyRing
from synod.node.keystore import KdfParams
from synod.node.process import WallClock
from synod.node.runner import NodeRunner
from synod.node.signer_node import SignerNode
from synod.protocols.base import Event
from synod.sim.adversary import Adversary, ByzantineFactory
from synod.sim.roast import RoastRun
from synod.state.session_store import SessionStore

KEY_ID = "bench"
BENCH_KDF = KdfParams(time_cost=1, memory_cost=64, parallelism=1)  # throwaway keystores
SIZES = ((3, 5), (11, 15), (34, 50), (67, 100))


@dataclass(frozen=True)
class NetCase:
    t: int
    n: int
    f: int
    rtt: float
    wall_s: float
    cpu_s: float
    sub_sessions: int
    virtual_s: float
    virtual_sub_sessions: int
    link_setup_s: float

    @property
    def floor_s(self) -> float:
        return (self.f + 1) * self.rtt


class _Member:
    def __init__(
        self, node: SignerNode, runner: NodeRunner, transport: GrpcTransport, store: SessionStore
    ) -> None:
        self.node, self.runner, self.transport, self.store = node, runner, transport, store
        self.stop = threading.Event()
        self.pump = threading.Thread(target=self._pump, daemon=True)

    def _pump(self) -> None:
        while not self.stop.is_set():
            for _peer, data in self.transport.receive(0.5):  # wakes at once on a frame
                self.runner.deliver(data)


def run_case(
    t: int, n: int, f: int, rtt: float, seed: int, workdir: Path, progress: Callable[[str], None]
) -> NetCase:
    root = workdir / f"committee-{t}-{n}-{f}"
    init_committee(root, t, n, free_base_port(n), kdf=BENCH_KDF)
    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, t, n)
    adversary = Adversary("adaptive", f, random.Random(seed)) if f else None
    signed = threading.Event()
    outcome: dict[str, object] = {}
    sub_sessions = 0
    lock = threading.Lock()

    def observe(_sid: bytes, event: Event) -> None:
        nonlocal sub_sessions
        if event.name == "sub_session":
            with lock:
                sub_sessions += 1
            if adversary is not None:
                adversary.on_sub_session(tuple(event.data["signers"]))
        elif event.name == "signed" and "sub_id" in event.data and not signed.is_set():
            outcome["at"] = time.perf_counter()
            outcome["signature"] = event.data["signature"]
            signed.set()

    clock = WallClock()
    members: list[_Member] = []
    limits = Limits(link_delay=rtt / 2)
    try:
        for i in range(1, n + 1):
            directory = node_dir(root, i)
            material = load_node(directory, (directory / "passphrase").read_bytes().strip())
            transport = GrpcTransport(material.manifest, i, material.tls, limits)
            store = SessionStore(
                directory / "sessions.sqlite",
                hashlib.sha256(b"bench" + i.to_bytes(4, "big")).digest(),
                power_safe=False,
            )
            ring = KeyRing()
            ring.add_frost(KEY_ID, keys[i], public)
            factory = ByzantineFactory(adversary) if adversary is not None else None
            node = SignerNode(
                material.identity,
                material.manifest.directory(),
                material.manifest.epoch,
                transport,
                store,
                ring,
                factory,
                seen=store,
                now=clock.now(),
            )
            node.observers.append(observe)
            # Ticks drive only timeouts (60 s turns here): rare ticks keep a hundred idle
            # runner threads from competing for the interpreter with the ones that work.
            runner = NodeRunner(node, clock, tick_interval=0.5)
            members.append(_Member(node, runner, transport, store))
        linking = time.perf_counter()
        for m in members:
            m.runner.start()
            m.transport.start()
            m.pump.start()
        _wait(
            lambda: all(
                all(s is PeerState.CONNECTED for s in m.transport.peers().values()) for m in members
            ),
            f"{n} members linked",
            600.0,
        )
        link_setup = time.perf_counter() - linking
        progress(f"{t}/{n} f={f}: {n * (n - 1) // 2} links up in {link_setup:.1f} s; signing")
        message = os.urandom(32)
        sid = os.urandom(32)
        start = clock.now()

        def begin(node: SignerNode, now: float) -> None:
            node.start_signing(
                KEY_ID,
                sid,
                message,
                lambda s, m: s == sid and m == message,
                now,
                tweak=frost.KEY_PATH,
                rotate_timeout=60.0,
                start=start,
                timeout=300.0,
            )

        cpu0, t0 = time.process_time(), time.perf_counter()
        for m in members:
            m.runner.call(begin)
        if not signed.wait(300.0):
            drops: Counter[str] = Counter()
            for m in members:
                drops.update(m.transport.counters)
                drops.update(m.runner.call(lambda node, _now: dict(node.router.counters)))
            raise RuntimeError(
                f"{t}/{n} f={f}: no signature within 300 s ({sub_sessions} sub-sessions; "
                f"drops {dict(drops)})"
            )
        wall, cpu = float(outcome["at"]) - t0, time.process_time() - cpu0  # type: ignore[arg-type]
        signature = outcome["signature"]
        assert isinstance(signature, frost.Signature)
        frost.verify(public.suite, public.group_public_key(frost.KEY_PATH), message, signature)
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            m.transport.stop()
            m.runner.stop()
            m.pump.join()
            m.store.close()
    sim = RoastRun(t, n, f, "adaptive" if f else "static", seed=seed, rtt=rtt, jitter=0.0,
                   rotate_timeout=60.0).execute()  # fmt: skip
    return NetCase(
        t, n, f, rtt, wall, cpu, sub_sessions, sim.virtual_elapsed_s, sim.sessions_started,
        link_setup,
    )  # fmt: skip


def _wait(cond: Callable[[], bool], what: str, limit: float) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def net_rows(
    sizes: Sequence[tuple[int, int]] = SIZES,
    rtt: float = 0.153,
    seed: int = 1,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[NetCase]:
    """f = 0 and f = n - t (adaptive) for every size."""
    out = []
    with tempfile.TemporaryDirectory(prefix="synod-bench-roast-net-") as tmp:
        for t, n in sizes:
            for f in (0, n - t):
                try:
                    case = run_case(t, n, f, rtt, seed, Path(tmp), progress)
                except RuntimeError as err:  # reported, and the other cases still run
                    progress(f"{t}/{n} f={f}: {err}")
                    continue
                progress(render_net([case]).splitlines()[-1])
                out.append(case)
    return out


def render_net(rows: Sequence[NetCase]) -> str:
    lines = [
        "| t/n | f | links up | sub-sessions (sim) | wall | simulator (virtual) | "
        "floor (f+1)·RTT | wall / floor | CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.t}/{r.n} | {r.f} | {r.link_setup_s:.1f} s | {r.sub_sessions} "
            f"({r.virtual_sub_sessions}) | {r.wall_s:.2f} s | {r.virtual_s:.2f} s | "
            f"{r.floor_s:.2f} s | {r.wall_s / r.floor_s:.2f}× | {r.cpu_s:.1f} s |"
        )
    return "\n".join(lines)

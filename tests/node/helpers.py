"""Helpers for node tests: free loopback ports, a committee on disk, hand-made peers."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from synod.chains.localnode import free_base_port
from synod.node.committee import NodeMaterial, init_committee, load_node, node_dir
from synod.node.grpc_transport import LINK_METHOD
from synod.node.keystore import KdfParams
from synod.node.manifest import Manifest
from synod.node.pki import member_dns_name
from synod.node.proto import peer_pb2
from synod.protocols.envelope import Envelope, Identity

FAST_KDF = KdfParams(time_cost=1, memory_cost=64, parallelism=1)  # tests only


def wait_for(cond: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
    """Poll `cond` until it holds; fail naming `what` after a generous deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def holds_nonces(root: Path, i: int, sid: bytes) -> bool:
    """Whether member i's session store holds nonces for session `sid` (read-only)."""
    from synod.node.process import SESSION_DB

    path = node_dir(root, i) / SESSION_DB
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT COUNT(*) FROM nonces WHERE session_id = ?", (sid,)).fetchone()
        return bool(row[0])
    finally:
        db.close()


def make_committee(root: Path, t: int, n: int) -> dict[int, NodeMaterial]:
    init_committee(root, t, n, free_base_port(n), kdf=FAST_KDF)
    return {
        i: load_node(node_dir(root, i), (node_dir(root, i) / "passphrase").read_bytes().strip())
        for i in range(1, n + 1)
    }


def envelope(identity: Identity, to: int, payload: bytes, epoch: int = 0) -> bytes:
    """A correctly signed envelope from `identity` (whatever fields this envelope version has)."""
    names = {f.name for f in dataclasses.fields(Envelope)}
    extra: dict[str, Any] = {}
    if "nonce" in names:  # envelope v2: a send time and a per-send nonce
        extra = {"sent_ms": int(time.time() * 1000), "nonce": os.urandom(16)}
    env = Envelope(b"session-1", "test", identity.node_id, to, epoch, 1, payload, **extra)
    return env.sign(identity).to_bytes()


class Rogue:
    """A hand-made peer client: any certificate, any frames."""

    def __init__(
        self, target: Manifest, member: int, key_pem: bytes, cert_pem: bytes, ca_pem: bytes
    ) -> None:
        self.address = str(target.member(member).endpoint)
        self.name = member_dns_name(member)
        self.creds = grpc.ssl_channel_credentials(ca_pem, key_pem, cert_pem)

    def send(self, frames: list[bytes]) -> tuple[grpc.StatusCode | None, list[str]]:
        async def run() -> tuple[grpc.StatusCode | None, list[str]]:
            opts = [("grpc.ssl_target_name_override", self.name)]
            async with grpc.aio.secure_channel(self.address, self.creds, options=opts) as ch:
                call = ch.stream_stream(
                    LINK_METHOD,
                    request_serializer=peer_pb2.Frame.SerializeToString,
                    response_deserializer=peer_pb2.Frame.FromString,
                )()
                seen: list[str] = []
                try:
                    first = await call.read()
                    seen.append(first.WhichOneof("body") if first is not grpc.aio.EOF else "eof")
                    for data in frames:
                        await call.write(peer_pb2.Frame(envelope=data))
                    await call.done_writing()
                    while (msg := await call.read()) is not grpc.aio.EOF:
                        seen.append(msg.WhichOneof("body"))
                except grpc.aio.AioRpcError as err:
                    return err.code(), seen
                return None, seen

        return asyncio.run(run())


def send_until(rogue: Rogue, frames: list[bytes], done: Callable[[], bool], what: str) -> None:
    """Send `frames` on a fresh stream until `done()` holds (the impersonated member's own
    link may replace the rogue's stream before its frames are read: then send again)."""
    end = time.monotonic() + 60.0
    while time.monotonic() < end:
        rogue.send(frames)
        inner = time.monotonic() + 5.0
        while time.monotonic() < inner:
            if done():
                return
            time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def ecdsa_keyed_cluster(ids: tuple[int, ...], seed: int, threshold: int = 2) -> tuple[Any, bytes]:
    """A simulated committee after a CGGMP keygen of key "eth" (the stored test aux info):
    the `synod.sim.cluster.Cluster` and the group's public key."""
    from synod.node import SessionStatus
    from synod.sim.cluster import Cluster
    from tests.fixtures import stored_aux

    aux = stored_aux(len(ids))
    cluster = Cluster(ids, seed=seed)
    sid = hashlib.sha256(b"keygen" + seed.to_bytes(8, "big")).digest()
    for i in ids:
        cluster.nodes[i].signer.start_ecdsa_keygen("eth", sid, ids, threshold, aux[i - 1], 0.0)
        cluster.flush(i)
    cluster.run_until(120.0, [(i, sid) for i in ids])
    keygen = [cluster.nodes[i].signer.result(sid) for i in ids]
    assert all(r is not None and r.status is SessionStatus.DONE for r in keygen), keygen
    return cluster, cluster.nodes[ids[0]].signer.keys.ecdsa_share("eth").public_key

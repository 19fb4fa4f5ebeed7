"""`Signer`s for the withdraw worker that run real threshold sessions among a simulated
committee of `SignerNode`s in the deterministic simulator: ROAST over FROST, and CGGMP
signing with retries. They hold every share in one process, so they are a harness (for
`synod sim`, the property tests and the in-process demo), never production custody.

The message is derived from the withdrawal's *recorded* template by the chain's
`message_for` function, and every honest simulated signer re-derives it from the
ledger record before producing a nonce or a share (template binding). Faulty
committee members follow a `synod.sim.adversary` strategy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from synod.config import TimeoutsConfig, load_config
from synod.crypto import ecdsa, frost
from synod.node.keyring import KeyRing
from synod.protocols.cggmp import CggmpSigningDriver
from synod.protocols.retry import attempt_bound
from synod.runtime.interfaces import BlockingSigner, SigningTimeout
from synod.sim.cluster import Cluster
from synod.sim.roast import RoastRun
from synod.state.machine import Withdrawal

MessageFor = Callable[[Withdrawal], bytes]
MessagesFor = Callable[[Withdrawal], "bytes | list[bytes]"]
"""One message, or one per input (a Bitcoin spend signs each input's sighash)."""


@dataclass
class SigningRecord:
    """What one signing took, for reports: sessions started, culprits, virtual time."""

    withdraw_id: str
    session_id: str
    ok: bool
    sessions: int
    culprits: list[int]
    virtual_s: float
    detail: dict[str, Any] = field(default_factory=dict)


class FrostCommitteeSigner(BlockingSigner):
    """ROAST over FROST among a simulated committee (BIP340/Taproot or Ed25519)."""

    def __init__(
        self,
        keys: dict[int, frost.KeyPackage],
        public: frost.PublicKeyPackage,
        threshold: int,
        message_for: MessagesFor,
        tweak: frost.TaprootTweak | None = None,
        faulty: int = 0,
        strategy: str = "static",
        rotate_timeout: float | None = None,
        corrupt: dict[int, str] | None = None,
        timeouts: TimeoutsConfig | None = None,
    ) -> None:
        """Turn and session length come from `timeouts` (the packaged configuration when
        not given), sized for the committee; `rotate_timeout` overrides the turn."""
        super().__init__()
        times = timeouts or load_config(env={}).timeouts
        self.keys = keys
        self.public = public
        self.threshold = threshold
        self.message_for = message_for
        self.tweak = tweak
        self.faulty = faulty
        self.strategy = strategy
        self.rotate_timeout = rotate_timeout or times.aggregator_turn_s(len(keys), threshold)
        self.session_limit = max(
            times.session_limit_s(len(keys), threshold), 3 * self.rotate_timeout
        )
        self.corrupt = corrupt
        self.records: list[SigningRecord] = []

    def sign(self, withdrawal: Withdrawal, session_id: str) -> str:
        """One ROAST session per message; the reference is the signatures' hex, comma-joined."""
        messages = self.message_for(withdrawal)
        if isinstance(messages, bytes):
            messages = [messages]
        return ",".join(
            self._sign_one(withdrawal, f"{session_id}/{i}", i, m) for i, m in enumerate(messages)
        )

    def _sign_one(self, withdrawal: Withdrawal, session_id: str, index: int, message: bytes) -> str:
        sid = hashlib.sha256(session_id.encode()).digest()

        def validator(s: bytes, m: bytes) -> bool:
            recorded = self.message_for(withdrawal)
            expected = recorded if isinstance(recorded, bytes) else recorded[index]
            return s == sid and m == expected

        run = RoastRun(
            self.threshold,
            len(self.keys),
            self.faulty,
            self.strategy,
            seed=int.from_bytes(sid[:4], "big"),
            rotate_timeout=self.rotate_timeout,
            max_time=self.session_limit,
            tweak=self.tweak,
            shares=(self.keys, self.public),
            message=message,
            session_id=sid,
            validator=validator,
            corrupt=self.corrupt,
        )
        result = run.execute()
        self.records.append(
            SigningRecord(
                withdrawal.withdraw_id,
                session_id,
                result.ok,
                result.sessions_started,
                result.culprits,
                result.virtual_elapsed_s,
                {"corrupted": result.corrupted, "aggregator_turns": result.aggregator_turns},
            )
        )
        if not result.ok or result.signature is None:
            raise SigningTimeout(result.failure or session_id)
        sig = bytes.fromhex(result.signature)
        frost.verify(self.public.suite, self.public.group_public_key(self.tweak), message, sig)
        return sig.hex()


class CggmpCommitteeSigner(BlockingSigner):
    """CGGMP signing among a simulated committee, retrying around stalled members."""

    def __init__(
        self,
        shares: list[ecdsa.KeyShare],
        threshold: int,
        digest_for: MessageFor,
        silent: set[int] | None = None,
        attempt_timeout: float | None = None,
        timeouts: TimeoutsConfig | None = None,
    ) -> None:
        super().__init__()
        times = timeouts or load_config(env={}).timeouts
        self.shares = shares
        self.threshold = threshold
        self.digest_for = digest_for
        self.silent = silent or set()
        self.attempt_timeout = attempt_timeout or times.aggregator_turn_s(len(shares), threshold)
        # Long enough for the retry rule's bound of attempts (`synod.protocols.retry`).
        self.session_limit = max(
            times.session_limit_s(len(shares), threshold),
            attempt_bound(len(shares), threshold) * self.attempt_timeout,
        )
        self.records: list[SigningRecord] = []

    def sign(self, withdrawal: Withdrawal, session_id: str) -> str:
        digest = self.digest_for(withdrawal)
        committee = tuple(range(1, len(self.shares) + 1))
        sid = hashlib.sha256(session_id.encode()).digest()
        rings = {node: KeyRing() for node in committee}
        for node, ring in rings.items():
            ring.add_ecdsa("cggmp", self.shares[node - 1])
        cluster = Cluster(committee, seed=int.from_bytes(sid[:4], "big"), keys=rings)

        def validator(s: bytes, m: bytes) -> bool:
            return s == sid and m == self.digest_for(withdrawal)

        for node in committee:
            cluster.nodes[node].silent = node in self.silent
            cluster.nodes[node].signer.start_ecdsa_signing(
                "cggmp",
                sid,
                digest,
                validator,
                cluster.net.now,
                committee=committee,
                attempt_timeout=self.attempt_timeout,
            )
            cluster.flush(node)
        honest = [cluster.nodes[n].signer for n in committee if n not in self.silent]
        cluster.run_until(self.session_limit, [(n.node_id, sid) for n in honest])
        results = [r for r in (n.result(sid) for n in honest) if r is not None]
        sig_raw = next((r.signature for r in results if r.signature is not None), None)
        sig = None if sig_raw is None else ecdsa.Signature.from_recoverable(sig_raw)
        drivers = [d for d in (n.session(sid) for n in honest) if isinstance(d, CggmpSigningDriver)]
        attempts = max((d.attempts_started for d in drivers), default=0)
        self.records.append(
            SigningRecord(
                withdrawal.withdraw_id,
                session_id,
                sig is not None,
                attempts,
                sorted(set().union(*(d.suspected for d in drivers))),
                cluster.net.now,
            )
        )
        if sig is None:
            raise SigningTimeout(session_id)
        return sig.to_recoverable().hex()

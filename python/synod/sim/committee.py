"""An in-process committee that changes hands: the `KeyHandover` of the transition worker
over the simulated network, and epoch-aware signers for the withdraw worker.

Each member keeps its key shares per (epoch, scheme). A reshare runs the production
`ReshareSession` among the old signers and the new members (same group key); a fresh
key runs the production `FrostDkgSession` among the new members. Members listed in
`liars` send one new member a sub-share meant for another (a provably invalid reshare
package): the receiver names them and the attempt fails with them as culprits. The
signers pick the shares of the epoch the ledger recorded for the withdrawal; a member
holds none for an epoch it was never part of, or once that epoch's shares were erased.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from synod.crypto import ecdsa, frost
from synod.protocols.base import Send
from synod.protocols.dkg import KINDS as DKG_KINDS
from synod.protocols.dkg import FrostDkgSession
from synod.protocols.reshare import KINDS as RESHARE_KINDS
from synod.protocols.reshare import PRIVATE as RESHARE_PRIVATE
from synod.protocols.reshare import SHARE, ReshareSession
from synod.runtime.interfaces import BlockingSigner
from synod.runtime.transition import HandoverPlan, HandoverResult
from synod.sim.cluster import Cluster
from synod.sim.committee_signer import (
    CggmpCommitteeSigner,
    FrostCommitteeSigner,
    MessageFor,
    MessagesFor,
    SigningRecord,
)
from synod.state.machine import Withdrawal

SUITES = {"bip340": frost.Ciphersuite.SECP256K1_TR, "ed25519": frost.Ciphersuite.ED25519}


class KeyRetired(Exception):
    """No member holds shares of the epoch the withdrawal was recorded under any more."""


class _LyingReshare(ReshareSession):
    """An old signer that sends one new member the sub-share meant for another."""

    def start(self, now: float) -> list[Send]:
        sends = super().start(now)
        shares = [s for s in sends if s.kind == SHARE]
        if len(shares) < 2:
            return sends
        first, second = shares[:2]
        return [s for s in sends if s is not first] + [
            Send(first.to, SHARE, 1, second.payload, private=True)
        ]


@dataclass
class CeremonyRecord:
    epoch: int
    attempt: int
    scheme: str
    mode: str
    ok: bool
    culprits: list[int]
    virtual_s: float


@dataclass
class SimCommittee:
    schemes: tuple[str, ...] = ("bip340", "ed25519")
    seed: int = 1
    liars: set[int] = field(default_factory=set)
    deadline: float = 10.0
    shares: dict[int, dict[tuple[int, str], frost.KeyPackage]] = field(default_factory=dict)
    public: dict[tuple[int, str], frost.PublicKeyPackage] = field(default_factory=dict)
    results: dict[str, HandoverResult] = field(default_factory=dict)
    records: list[CeremonyRecord] = field(default_factory=list)
    erased: set[tuple[int, int]] = field(default_factory=set)  # (member, epoch)
    dealt: dict[int, dict[str, tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]]] = field(
        default_factory=dict
    )
    """Keys given for an epoch instead of a ceremony (benchmarks of large committees start
    from a dealt genesis, as the ROAST simulator does above 30 members)."""
    ecdsa_aux: Callable[[int], list[ecdsa.AuxInfo]] | None = None
    """Aux info for n CGGMP parties (made ahead from pregenerated primes); needed for the
    "ecdsa" scheme, whose key is always fresh (the crate has no resharing)."""
    ecdsa_shares: dict[int, dict[int, ecdsa.KeyShare]] = field(default_factory=dict)
    corrupt: dict[int, str] = field(default_factory=dict)
    """Members that misbehave when signing (a `synod.sim.adversary` strategy each)."""

    # -- KeyHandover --------------------------------------------------------------
    def begin(self, plan: HandoverPlan) -> None:
        self._drop(plan.epoch)  # a restarted ceremony starts from nothing
        if plan.epoch in self.dealt:
            for scheme, (keys, public) in self.dealt[plan.epoch].items():
                for member, key in keys.items():
                    self._keep(plan.epoch, scheme, member, key)
                self.public[(plan.epoch, scheme)] = public
            group = {s: p.group_public_key() for s, (_, p) in self.dealt[plan.epoch].items()}
            self.results[plan.session_id] = HandoverResult(True, group)
            return
        group_keys: dict[str, bytes] = {}
        culprits: set[int] = set()
        reasons = []
        for scheme in self.schemes:
            mode = plan.modes.get(scheme, "fresh")
            sid = hashlib.sha256(f"{plan.session_id}/{scheme}".encode()).digest()
            if scheme == "ecdsa":
                ok, bad, vtime = self._cggmp(plan, sid)
            elif mode == "reshare":
                ok, bad, vtime = self._reshare(plan, scheme, sid)
            else:
                ok, bad, vtime = self._dkg(plan, scheme, sid)
            self.records.append(
                CeremonyRecord(plan.epoch, plan.attempt, scheme, mode, ok, sorted(bad), vtime)
            )
            if not ok:
                culprits |= bad
                reasons.append(f"{scheme} {mode} failed, culprits {sorted(bad)}")
                continue
            if scheme == "ecdsa":
                group_keys[scheme] = next(iter(self.ecdsa_shares[plan.epoch].values())).public_key
            else:
                group_keys[scheme] = self.public[(plan.epoch, scheme)].group_public_key()
        if reasons:
            self._drop(plan.epoch)
            result = HandoverResult(
                False, culprits=tuple(sorted(culprits)), reason="; ".join(reasons)
            )
        else:
            result = HandoverResult(True, group_keys)
        self.results[plan.session_id] = result

    def poll(self, plan: HandoverPlan) -> HandoverResult | None:
        return self.results.get(plan.session_id)

    def sign_proof(self, epoch: int, scheme: str, message: bytes) -> bytes:
        if scheme == "ecdsa":
            shares = list(self.ecdsa_shares[epoch].values())
            signers = [k.index for k in shares[: shares[0].threshold]]
            return ecdsa.local_sign(shares, signers, message).to_recoverable()
        public = self.public[(epoch, scheme)]
        keys = self.keys(epoch, scheme)
        signers = sorted(keys)[: public.min_signers]
        return frost.local_sign(keys, public, message, signers).raw

    def retire(self, epoch: int) -> None:
        for member in self.ecdsa_shares.pop(epoch, {}):
            self.erased.add((member, epoch))
        for member, held in self.shares.items():
            for key in [k for k in held if k[0] == epoch]:
                del held[key]
                self.erased.add((member, epoch))

    # -- reads ----------------------------------------------------------------------
    def keys(self, epoch: int, scheme: str) -> dict[int, frost.KeyPackage]:
        return {
            m: held[(epoch, scheme)] for m, held in self.shares.items() if (epoch, scheme) in held
        }

    def public_for(self, scheme: str, group_key: bytes) -> frost.PublicKeyPackage:
        """The public key package whose group key (verifier form) is `group_key`."""
        for (_, s), public in self.public.items():
            if s == scheme and public.group_public_key() == group_key:
                return public
        raise KeyError(f"no {scheme} key {group_key.hex()}")

    def holds(self, member: int, epoch: int) -> bool:
        if member in self.ecdsa_shares.get(epoch, {}):
            return True
        return any(k[0] == epoch for k in self.shares.get(member, {}))

    def ecdsa_signer(self, digest_for: MessageFor) -> EcdsaEpochSigner:
        return EcdsaEpochSigner(self, digest_for)

    def signer(
        self, scheme: str, message_for: MessagesFor, tweak: frost.TaprootTweak | None = None
    ) -> EpochSigner:
        return EpochSigner(self, scheme, message_for, tweak)

    # -- ceremonies ------------------------------------------------------------------
    def _cggmp(self, plan: HandoverPlan, sid: bytes) -> tuple[bool, set[int], float]:
        """A fresh CGGMP key among the new members (keygen indices in member order)."""
        if self.ecdsa_aux is None:
            return False, set(), 0.0
        members = sorted(plan.new_members)
        shares = ecdsa.local_keygen(
            plan.new_threshold, len(members), self.ecdsa_aux(len(members)), sid
        )
        self.ecdsa_shares[plan.epoch] = dict(zip(members, shares, strict=True))
        return True, set(), 0.0

    def _drop(self, epoch: int) -> None:
        self.ecdsa_shares.pop(epoch, None)
        for held in self.shares.values():
            for key in [k for k in held if k[0] == epoch]:
                del held[key]
        for key in [k for k in self.public if k[0] == epoch]:
            del self.public[key]

    def _keep(self, epoch: int, scheme: str, member: int, key: frost.KeyPackage) -> None:
        self.shares.setdefault(member, {})[(epoch, scheme)] = key

    def _reshare(self, plan: HandoverPlan, scheme: str, sid: bytes) -> tuple[bool, set[int], float]:
        old_public = self.public[(plan.old_epoch, scheme)]
        old_keys = self.keys(plan.old_epoch, scheme)
        old = tuple(m for m in plan.old_members if m in old_keys)
        cluster = Cluster(
            set(old) | set(plan.new_members), seed=self.seed + plan.attempt, epoch=plan.epoch
        )
        sessions: dict[int, ReshareSession] = {}
        for node in cluster.nodes:
            cls = _LyingReshare if node in self.liars and node in old else ReshareSession
            sessions[node] = cls(
                sid,
                plan.epoch,
                node,
                old,
                plan.new_members,
                plan.new_threshold,
                old_public,
                old_keys.get(node),
                self.deadline,
            )
        for node, s in sessions.items():
            cluster.start(node, s, RESHARE_KINDS, RESHARE_PRIVATE)
        cluster.run(self.deadline + 2.0, sessions.values())
        culprits: set[int] = set()
        for node in plan.new_members:
            aborted = cluster.first(node, "aborted")
            if aborted is not None:
                culprits |= set(aborted.data["culprits"])
            complaint = cluster.first(node, "complaint")
            if complaint is not None:
                culprits |= set(complaint.data["accused"])
        keys = {j: sessions[j].key_package for j in plan.new_members}
        if culprits or any(k is None for k in keys.values()):
            return False, culprits, cluster.net.now
        for j, key in keys.items():
            assert key is not None
            self._keep(plan.epoch, scheme, j, key)
        new_public = sessions[plan.new_members[0]].public_key_package
        assert new_public is not None
        self.public[(plan.epoch, scheme)] = new_public
        return True, set(), cluster.net.now

    def _dkg(self, plan: HandoverPlan, scheme: str, sid: bytes) -> tuple[bool, set[int], float]:
        ids = plan.new_members
        cluster = Cluster(ids, seed=self.seed + plan.attempt, epoch=plan.epoch)
        sessions = {
            i: FrostDkgSession(
                sid, plan.epoch, i, ids, plan.new_threshold, SUITES[scheme], self.deadline
            )
            for i in ids
        }
        for i, s in sessions.items():
            cluster.start(i, s, DKG_KINDS, private={"dkg/r2"})
        cluster.run(self.deadline + 1.0, sessions.values())
        culprits: set[int] = set()
        publics = []
        for i in ids:
            ev = cluster.first(i, "key_ready", "aborted")
            if ev is None or ev.name == "aborted":
                culprits |= set(ev.data.get("culprits", ())) if ev is not None else set()
                return False, culprits, cluster.net.now
            self._keep(plan.epoch, scheme, i, ev.data["key_package"])
            publics.append(ev.data["public_key_package"])
        if any(p.raw != publics[0].raw for p in publics):
            return False, set(), cluster.net.now
        self.public[(plan.epoch, scheme)] = publics[0]
        return True, set(), cluster.net.now


@dataclass
class EpochSigner(BlockingSigner):
    """A withdraw-worker `Signer` that signs with the shares of the withdrawal's key epoch.
    Every member's template check includes the epoch: a withdrawal whose recorded epoch is
    not the one the shares belong to is refused."""

    committee: SimCommittee
    scheme: str
    message_for: MessagesFor
    tweak: frost.TaprootTweak | None = None
    signers: dict[int, FrostCommitteeSigner] = field(default_factory=dict)
    records: list[SigningRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        BlockingSigner.__init__(self)

    def sign(self, withdrawal: Withdrawal, session_id: str) -> str:
        epoch = withdrawal.key_epoch
        keys = self.committee.keys(epoch or 0, self.scheme)
        if epoch is None or not keys:
            raise KeyRetired(f"no shares of epoch {epoch} for {withdrawal.withdraw_id}")
        public = self.committee.public[(epoch, self.scheme)]
        corrupt = {m: how for m, how in self.committee.corrupt.items() if m in keys}
        signer = FrostCommitteeSigner(
            keys,
            public,
            public.min_signers,
            _bound(self.message_for, epoch),
            self.tweak,
            corrupt=corrupt or None,
        )
        self.signers[epoch] = signer
        try:
            return signer.sign(withdrawal, session_id)
        finally:
            self.records.extend(signer.records)

    def proven_culprits(self, withdrawal: Withdrawal, session_id: str) -> list[int]:
        """Members whose signature shares failed verification in this session's sub-sessions
        (ROAST excludes a member only on an invalid share)."""
        return sorted(
            {
                c
                for r in self.records
                if r.withdraw_id == withdrawal.withdraw_id
                and r.session_id.startswith(session_id + "/")
                for c in r.culprits
            }
        )


@dataclass
class EcdsaEpochSigner(BlockingSigner):
    """CGGMP signing with the shares of the withdrawal's key epoch (EOA mode, TRON)."""

    committee: SimCommittee
    digest_for: MessageFor

    def __post_init__(self) -> None:
        BlockingSigner.__init__(self)

    def sign(self, withdrawal: Withdrawal, session_id: str) -> str:
        epoch = withdrawal.key_epoch
        shares = self.committee.ecdsa_shares.get(epoch or 0)
        if epoch is None or not shares:
            raise KeyRetired(f"no ECDSA shares of epoch {epoch} for {withdrawal.withdraw_id}")
        ordered = [shares[m] for m in sorted(shares)]

        def digest(w: Withdrawal) -> bytes:
            if w.key_epoch != epoch:
                raise KeyRetired(f"{w.withdraw_id} is recorded under epoch {w.key_epoch}")
            return self.digest_for(w)

        signer = CggmpCommitteeSigner(ordered, ordered[0].threshold, digest)
        return signer.sign(withdrawal, session_id)


def _bound(message_for: MessagesFor, epoch: int) -> Callable[[Withdrawal], bytes | list[bytes]]:
    def bound(w: Withdrawal) -> bytes | list[bytes]:
        if w.key_epoch != epoch:
            raise KeyRetired(f"{w.withdraw_id} is recorded under epoch {w.key_epoch}, not {epoch}")
        return message_for(w)

    return bound


def message_digest(w: Withdrawal) -> bytes:
    """A chain-neutral message for tests and benchmarks: the template hash itself."""
    assert w.template_hash is not None
    return bytes.fromhex(w.template_hash)

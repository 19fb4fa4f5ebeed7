"""Byzantine behaviours and the ROAST paper's attacker levels, and the corrupted member.

A corrupted member is the production `SignerNode` with two things changed: its
sessions come from `ByzantineFactory` (a signer and an aggregator that consult the
adversary at every step), and its wire goes through `ByzantineHost`, which drops,
re-stamps, holds back or replays what the node sends.

Behaviours (what a corrupted node does):
  silent            sends nothing at all
  withhold          offers commitments, never answers a signing request
  invalid-share     answers with a share that does not verify
  equivocate        offers one commitment, signs with the nonces of another
  malformed         answers with bytes that do not decode
  replay            re-sends envelopes it has seen, its own and others'
  stale-epoch       signs its envelopes with the previous committee epoch
  stall-aggregator  when it is the aggregator, never opens a sub-session
  equivocate-aggregator  when aggregator, shows different messages to different signers

Attacker levels (who is corrupted, and when):
  static       f signers fixed before the run, withholding
  coordinated  the same, but their commitments are released one per sub-session,
               so that every sub-session they can reach contains one of them
  adaptive     corrupts one signer of each new sub-session as it opens, up to f
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace

from synod.crypto import frost
from synod.node.faults import corrupt_share
from synod.node.sessions import SessionFactory
from synod.node.signer_node import SignerNode
from synod.protocols.base import Send
from synod.protocols.codec import pack
from synod.protocols.envelope import Envelope, Identity
from synod.protocols.roast import (
    COMMIT,
    OPEN,
    AggregatorSchedule,
    RoastCoordinator,
    RoastSigner,
)
from synod.sim.host import BufferTransport, SimHost, Wire

BEHAVIOURS = (
    "silent",
    "withhold",
    "invalid-share",
    "equivocate",
    "malformed",
    "replay",
    "stale-epoch",
    "stall-aggregator",
    "equivocate-aggregator",
)
LEVELS = ("static", "coordinated", "adaptive")
STRATEGIES = LEVELS + BEHAVIOURS


@dataclass
class Adversary:
    """Decides which nodes are corrupted and how; the simulator consults it."""

    strategy: str
    budget: int
    rng: random.Random
    corrupted: dict[int, str] = field(default_factory=dict)
    held: list[int] = field(default_factory=list)  # coordinated: commitments not yet released

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})"
            )

    @property
    def behaviour(self) -> str:
        return "withhold" if self.strategy in LEVELS else self.strategy

    @classmethod
    def fixed(cls, assignment: dict[int, str], rng: random.Random) -> Adversary:
        """Named nodes with named behaviours (e.g. one silent signer and one liar)."""
        for node, behaviour in assignment.items():
            if behaviour not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {behaviour!r} for node {node}")
        adv = cls("static", len(assignment), rng)
        adv.corrupted = dict(assignment)
        adv.preset = True
        return adv

    preset = False

    def choose_static(self, committee: tuple[int, ...], aggregator_order: tuple[int, ...]) -> None:
        """Corrupt nodes before the run (every strategy but `adaptive`)."""
        if self.preset or self.strategy == "adaptive" or self.budget == 0:
            return
        if self.strategy in ("stall-aggregator", "equivocate-aggregator"):
            victims = list(aggregator_order[: self.budget])  # k bad aggregators in a row
        else:
            victims = self.rng.sample(sorted(committee), self.budget)
        for v in victims:
            self.corrupted[v] = self.behaviour
        if self.strategy == "coordinated":
            # One commitment goes out at once (into the first sub-session); the rest wait.
            self.held = sorted(victims)
            self.rng.shuffle(self.held)
            self.held.pop()

    def on_sub_session(self, signers: tuple[int, ...]) -> list[int]:
        """Called as a sub-session opens; returns nodes whose held commitment is released now."""
        if self.strategy == "adaptive":
            if len(self.corrupted) < self.budget and not any(s in self.corrupted for s in signers):
                victim = self.rng.choice(sorted(signers))
                self.corrupted[victim] = "withhold"
            return []
        if self.strategy == "coordinated" and self.held:
            return [self.held.pop()]
        return []

    def holds_commitment(self, node: int) -> bool:
        return self.strategy == "coordinated" and node in self.held

    def behaviour_of(self, node: int) -> str | None:
        return self.corrupted.get(node)


# -- the corrupted member: a SignerNode with Byzantine sessions and a filtered wire ---------


class ByzantineSigner(RoastSigner):
    """A signer that deviates as the adversary says, from the moment it is corrupted.

    While its node is honest it is exactly `RoastSigner`; the adaptive attacker
    can corrupt it mid-run.
    """

    adversary: Adversary | None = None
    _decoy: frost.SigningCommitments | None = None

    @property
    def behaviour(self) -> str | None:
        return None if self.adversary is None else self.adversary.behaviour_of(self.me)

    def _offer(self, idx: int) -> list[Send]:
        sends = super()._offer(idx)
        if self.behaviour != "equivocate":
            return sends
        # Offer a commitment whose nonces this signer does not hold.
        _, self._decoy = frost.commit(self.key_package)
        return [Send(s.to, s.kind, s.round, pack(idx, self._decoy.to_bytes())) for s in sends]

    def _on_sign(self, idx: int, sub_id: int, raw: bytes) -> list[Send]:
        b = self.behaviour
        if b == "withhold":
            return []
        if b == "equivocate" and self.outstanding is not None:
            # The package carries the decoy; sign as if it carried the real commitment.
            package = frost.SigningPackage.from_bytes(raw)
            swapped = {**package.commitments(), self.me: self.outstanding[1]}
            raw = frost.signing_package(swapped, package.message).to_bytes()
        sends = super()._on_sign(idx, sub_id, raw)
        if b == "malformed":
            return [Send(s.to, s.kind, s.round, b"\x00garbage" + s.payload[:7]) for s in sends]
        if b == "invalid-share":
            return [corrupt_share(s) for s in sends]
        return sends


class EquivocatingCoordinator(RoastCoordinator):
    """An aggregator that shows half the committee the real template, half a forged one."""

    shown: bytes = b""

    def start(self, now: float) -> list[Send]:
        return [
            Send(peer, OPEN, 0, pack(self.agg_index, self.shown if i % 2 else self.message))
            for i, peer in enumerate(self.schedule.committee)
        ]


class ByzantineFactory(SessionFactory):
    """Sessions for a member the adversary may corrupt: its signer consults the adversary
    on every step; on its aggregator turns it stalls or equivocates when told to."""

    signer_type = ByzantineSigner

    def __init__(self, adversary: Adversary) -> None:
        self.adversary = adversary

    def adopt_signer(self, signer: RoastSigner) -> RoastSigner:
        assert isinstance(signer, ByzantineSigner)
        signer.adversary = self.adversary
        return signer

    def roast_coordinator(
        self,
        schedule: AggregatorSchedule,
        agg_index: int,
        me: int,
        threshold: int,
        public: frost.PublicKeyPackage,
        message: bytes,
        tweak: frost.TaprootTweak | None,
    ) -> RoastCoordinator | None:
        behaviour = self.adversary.behaviour_of(me)
        if behaviour in ("stall-aggregator", "silent", "stale-epoch"):
            return None  # its turn passes idle
        if behaviour != "equivocate-aggregator":
            return super().roast_coordinator(
                schedule, agg_index, me, threshold, public, message, tweak
            )
        forged = hashlib.sha256(b"forged template" + message).digest()
        coord = EquivocatingCoordinator(schedule, agg_index, me, threshold, public, forged, tweak)
        coord.shown = message
        return coord


class ByzantineHost(SimHost):
    """A member on the wire as the adversary wants it: silent, re-stamped with a stale
    epoch, holding its commitments back, or replaying what it saw."""

    def __init__(
        self,
        node_id: int,
        node: SignerNode | None,
        transport: BufferTransport,
        adversary: Adversary,
        identity: Identity,
        committee: tuple[int, ...],
        rng: random.Random,
    ) -> None:
        super().__init__(node_id, node, transport)
        self.adversary = adversary
        self.identity = identity
        self.committee = committee
        self.rng = rng
        self.seen: list[bytes] = []
        self.held: Wire = []

    @property
    def behaviour(self) -> str | None:
        return self.adversary.behaviour_of(self.node_id)

    def on_message(self, data: bytes, src: int, now: float) -> Wire:
        if self.node is not None and self.behaviour == "replay":
            self.seen.append(data)
        return super().on_message(data, src, now)

    def on_tick(self, now: float) -> Wire:
        wire = super().on_tick(now)
        if self.node is not None and self.behaviour == "replay" and self.seen:
            for _ in range(2):
                data = self.rng.choice(self.seen)
                wire.append((self.rng.choice(self.committee), data, "replay"))
        return wire

    def outbound(self, wire: Wire) -> Wire:
        behaviour = self.behaviour
        if behaviour == "silent":
            return []
        if behaviour == "stale-epoch":
            restamped: Wire = []
            for to, data, kind in wire:
                env = Envelope.from_bytes(data)
                env = replace(env, epoch=env.epoch - 1).sign(self.identity)
                restamped.append((to, env.to_bytes(), kind))
            wire = restamped
        if self.adversary.holds_commitment(self.node_id):
            self.held += [w for w in wire if w[2] == COMMIT]
            wire = [w for w in wire if w[2] != COMMIT]
        return wire

    def release(self) -> Wire:
        """Coordinated attacker: the commitments held back so far, to send now."""
        held, self.held = self.held, []
        return held

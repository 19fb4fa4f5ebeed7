"""Byzantine behaviours and the ROAST paper's attacker levels.

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

import random
from dataclasses import dataclass, field

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

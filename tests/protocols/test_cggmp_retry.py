"""CGGMP signing cannot be steered by accusations: with at most n − t misbehaving members
(silent, accusing everyone, answering late or to some only, any mix, anywhere in the
schedule) an honest leader names an all-honest subset within `attempt_bound(n, t)`
attempts. The property test drives the real `CggmpSigningDriver` (its leader rule, its
bookkeeping of starts, timeouts and accusations) for every committee up to n = 5, every
threshold, every placement and strategy of the attackers; honest members' accusations are
chosen by the adversary too, since one answering selectively can make them accuse each
other. A simulated end-to-end run with real CGGMP covers the attack of the issue."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from synod.crypto import ecdsa
from synod.protocols.base import Incoming, Send
from synod.protocols.cggmp import DRIVER_KINDS, PRIVATE, START, SUSPECT, CggmpSigningDriver
from synod.protocols.codec import pack, unpack_ints
from synod.protocols.envelope import BROADCAST
from synod.protocols.retry import attempt_bound, choose_subset
from synod.protocols.roast import AggregatorSchedule
from synod.sim.cluster import Cluster
from tests.fixtures import stored_aux

DIGEST = b"\x11" * 32
STRATEGIES = ("silent", "accuse-all", "late", "equivocate")
TURN = 5.0


@pytest.fixture(scope="module")
def shares() -> dict[int, list[ecdsa.KeyShare]]:
    return {n: ecdsa.local_keygen(2, n, stored_aux(n)) for n in (2, 3, 4, 5)}


def attempts_to_sign(
    key_shares: list[ecdsa.KeyShare],
    t: int,
    bad: dict[int, str],
    sid: bytes,
    rng: random.Random,
) -> int:
    """Attempts until an honest leader names an all-honest subset (the attempt that signs)."""
    n = len(key_shares)
    committee = tuple(range(1, n + 1))
    schedule = AggregatorSchedule(sid, 1, committee, 0.0, TURN)
    honest = {
        i: CggmpSigningDriver(
            schedule, i, t, key_shares[i - 1], DIGEST, lambda _s, _m: False, grace=0.1
        )
        for i in committee
        if i not in bad
    }

    def deliver(sender: int, kind: str, k: int, payload: bytes, to: list[int]) -> None:
        for i in to:
            honest[i].receive(Incoming(sender, kind, k, payload), schedule.turn_starts(k) + 0.2)

    for k in range(attempt_bound(n, t) + 1):
        now = schedule.turn_starts(k) + 0.1
        leader = schedule.active(now)
        subset: tuple[int, ...] | None = None
        for i, d in honest.items():
            for s in d.tick(now):
                if s.kind == START:
                    subset = tuple(unpack_ints(s.payload)[1:])
                    assert i == leader
        if subset is not None:
            deliver(leader, START, k, pack(k, *subset), list(honest))
            if not set(subset) & set(bad):
                return k  # an honest leader with honest signers finishes in its turn
        elif leader in bad:
            strategy = bad[leader]
            others = [m for m in committee if m != leader]
            if strategy == "accuse-all":
                chosen = tuple(sorted([leader, *rng.sample(others, t - 1)]))
                deliver(leader, START, k, pack(k, *chosen), list(honest))
            elif strategy in ("late", "equivocate"):
                # An all-honest subset, started with only some of its members: it fails.
                chosen = tuple(sorted(rng.sample(sorted(honest), t)))
                part = rng.sample(sorted(honest), rng.randint(1, len(honest)))
                deliver(leader, START, k, pack(k, *chosen), part)
        # Accusations after the attempt: attackers by strategy, honest ones at random
        # (a selectively answering attacker can make an honest member accuse anyone).
        for i in committee:
            if bad.get(i) == "accuse-all":
                accused = [m for m in committee if m != i]
            elif bad.get(i) in ("late", "equivocate") or i in honest:
                accused = rng.sample(committee, rng.randint(0, n - 1))
            else:
                continue
            deliver(i, SUSPECT, k + 1, pack(k, *accused), list(honest))
    return attempt_bound(n, t) + 1


def scenarios() -> list[tuple[int, int, tuple[int, ...], tuple[str, ...]]]:
    out = []
    for n in (2, 3, 4, 5):
        for t in range(2, n + 1):
            for size in range(1, n - t + 1):
                for placement in itertools.combinations(range(1, n + 1), size):
                    for strategies in itertools.product(STRATEGIES, repeat=size):
                        out.append((n, t, placement, strategies))
    return out


def test_signing_finishes_within_the_bound_for_every_attack(
    shares: dict[int, list[ecdsa.KeyShare]],
) -> None:
    cases = scenarios()
    assert len(cases) > 1000
    worst: dict[tuple[int, int], int] = {}
    for case_no, (n, t, placement, strategies) in enumerate(cases):
        bad = dict(zip(placement, strategies, strict=True))
        for sid in (b"a", b"b"):
            rng = random.Random(f"{case_no}/{sid!r}")
            k = attempts_to_sign(shares[n], t, bad, b"retry-" + sid, rng)
            assert k < attempt_bound(n, t), (n, t, bad, sid)
            worst[(n, t)] = max(worst.get((n, t), 0), k + 1)
    # Accusations only order the choice: in practice far fewer attempts than the bound.
    assert all(worst[key] <= attempt_bound(*key) for key in worst)


def test_choice_prefers_the_member_that_accuses_everyone() -> None:
    accusations = {frozenset({3, 1}): 1, frozenset({3, 2}): 1}
    from collections import Counter

    assert choose_subset((1, 2, 3), 2, 1, [], Counter(accusations)) == (1, 2)
    assert choose_subset((1, 2, 3), 2, 2, [], Counter(accusations)) == (1, 2)
    # A failed set that the leader's first choice does not meet rules that choice out.
    assert choose_subset((1, 2, 3), 2, 1, [frozenset({1, 2})], Counter(accusations)) == (1, 3)


class AccuseEveryone(CggmpSigningDriver):
    """Says nothing but accusations of every other member, at every attempt."""

    def tick(self, now: float) -> list[Send]:
        k = self.schedule.index(now)
        if k in self.led:
            return []
        self.led.add(k)
        others = [m for m in self.committee if m != self.me]
        return [Send(BROADCAST, SUSPECT, k, pack(max(k - 1, 0), *others))]

    def receive(self, msg: Incoming, now: float) -> list[Send]:
        return []


def test_member_accusing_everyone_and_silent_cannot_block_ecdsa() -> None:
    committee = (1, 2, 3)
    key_shares = ecdsa.local_keygen(2, 3, stored_aux(3))
    # A session whose first leader is honest and whose fixed fallback subset holds node 1.
    sid = next(
        s
        for s in (b"accuse" + bytes([i]) for i in range(256))
        if (c := AggregatorSchedule(s, 1, committee, 0.0, TURN).candidates)[0] != 1 and 1 in c[:2]
    )
    schedule = AggregatorSchedule(sid, 1, committee, 0.0, TURN)
    cluster = Cluster(committee, seed=3)
    drivers: dict[int, Any] = {}
    for node in committee:
        cls = AccuseEveryone if node == 1 else CggmpSigningDriver
        d = cls(schedule, node, 2, key_shares[node - 1], DIGEST, lambda _s, m: m == DIGEST)
        drivers[node] = d
        cluster.start(node, d, DRIVER_KINDS, PRIVATE)
    honest = [drivers[2], drivers[3]]
    cluster.run(attempt_bound(3, 2) * TURN, honest)
    assert all(d.signature is not None for d in honest)
    assert all(d.signature.verify(key_shares[0].public_key, DIGEST) for d in honest)

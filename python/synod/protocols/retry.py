"""Which t members sign in the next CGGMP attempt: a rule accusations cannot steer.

Silence cannot be proven, so an accusation ("I never heard from x") is only a hint:
a faulty member may accuse honest ones, and one that answers selectively can make an
honest member accuse another honest one. The rule therefore rests on a fact nobody
can fake: when an attempt led by L with signers S does not finish in its turn, the set
S ∪ {L} contains a misbehaving member (an honest leader with honest signers finishes
within its turn under the round-trip bound).

A leader L picks a *candidate culprit set* H: n − t members, L not among them, that
meets every failed set it knows; it signs with S = committee − H (so t members, itself
included). If H holds every misbehaving member, S is all honest and the attempt
finishes. If it fails, S ∪ {L} is a new failed set that H does not meet, so no honest
leader ever tries H again. There are C(n, t) such sets, so at most C(n, t) − 1 attempts
led by honest members fail; every n consecutive attempts have at least t honest
leaders, hence signing finishes within n · ⌈C(n, t) / t⌉ attempts whatever the
misbehaving members (at most n − t) do. Accusations only order the candidates: the
first tried is the one meeting the most accusation pairs (a pair {accuser, accused}
holds a culprit whenever the accusation is honest), so a silent member is usually
left out at the second attempt, and one that accuses everyone leaves itself out.

Above `MAX_CANDIDATES` combinations (large committees) the leader takes the greedy
choice instead: the n − t members other than itself most often accused or found in
failed sets; the bound above is then not claimed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import combinations

MAX_CANDIDATES = 20_000


def attempt_bound(n: int, t: int) -> int:
    """Attempts within which signing finishes with at most n − t misbehaving members."""
    return n * math.ceil(math.comb(n, t) / t)


def _score(h: frozenset[int], conflicts: Counter[frozenset[int]]) -> int:
    return sum(w for pair, w in conflicts.items() if pair & h)


def choose_subset(
    committee: Sequence[int],
    threshold: int,
    leader: int,
    failed: Iterable[frozenset[int]],
    conflicts: Counter[frozenset[int]],
) -> tuple[int, ...]:
    """The t signers leader `leader` names for its attempt (sorted node ids)."""
    members = sorted(committee)
    f = len(members) - threshold
    failed = list(failed)
    others = [m for m in members if m != leader]
    if f <= 0:
        return tuple(members)
    best: tuple[int, tuple[int, ...]] | None = None
    if math.comb(len(others), f) <= MAX_CANDIDATES:
        for combo in combinations(others, f):
            h = frozenset(combo)
            if any(not (bad & h) for bad in failed):
                continue
            key = (-_score(h, conflicts), combo)
            if best is None or key < best:
                best = key
    if best is None:
        # Too many combinations, or no candidate meets every failed set (more than n − t
        # misbehave, or the round-trip bound was broken): the most accused members.
        accused: Counter[int] = Counter()
        for pair, w in conflicts.items():
            for m in pair:
                accused[m] += w
        for bad in failed:
            for m in bad:
                accused[m] += 1
        ranked = sorted(others, key=lambda m: (-accused[m], m))
        best = (0, tuple(ranked[:f]))
    left_out = set(best[1])
    return tuple(m for m in members if m not in left_out)

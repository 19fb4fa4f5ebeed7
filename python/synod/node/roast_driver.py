"""The aggregator side of ROAST at one node: whose turn it is, and opening ours.

Every node derives the same aggregator schedule from the session id, the epoch and
the committee (`AggregatorSchedule`); on each tick a node whose turn has come
starts a `RoastCoordinator` for that turn, once. Signers answer only the aggregator
whose turn it is, so a silent or stalling aggregator costs one turn, and the next
candidate in the permutation takes over without anyone electing it.
"""

from __future__ import annotations

from collections.abc import Callable

from synod.crypto import frost
from synod.protocols.base import Event
from synod.protocols.roast import COMMIT, SHARE, AggregatorSchedule, RoastCoordinator
from synod.protocols.router import Outbound, Router

COORDINATOR_KINDS = frozenset({COMMIT, SHARE})


class AggregatorTurns:
    """Opens this node's aggregator turns for one signing session."""

    def __init__(
        self,
        schedule: AggregatorSchedule,
        me: int,
        threshold: int,
        public: frost.PublicKeyPackage,
        message: bytes,
        tweak: frost.TaprootTweak | None,
        make: Callable[[int], RoastCoordinator | None],
        announce: Callable[[Event], None],
    ) -> None:
        self.schedule = schedule
        self.me = me
        self.threshold = threshold
        self.public = public
        self.message = message
        self.tweak = tweak
        self._make = make
        self._announce = announce
        self.turns: dict[int, RoastCoordinator | None] = {}  # None: a turn that passed idle

    @property
    def coordinators(self) -> list[RoastCoordinator]:
        return [c for c in self.turns.values() if c is not None]

    def tick(self, router: Router, now: float) -> list[Outbound]:
        idx = self.schedule.index(now)
        if self.schedule.active(now) != self.me or idx in self.turns:
            return []
        coord = self._make(idx)
        self.turns[idx] = coord
        if coord is None:
            return []
        self._announce(Event("aggregator_turn", {"index": idx, "coordinator": coord}))
        return router.register(coord, COORDINATOR_KINDS, now)

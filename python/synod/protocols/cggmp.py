"""CGGMP threshold-ECDSA sessions over the network layer, sans-I/O.

`CggmpRun` carries one run of a crate protocol (aux info, keygen, presigning,
signing) between nodes: crate broadcasts become envelopes of kind
``cggmp/bcast``, crate point-to-point messages become sealed ``cggmp/p2p``
envelopes. Nodes are mapped to the crate's keygen indices by their position
in the sorted committee.

`CggmpSigningDriver` makes signing finish when parties stall: attempts are led
in turn by the aggregator schedule of `synod.protocols.roast`; the leader of
attempt k names t signers by the rule of `synod.protocols.retry` (every attempt
that ran out of time pins a misbehaving member in its signers or leader; when an
attempt times out its participants broadcast whom they never heard from, which
only orders the leader's choices), so with at most n − t misbehaving members
signing finishes within `retry.attempt_bound(n, t)` attempts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from synod.crypto import ecdsa
from synod.crypto.errors import CryptoError
from synod.protocols.base import Incoming, Send, Session
from synod.protocols.codec import (
    CodecError,
    pack,
    pack_node_ids,
    unpack,
    unpack_ints,
    unpack_node_ids,
)
from synod.protocols.envelope import BROADCAST
from synod.protocols.retry import choose_subset
from synod.protocols.roast import AggregatorSchedule, TemplateValidator

BCAST, P2P = "cggmp/bcast", "cggmp/p2p"
START, SUSPECT, DONE = "cggmp/start", "cggmp/suspect", "cggmp/done"
PSTART, PARTIAL = "cggmp/pstart", "cggmp/partial"  # an attempt from a presignature
RUN_KINDS = {BCAST, P2P}
DRIVER_KINDS = {BCAST, P2P, START, SUSPECT, DONE, PSTART, PARTIAL}
PRIVATE = {P2P}


class PresignatureSource(Protocol):
    """A member's presignature pool as the signing driver sees it."""

    def choose(self, key_id: str) -> tuple[str, tuple[int, ...]] | None:
        """A fresh presignature of `key_id` whose signers (node ids) all look reachable:
        (its id, its signers), or None (then the attempt signs interactively)."""
        ...

    def signers_of(self, presignature_id: str, key_id: str) -> tuple[int, ...] | None:
        """The signers (the crate's indices) of a fresh presignature of `key_id` held here,
        or None; takes nothing, so a request naming it wrongly leaves it in the pool."""
        ...

    def take(self, presignature_id: str) -> ecdsa.Presignature | None:
        """Take it out for good (erased from the store before this returns, from disk by
        `settle`); None if not fresh here."""
        ...

    def settle(self) -> None:
        """Finish what takes left to do off the critical path (see `NonceStore.settle`)."""
        ...


class CggmpRun(Session):
    """One party's run of one crate protocol among `parties` (node ids)."""

    def __init__(
        self,
        session_id: bytes,
        epoch: int,
        me: int,
        committee: Sequence[int],
        parties: Sequence[int],
        make: Callable[[], ecdsa.Session[Any]],
        deadline: float,
        attempt: int = 0,
    ) -> None:
        super().__init__(session_id, epoch, me, tuple(sorted(parties)))
        self.committee = tuple(sorted(committee))
        self.deadline = deadline
        self.attempt = attempt
        self.heard: Counter[int] = Counter()
        self.output: Any = None
        self.failed = False
        self._make = make
        self.inner: ecdsa.Session[Any] | None = None

    def index_of(self, node: int) -> int:
        return self.committee.index(node)

    def node_of(self, index: int) -> int:
        return self.committee[index]

    def start(self, now: float) -> list[Send]:
        try:
            self.inner = self._make()
        except CryptoError as err:
            return self._fail("refused", [], str(err))
        return self._drain()

    def _drain(self) -> list[Send]:
        assert self.inner is not None
        out = []
        for recipient, msg in self.inner.outgoing():
            if recipient is None:  # a crate broadcast goes to the run's parties only
                out += [
                    Send(p, BCAST, self.attempt, msg) for p in self.participants if p != self.me
                ]
            else:
                out.append(Send(self.node_of(recipient), P2P, self.attempt, msg, private=True))
        if self.inner.done and not self.done:
            self.done = True
            try:
                self.output = self.inner.output
            except CryptoError as err:
                self.done = False
                return out + self._fail("aborted", list(err.culprits), str(err))
            self._emit("output", output=self.output, attempt=self.attempt)
        return out

    def receive(self, msg: Incoming, now: float) -> list[Send]:
        if self.done or self.inner is None or msg.sender not in self.participants:
            return []
        if msg.round != self.attempt or msg.kind not in RUN_KINDS:
            self._emit("dropped", reason="other_attempt", sender=msg.sender)
            return []
        self.heard[msg.sender] += 1
        try:
            self.inner.receive(self.index_of(msg.sender), msg.kind == BCAST, msg.payload)
        except CryptoError as err:
            culprits = [self.node_of(c) for c in err.culprits if c < len(self.committee)]
            return self._fail("aborted", culprits or [msg.sender], str(err))
        return self._drain()

    def suspects(self) -> list[int]:
        """Parties that sent fewer messages than the most talkative one (stalled somewhere)."""
        others = [p for p in self.participants if p != self.me]
        most = max((self.heard[p] for p in others), default=0)
        return sorted(p for p in others if self.heard[p] < most or most == 0)

    def tick(self, now: float) -> list[Send]:
        if self.done or now < self.deadline:
            return []
        return self._fail("timeout", self.suspects(), "protocol did not finish in time")

    def _fail(self, reason: str, culprits: list[int], detail: str) -> list[Send]:
        self.done = True
        self.failed = True
        self._emit(
            "aborted",
            reason=reason,
            culprits=sorted(set(culprits)),
            detail=detail,
            attempt=self.attempt,
        )
        return []


class CggmpSigningDriver(Session):
    """Signs one digest with t of the committee, retrying with other subsets on stalls."""

    def __init__(
        self,
        schedule: AggregatorSchedule,
        me: int,
        threshold: int,
        key_share: ecdsa.KeyShare,
        digest: bytes,
        validator: TemplateValidator,
        path: Sequence[int] = (),
        grace: float | None = None,
        presignatures: PresignatureSource | None = None,
        key_id: str = "",
    ) -> None:
        """With `presignatures` (and no derivation `path`), the first attempt's leader signs
        from a presignature when its pool has one for `key_id`: one round of partial
        signatures instead of the interactive protocol, which later attempts fall back to."""
        super().__init__(schedule.session_id, schedule.epoch, me, schedule.committee)
        self.schedule = schedule
        self.threshold = threshold
        self.key_share = key_share
        self.digest = digest
        self.validator = validator
        self.path = list(path)
        self.grace = schedule.rotate_timeout / 20 if grace is None else grace
        self.committee = tuple(sorted(schedule.committee))
        # What the retry rule knows: attempts seen started (attempt -> leader, signers),
        # sets that each hold a misbehaving member, and accusation pairs (bounded by n²).
        self.starts: dict[int, tuple[int, tuple[int, ...]]] = {}
        self.failed: list[frozenset[int]] = []
        self._closed_attempts: set[int] = set()
        self.accusations: set[tuple[int, int]] = set()  # (accuser, accused)
        self.led: set[int] = set()
        self.run: CggmpRun | None = None
        self.attempts_started = 0
        self.signature: ecdsa.Signature | None = None
        self.public_key = (
            key_share.derive_public_key(self.path) if self.path else key_share.public_key
        )
        self.presignatures = presignatures if not self.path else None
        self.key_id = key_id
        # presigned attempts: attempt -> (its signers, the partial signatures heard so far)
        self.presigned: dict[int, tuple[tuple[int, ...], dict[int, ecdsa.PartialSignature]]] = {}

    # -- leader side -----------------------------------------------------------
    @property
    def suspected(self) -> set[int]:
        """Members someone accused (a report, not a verdict: see `synod.protocols.retry`)."""
        return {accused for _, accused in self.accusations}

    def conflicts(self) -> Counter[frozenset[int]]:
        """Accusation pairs {accuser, accused}, weighted by how many directions were said."""
        return Counter(frozenset(pair) for pair in self.accusations)

    def subset_for(self, k: int) -> tuple[int, ...]:
        """The t signers this node names as leader of attempt k (`retry.choose_subset`)."""
        return choose_subset(self.committee, self.threshold, self.me, self.failed, self.conflicts())

    def _accuse(self, accuser: int, accused: Iterable[int]) -> None:
        for x in accused:
            if x != accuser and x in self.committee and accuser in self.committee:
                self.accusations.add((accuser, x))

    def _close_attempts(self, current: int) -> None:
        """Every started attempt before `current` that did not sign pins a culprit."""
        for k, (leader, subset) in self.starts.items():
            if k < current and k not in self._closed_attempts:
                self._closed_attempts.add(k)
                if k in self.presigned:
                    continue  # a presignature one signer no longer holds proves no misbehaviour
                self.failed.append(frozenset(subset) | {leader})

    def start(self, now: float) -> list[Send]:
        return self.tick(now)  # a leader with a presignature need not wait for the next tick

    def tick(self, now: float) -> list[Send]:
        if self.done:
            return []
        out: list[Send] = []
        k = self.schedule.index(now)
        if k == 0 and self.schedule.active(now) == self.me and k not in self.led:
            chosen = self.presignatures.choose(self.key_id) if self.presignatures else None
            if chosen is not None:
                self.led.add(k)
                pid, subset = chosen
                out.append(Send(BROADCAST, PSTART, k, pack(k, pid.encode(), pack_node_ids(subset))))
                self._emit("attempt", attempt=k, signers=subset, presignature=pid)
        self._close_attempts(k)
        if self.run is not None and self.run.attempt < k and not self.run.done:
            # Our attempt ran out of time: say whom we never heard from enough.
            suspects = self.run.suspects()
            self.run.done = True
            self._emit("attempt_timeout", attempt=self.run.attempt, suspects=suspects)
            self._accuse(self.me, suspects)
            out.append(Send(BROADCAST, SUSPECT, k, pack(self.run.attempt, *suspects)))
        if (
            self.schedule.active(now) == self.me
            and k not in self.led
            and now >= self.schedule.turn_starts(k) + self.grace
        ):
            self.led.add(k)
            subset = self.subset_for(k)
            out.append(Send(BROADCAST, START, k, pack(k, *subset)))
            self._emit("attempt", attempt=k, signers=subset)
        if self.run is not None:
            out += self.run.tick(now)
        return out

    # -- everyone --------------------------------------------------------------
    def receive(self, msg: Incoming, now: float) -> list[Send]:
        if self.done or self._foreign(msg):
            return []
        try:
            if msg.kind == START:
                return self._on_start(msg, now)
            if msg.kind == SUSPECT:
                fields = unpack_ints(msg.payload)
                self._accuse(msg.sender, fields[1:])
                return []
            if msg.kind == DONE:
                return self._on_done(msg)
            if msg.kind == PSTART:
                return self._on_presigned_start(msg, now)
            if msg.kind == PARTIAL:
                return self._on_partial(msg, now)
        except CodecError as err:
            self._emit("dropped", reason="malformed", sender=msg.sender, detail=str(err))
            return []
        if msg.kind in RUN_KINDS:
            if self.run is not None and self.run.attempt == msg.round:
                return self.run.receive(msg, now) + self._check_run()
            if msg.round >= self.schedule.index(now):
                self._keep_early(msg)  # its START has not reached us yet
                return []
            self._emit("dropped", reason="stale_attempt", sender=msg.sender, attempt=msg.round)
            return []
        self._emit("dropped", reason="unexpected", sender=msg.sender, kind=msg.kind)
        return []

    def _admit_start(self, msg: Incoming, k: int, subset: tuple[int, ...], now: float) -> bool:
        """An attempt's start from the member whose turn it is, naming t committee members;
        recorded for the retry rule. False (and a drop) otherwise."""
        current = self.schedule.index(now)
        leader = self.schedule.candidates[k % len(self.schedule.candidates)]
        if k != current or msg.sender != leader:
            self._emit("dropped", reason="stale_leader", sender=msg.sender, attempt=k)
            return False
        if (
            len(subset) != self.threshold
            or len(set(subset)) != self.threshold
            or not set(subset) <= set(self.committee)
        ):
            self._emit("dropped", reason="bad_subset", sender=msg.sender, attempt=k)
            return False
        self.starts.setdefault(k, (leader, subset))
        return True

    def _on_start(self, msg: Incoming, now: float) -> list[Send]:
        fields = unpack_ints(msg.payload)
        if not fields:
            raise CodecError("empty start message")
        k, subset = fields[0], tuple(fields[1:])
        if not self._admit_start(msg, k, subset, now) or self.me not in subset:
            return []
        if not self.validator(self.session_id, self.digest):
            self._emit("refused", reason="template_mismatch", attempt=k)
            return []
        ids = pack_node_ids(subset)
        eid = hashlib.sha256(self.session_id + k.to_bytes(8, "big") + ids).digest()
        signers = [self.committee.index(s) for s in subset]

        def make() -> ecdsa.SignSession:
            return ecdsa.SignSession(eid, self.key_share, signers, self.digest, self.path)

        deadline = self.schedule.turn_starts(k + 1)
        self.run = CggmpRun(
            self.session_id, self.epoch, self.me, self.committee, subset, make, deadline, attempt=k
        )
        self.attempts_started += 1
        out = self.run.start(now)
        for m in self._release_early(k):
            if m.round != k:
                continue  # an earlier attempt's message: that attempt is over
            out += self.run.receive(m, now)
        return out + self._check_run()

    # -- an attempt from a presignature ------------------------------------------
    def _on_presigned_start(self, msg: Incoming, now: float) -> list[Send]:
        k, raw_pid, raw_ids = unpack(msg.payload, "ibb")
        assert isinstance(k, int) and isinstance(raw_pid, bytes) and isinstance(raw_ids, bytes)
        subset = unpack_node_ids(raw_ids, len(self.committee))
        if k in self.presigned or not self._admit_start(msg, k, subset, now):
            return []
        self.presigned[k] = (subset, {})
        out: list[Send] = []
        if self.me in subset:
            out += self._issue_partial(k, raw_pid.decode(errors="replace"), subset)
        for m in self._release_early(k):
            if m.round == k and m.kind == PARTIAL:
                out += self._on_partial(m, now)
        return out

    def _issue_partial(self, k: int, pid: str, subset: tuple[int, ...]) -> list[Send]:
        """Everything that can be checked is checked before the presignature is taken (and
        erased): a request naming it with another key or signer set leaves it in the pool."""
        if not self.validator(self.session_id, self.digest):
            self._emit("refused", reason="template_mismatch", attempt=k)
            return []
        source = self.presignatures
        held = source.signers_of(pid, self.key_id) if source else None
        if source is None or held is None:  # unknown here, or used up: the attempt times out
            self._emit("refused", reason="no_presignature", attempt=k, presignature=pid)
            return []
        indices = tuple(self.committee.index(s) for s in subset)
        if held != indices:
            self._emit("refused", reason="presignature_signers", attempt=k, presignature=pid)
            return []
        presignature = source.take(pid)
        if presignature is None:  # damaged in the store: gone, the attempt times out
            self._emit("refused", reason="no_presignature", attempt=k, presignature=pid)
            return []
        if presignature.signers != indices:  # the store's record of it was wrong
            self._emit("refused", reason="presignature_signers", attempt=k, presignature=pid)
            return []
        try:
            partial = presignature.sign(self.digest)
        except CryptoError as err:
            self._emit("refused", reason="presignature_unusable", attempt=k, detail=str(err))
            return []
        return [Send(BROADCAST, PARTIAL, k, partial.to_bytes())]

    def _on_partial(self, msg: Incoming, now: float) -> list[Send]:
        attempt = self.presigned.get(msg.round)
        if attempt is None:
            if msg.round >= self.schedule.index(now):
                self._keep_early(msg)  # its PSTART has not reached us yet
            else:
                self._emit("dropped", reason="stale_attempt", sender=msg.sender)
            return []
        subset, partials = attempt
        if msg.sender not in subset or msg.sender in partials:
            self._emit("dropped", reason="unexpected", sender=msg.sender, kind=msg.kind)
            return []
        try:
            partials[msg.sender] = ecdsa.PartialSignature.from_bytes(msg.payload)
        except CryptoError:
            self._emit("dropped", reason="malformed", sender=msg.sender, kind=msg.kind)
            return []
        if len(partials) < len(subset):
            return []
        try:
            sig = ecdsa.combine(list(partials.values()), self.digest, self.public_key)
        except CryptoError as err:  # a bad partial: this attempt fails, the next is interactive
            self._emit("attempt_failed", attempt=msg.round, detail=str(err))
            return []
        self.signature = sig
        self.done = True
        self._emit("signed", signature=sig, attempt=msg.round, signers=subset, presigned=True)
        leader, _ = self.starts[msg.round]
        # every member hears the partials; the leader also says DONE for one that missed some
        return [Send(BROADCAST, DONE, msg.round, sig.encode())] if leader == self.me else []

    def _check_run(self) -> list[Send]:
        run = self.run
        if run is None or not run.done or run.failed or run.output is None:
            if run is not None and run.failed:
                self._accuse(self.me, run.suspects())
            return []
        sig: ecdsa.Signature = run.output
        self.signature = sig
        self.done = True
        self._emit("signed", signature=sig, attempt=run.attempt, signers=run.participants)
        return [Send(BROADCAST, DONE, run.attempt, sig.encode())]

    def _on_done(self, msg: Incoming) -> list[Send]:
        try:
            sig = ecdsa.Signature.decode(msg.payload)
        except CryptoError:
            self._emit("dropped", reason="bad_signature", sender=msg.sender)
            return []
        if not sig.verify(self.public_key, self.digest):
            self._emit("dropped", reason="bad_signature", sender=msg.sender)
            return []
        self.signature = sig
        self.done = True
        self._emit("signed", signature=sig, attempt=msg.round, reported_by=msg.sender)
        return []

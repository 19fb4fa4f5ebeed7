"""FROST distributed key generation as a sans-I/O session.

Rounds: (1) broadcast the round-1 package; (2) echo a digest of every round-1
package received, so a sender that showed different packages to different
parties is caught before anyone uses them; (3) send each participant its
round-2 share, sealed; (4) broadcast a digest of the resulting public key
package so everyone knows all derived the same group key.

Any verification failure aborts cleanly with an `aborted` event naming the
culprits (the crate attributes bad proofs and bad shares to their sender);
silence past the deadline aborts naming the parties that did not answer.
"""

from __future__ import annotations

import hashlib

from synod.crypto import frost
from synod.crypto.errors import CryptoError, DecodeError
from synod.protocols.base import Incoming, Send, Session
from synod.protocols.codec import CodecError, blame, pack_map, read_blame, unpack_map

R1, ECHO, R2, ACK = 1, 2, 3, 4
KINDS = frozenset({"dkg/r1", "dkg/echo", "dkg/r2", "dkg/ack", "dkg/abort"})
PRIVATE = frozenset({"dkg/r2"})


class FrostDkgSession(Session):
    """One participant's view of a FROST DKG among `participants` with threshold `threshold`."""

    def __init__(
        self,
        session_id: bytes,
        epoch: int,
        me: int,
        participants: tuple[int, ...],
        threshold: int,
        suite: frost.Ciphersuite,
        deadline: float,
    ) -> None:
        super().__init__(session_id, epoch, me, tuple(sorted(participants)))
        self.threshold = threshold
        self.suite = suite
        self.deadline = deadline
        self.others = tuple(p for p in self.participants if p != me)
        self.r1: dict[int, frost.DkgRound1Package] = {}
        self.echoes: dict[int, dict[int, bytes]] = {}
        self.r2: dict[int, frost.DkgRound2Package] = {}
        self.acks: dict[int, bytes] = {}
        self._secret1: frost.DkgRound1Secret | None = None
        self._secret2: frost.DkgRound2Secret | None = None
        self.key_package: frost.KeyPackage | None = None
        self.public_key_package: frost.PublicKeyPackage | None = None

    def start(self, now: float) -> list[Send]:
        self._secret1, package = frost.dkg_part1(
            self.suite, self.me, len(self.participants), self.threshold
        )
        self.r1[self.me] = package
        self.round = R1
        return [self._broadcast("dkg/r1", package.to_bytes())]

    def _on_message(self, msg: Incoming, now: float) -> list[Send]:
        try:
            if msg.kind == "dkg/r1" and msg.round == R1:
                return self._on_r1(msg, now)
            if msg.kind == "dkg/echo" and msg.round == ECHO:
                return self._on_echo(msg, now)
            if msg.kind == "dkg/r2" and msg.round == R2:
                return self._on_r2(msg, now)
            if msg.kind == "dkg/ack" and msg.round == ACK:
                return self._on_ack(msg)
        except (CodecError, DecodeError) as err:
            return self._abort("malformed", [msg.sender], str(err))
        except CryptoError as err:
            return self._abort("invalid", list(err.culprits), str(err))
        self._emit("dropped", reason="unexpected", sender=msg.sender, kind=msg.kind)
        return []

    def _on_r1(self, msg: Incoming, now: float) -> list[Send]:
        package = frost.receive_dkg_round1_package(msg.payload, self.suite, self.threshold)
        seen = self.r1.get(msg.sender)
        if seen is not None:
            if seen != package:
                return self._abort("equivocation", [msg.sender], "two different round-1 packages")
            return []
        self.r1[msg.sender] = package
        if len(self.r1) < len(self.participants):
            return []
        digests = {i: hashlib.sha256(p.raw).digest() for i, p in self.r1.items()}
        self.echoes[self.me] = digests
        out = [self._broadcast("dkg/echo", pack_map(digests), ECHO)]
        return out + self._advance_round(ECHO, now) + self._maybe_r2(now)

    def _on_echo(self, msg: Incoming, now: float) -> list[Send]:
        self.echoes[msg.sender] = unpack_map(msg.payload)
        return self._maybe_r2(now)

    def _maybe_r2(self, now: float) -> list[Send]:
        if self.round != ECHO or len(self.echoes) < len(self.participants):
            return []
        mine = self.echoes[self.me]
        for k, theirs in self.echoes.items():
            for j, digest in theirs.items():
                if mine.get(j) != digest:
                    # j showed k a different package than us, or k lies about it.
                    return self._abort("equivocation", sorted({j, k}), "round-1 views differ")
        assert self._secret1 is not None
        others = {j: self.r1[j] for j in self.others}
        self._secret2, outgoing = frost.dkg_part2(self._secret1, others)
        self._secret1 = None
        sends = [Send(j, "dkg/r2", R2, pkg.to_bytes(), private=True) for j, pkg in outgoing.items()]
        return sends + self._advance_round(R2, now)

    def _on_r2(self, msg: Incoming, now: float) -> list[Send]:
        if msg.sender in self.r2:
            return []
        self.r2[msg.sender] = frost.DkgRound2Package.from_bytes(msg.payload)
        if len(self.r2) < len(self.others):
            return []
        assert self._secret2 is not None
        others = {j: self.r1[j] for j in self.others}
        self.key_package, self.public_key_package = frost.dkg_part3(self._secret2, others, self.r2)
        self._secret2 = None
        digest = hashlib.sha256(self.public_key_package.raw).digest()
        self.acks[self.me] = digest
        out = [self._broadcast("dkg/ack", digest, ACK)]
        return out + self._advance_round(ACK, now) + self._maybe_finish()

    def _on_ack(self, msg: Incoming) -> list[Send]:
        self.acks[msg.sender] = msg.payload
        return self._maybe_finish()

    def _maybe_finish(self) -> list[Send]:
        if self.round != ACK or len(self.acks) < len(self.participants):
            return []
        mine = self.acks[self.me]
        differ = sorted(k for k, d in self.acks.items() if d != mine)
        if differ:
            return self._abort("inconsistent", differ, "participants derived different group keys")
        self.done = True
        assert self.public_key_package is not None
        self._emit(
            "key_ready",
            key_package=self.key_package,
            public_key_package=self.public_key_package,
        )
        return []

    def _buffers(self, msg: Incoming) -> bool:
        return msg.round in (ECHO, R2, ACK)

    def tick(self, now: float) -> list[Send]:
        if self.done or now < self.deadline:
            return []
        have: dict[int, set[int]] = {
            R1: set(self.r1),
            ECHO: set(self.echoes),
            R2: {*self.r2, self.me},
            ACK: set(self.acks),
        }
        missing = [p for p in self.participants if p not in have.get(self.round, set())]
        return self._abort("timeout", missing, f"no answer in round {self.round}")

    def _abort(self, reason: str, culprits: list[int], detail: str) -> list[Send]:
        """Stop, wipe secrets, and tell the others whom we blame (they cannot check a private
        share, so they abort too and record who made the accusation)."""
        self.done = True
        self._secret1 = self._secret2 = None
        blamed = sorted(set(culprits))
        self._emit("aborted", reason=reason, culprits=blamed, detail=detail)
        if reason == "peer_abort":
            return []
        return [self._broadcast("dkg/abort", blame(blamed), 0)]

    def receive(self, msg: Incoming, now: float) -> list[Send]:
        if msg.kind == "dkg/abort" and not self.done and msg.sender in self.participants:
            accused = read_blame(msg.payload, msg.sender)
            self.done = True
            self._secret1 = self._secret2 = None
            self._emit("aborted", reason="peer_abort", culprits=accused, reported_by=msg.sender)
            return []
        return super().receive(msg, now)

"""Resharing a FROST key from an old committee to a new one, as a sans-I/O session.

Old signers in the agreed set S (at least the old threshold) each send every new
signer a Feldman commitment and, sealed, its sub-share (`frost.reshare_part1`).
Each new signer checks every contribution against the old verifying shares
(`frost.reshare_part2`, naming culprits), derives its new share, and
broadcasts a digest of the new public key package. Everyone counts matching
digests: once the *new* threshold of new signers acknowledged the same
package, new signers activate their share and old signers retire theirs.
Until then the old shares stay valid, so a failed reshare loses nothing. A new
signer that received a bad contribution aborts, names the old signer, and
tells the others, who record the complaint; if the rest still reach the new
threshold, the accuser's share is restored later by repair (`frost.repair_*`).
"""

from __future__ import annotations

import hashlib
from collections import Counter

from synod.crypto import frost
from synod.crypto.errors import CryptoError, DecodeError
from synod.protocols.base import Incoming, Send, Session
from synod.protocols.codec import CodecError, blame, read_blame

COMMIT, SHARE, ACK, ABORT = "reshare/commit", "reshare/share", "reshare/ack", "reshare/abort"
KINDS = {COMMIT, SHARE, ACK, ABORT}
PRIVATE = {SHARE}


class ReshareSession(Session):
    def __init__(
        self,
        session_id: bytes,
        epoch: int,
        me: int,
        old_signers: tuple[int, ...],
        new_ids: tuple[int, ...],
        new_threshold: int,
        old_public: frost.PublicKeyPackage,
        old_key: frost.KeyPackage | None,
        deadline: float,
    ) -> None:
        participants = tuple(sorted(set(old_signers) | set(new_ids)))
        super().__init__(session_id, epoch, me, participants)
        self.old_signers = tuple(sorted(old_signers))
        self.new_ids = tuple(sorted(new_ids))
        self.new_threshold = new_threshold
        self.old_public = old_public
        self.old_key = old_key
        self.deadline = deadline
        if me in self.old_signers and old_key is None:
            raise ValueError("an old signer needs its old key package")
        self.commitments: dict[int, frost.ReshareCommitment] = {}
        self.shares: dict[int, frost.ReshareShare] = {}
        self.acks: dict[int, bytes] = {}
        self.key_package: frost.KeyPackage | None = None
        self.public_key_package: frost.PublicKeyPackage | None = None
        self.activated = False
        self.retired = False

    @property
    def is_old(self) -> bool:
        return self.me in self.old_signers

    @property
    def is_new(self) -> bool:
        return self.me in self.new_ids

    def start(self, now: float) -> list[Send]:
        if not self.is_old:
            return []
        assert self.old_key is not None
        commitment, shares = frost.reshare_part1(
            self.old_key, self.old_signers, self.new_ids, self.new_threshold
        )
        out = [Send(j, COMMIT, 1, commitment.to_bytes()) for j in self.new_ids]
        out += [Send(j, SHARE, 1, shares[j].to_bytes(), private=True) for j in self.new_ids]
        return out

    def _buffers(self, msg: Incoming) -> bool:
        return False

    def receive(self, msg: Incoming, now: float) -> list[Send]:
        if msg.kind == ABORT and not self.done and msg.sender in self.new_ids:
            accused = read_blame(msg.payload, msg.sender)
            if self.key_package is not None or self.is_old:
                # Our own view is sound; the accuser needs a repair, the accused a penalty.
                self._emit("complaint", accused=accused, reported_by=msg.sender)
                return []
            return self._abort("peer_abort", accused, f"reported by {msg.sender}", tell=False)
        return super().receive(msg, now)

    def _on_message(self, msg: Incoming, now: float) -> list[Send]:
        try:
            if msg.kind in (COMMIT, SHARE) and self.is_new and msg.sender in self.old_signers:
                return self._on_contribution(msg)
            if msg.kind == ACK and msg.sender in self.new_ids:
                self.acks.setdefault(msg.sender, msg.payload)
                return self._count_acks()
        except (CodecError, DecodeError) as err:
            return self._abort("malformed", [msg.sender], str(err))
        except CryptoError as err:
            return self._abort("invalid", list(err.culprits), str(err))
        self._emit("dropped", reason="unexpected", sender=msg.sender, kind=msg.kind)
        return []

    def _on_contribution(self, msg: Incoming) -> list[Send]:
        if msg.kind == COMMIT:
            commitment = frost.receive_reshare_commitment(
                msg.payload, self.old_public.suite, self.new_threshold
            )
            self.commitments.setdefault(msg.sender, commitment)
        else:
            self.shares.setdefault(msg.sender, frost.ReshareShare.from_bytes(msg.payload))
        if self.key_package is not None or not all(
            i in self.commitments and i in self.shares for i in self.old_signers
        ):
            return []
        self.key_package, self.public_key_package = frost.reshare_part2(
            self.me,
            self.new_ids,
            self.new_threshold,
            self.old_public,
            self.commitments,
            self.shares,
        )
        self._emit(
            "key_ready", key_package=self.key_package, public_key_package=self.public_key_package
        )
        digest = hashlib.sha256(self.public_key_package.raw).digest()
        self.acks[self.me] = digest
        return [self._broadcast(ACK, digest, 0), *self._count_acks()]

    def _count_acks(self) -> list[Send]:
        if not self.acks:
            return []
        digest, count = Counter(self.acks.values()).most_common(1)[0]
        if count < self.new_threshold:
            return []
        if self.is_new and not self.activated:
            mine = self.acks.get(self.me)
            if mine == digest:
                self.activated = True
                self._emit("activated", public_key_package=self.public_key_package, acks=count)
        if self.is_old and not self.retired:
            self.retired = True
            self._emit("retire_old_share", acks=count)
        if (not self.is_new or self.activated) and (not self.is_old or self.retired):
            self.done = True
        return []

    def tick(self, now: float) -> list[Send]:
        if self.done or now < self.deadline:
            return []
        if self.is_new and self.key_package is None:
            missing = [
                i for i in self.old_signers if i not in self.commitments or i not in self.shares
            ]
            return self._abort("timeout", missing, "old signers did not contribute")
        silent = [j for j in self.new_ids if j not in self.acks]
        return self._abort("timeout", silent, "new signers did not acknowledge", tell=False)

    def _abort(
        self, reason: str, culprits: list[int], detail: str, tell: bool = True
    ) -> list[Send]:
        """Give up; old shares stay valid (nothing was retired), new ones are dropped."""
        self.done = True
        self.key_package = None
        blamed = sorted(set(culprits))
        self._emit("aborted", reason=reason, culprits=blamed, detail=detail)
        if tell and self.is_new:
            return [self._broadcast(ABORT, blame(blamed), 0)]
        return []

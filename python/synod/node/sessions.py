"""Where a node's protocol sessions come from.

`SessionFactory` builds the production sessions. It is the one seam through which a
test harness changes how a member behaves (the simulator's Byzantine members
subclass it), so everything else a faulty member runs is the production node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from synod.crypto import ecdsa, frost
from synod.protocols.cggmp import CggmpRun, CggmpSigningDriver, PresignatureSource
from synod.protocols.dkg import FrostDkgSession
from synod.protocols.nonces import NonceStore
from synod.protocols.reshare import ReshareSession
from synod.protocols.roast import (
    AggregatorSchedule,
    RoastCoordinator,
    RoastSigner,
    TemplateValidator,
)


class SessionFactory:
    signer_type: type[RoastSigner] = RoastSigner
    """The ROAST signer class; a harness swaps in a subclass that deviates."""

    def roast_signer(
        self,
        schedule: AggregatorSchedule,
        me: int,
        key_package: frost.KeyPackage,
        public: frost.PublicKeyPackage,
        validator: TemplateValidator,
        nonces: NonceStore,
        tweak: frost.TaprootTweak | None,
        message: bytes | None,
    ) -> RoastSigner:
        signer = self.signer_type(
            schedule, me, key_package, public, validator, nonces, tweak, message=message
        )
        return self.adopt_signer(signer)

    def adopt_signer(self, signer: RoastSigner) -> RoastSigner:
        """Called with every new ROAST signer (a harness wires its own state in)."""
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
        """The aggregator for this node's turn (None: the turn passes idle)."""
        return RoastCoordinator(schedule, agg_index, me, threshold, public, message, tweak)

    def frost_dkg(
        self,
        session_id: bytes,
        epoch: int,
        me: int,
        participants: tuple[int, ...],
        threshold: int,
        suite: frost.Ciphersuite,
        deadline: float,
    ) -> FrostDkgSession:
        return FrostDkgSession(session_id, epoch, me, participants, threshold, suite, deadline)

    def cggmp_signing(
        self,
        schedule: AggregatorSchedule,
        me: int,
        threshold: int,
        key_share: ecdsa.KeyShare,
        digest: bytes,
        validator: TemplateValidator,
        path: Sequence[int],
        presignatures: PresignatureSource | None = None,
        key_id: str = "",
    ) -> CggmpSigningDriver:
        return CggmpSigningDriver(
            schedule,
            me,
            threshold,
            key_share,
            digest,
            validator,
            path,
            presignatures=presignatures,
            key_id=key_id,
        )

    def cggmp_run(
        self,
        session_id: bytes,
        epoch: int,
        me: int,
        committee: Sequence[int],
        parties: Sequence[int],
        make: Callable[[], ecdsa.Session[Any]],
        deadline: float,
    ) -> CggmpRun:
        return CggmpRun(session_id, epoch, me, committee, parties, make, deadline)

    def reshare(
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
    ) -> ReshareSession:
        return ReshareSession(
            session_id,
            epoch,
            me,
            old_signers,
            new_ids,
            new_threshold,
            old_public,
            old_key,
            deadline,
        )

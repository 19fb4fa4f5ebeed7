"""A member's key shares in its keystore: stored when a DKG or reshare gives them, loaded
into its `KeyRing` when the member starts.

Entries, all encrypted like every keystore entry (the key id is the keystore's entry
id after a prefix)::

    frost:<key id>         FROST KeyPackage (this member's secret share)
    frost-public:<key id>  FROST PublicKeyPackage (the group's verifying shares)
    cggmp:<key id>         CGGMP KeyShare (secret share joined with aux info)
    cggmp-aux-info         this member's CGGMP aux info (Paillier secret key, ...)

Only entries with these names are shares; anything else in the keystore is left alone.
"""

from __future__ import annotations

import logging

from synod.crypto import ecdsa, frost
from synod.crypto.errors import CryptoError
from synod.node.keyring import FrostShare, KeyRing
from synod.node.keystore import Keystore, KeystoreError, SecretKind

log = logging.getLogger("synod.node.key_shares")

FROST_PREFIX = "frost:"
FROST_PUBLIC_PREFIX = "frost-public:"
CGGMP_PREFIX = "cggmp:"
AUX_INFO_ID = "cggmp-aux-info"


class KeystoreShares:
    """The `ShareSink` of a member process: every new share is in the keystore (written
    atomically) before the node signs with it."""

    def __init__(self, keystore: Keystore, epoch: int) -> None:
        self.keystore = keystore
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"KeystoreShares({self.keystore!r})"

    def store_frost(self, key_id: str, share: FrostShare) -> None:
        ks = self.keystore
        ks.put(
            FROST_PUBLIC_PREFIX + key_id,
            SecretKind.FROST_PUBLIC_KEY_PACKAGE,
            self.epoch,
            share.public.to_bytes(),
        )
        ks.put(
            FROST_PREFIX + key_id,
            SecretKind.FROST_KEY_PACKAGE,
            self.epoch,
            share.key_package.to_bytes(),
        )

    def store_ecdsa(self, key_id: str, share: ecdsa.KeyShare) -> None:
        self.keystore.put(
            CGGMP_PREFIX + key_id, SecretKind.CGGMP_KEY_SHARE, self.epoch, share.to_bytes()
        )

    def forget_frost(self, key_id: str) -> None:
        self.keystore.delete(FROST_PREFIX + key_id)
        self.keystore.delete(FROST_PUBLIC_PREFIX + key_id)

    def store_aux_info(self, aux: ecdsa.AuxInfo) -> None:
        self.keystore.put(AUX_INFO_ID, SecretKind.CGGMP_AUX_INFO, self.epoch, aux.to_bytes())

    def aux_info(self) -> ecdsa.AuxInfo | None:
        if self.keystore.info(AUX_INFO_ID) is None:
            return None
        try:
            return ecdsa.AuxInfo.from_bytes(self.keystore.get(AUX_INFO_ID))
        except CryptoError as err:
            raise KeystoreError(
                f"keystore entry {AUX_INFO_ID!r} is not CGGMP aux info: {err}"
            ) from None

    def load(self) -> KeyRing:
        """Every share in the keystore, in a key ring that stores the shares added later."""
        ring = KeyRing(sink=self)
        ks = self.keystore
        for info in ks.items():
            name = info.key_id
            try:
                if info.kind is SecretKind.FROST_KEY_PACKAGE and name.startswith(FROST_PREFIX):
                    key_id = name[len(FROST_PREFIX) :]
                    public = ks.get(FROST_PUBLIC_PREFIX + key_id)
                    ring.frost_keys[key_id] = FrostShare(
                        frost.KeyPackage.from_bytes(ks.get(name)),
                        frost.PublicKeyPackage.from_bytes(public),
                    )
                elif info.kind is SecretKind.CGGMP_KEY_SHARE and name.startswith(CGGMP_PREFIX):
                    key_id = name[len(CGGMP_PREFIX) :]
                    ring.ecdsa_keys[key_id] = ecdsa.KeyShare.from_bytes(ks.get(name))
            except CryptoError as err:
                raise KeystoreError(f"keystore entry {name!r} is not a key share: {err}") from None
        log.info(
            "loaded %d FROST and %d CGGMP key shares", len(ring.frost_keys), len(ring.ecdsa_keys)
        )
        return ring

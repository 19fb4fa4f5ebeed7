"""A node's own key shares, by key id: FROST key packages (with the group's public key
package) and CGGMP key shares. Loaded by the caller (the keystore); a DKG or a reshare
this node takes part in adds its new share here."""

from __future__ import annotations

from dataclasses import dataclass, field

from synod.crypto import ecdsa, frost


class UnknownKey(KeyError):
    """No share of that key on this node."""


@dataclass(frozen=True)
class FrostShare:
    key_package: frost.KeyPackage = field(repr=False)
    public: frost.PublicKeyPackage

    @property
    def threshold(self) -> int:
        return self.key_package.min_signers

    @property
    def committee(self) -> tuple[int, ...]:
        return tuple(sorted(self.public.identifiers))


@dataclass
class KeyRing:
    frost_keys: dict[str, FrostShare] = field(default_factory=dict, repr=False)
    ecdsa_keys: dict[str, ecdsa.KeyShare] = field(default_factory=dict, repr=False)

    def add_frost(
        self, key_id: str, key_package: frost.KeyPackage, public: frost.PublicKeyPackage
    ) -> None:
        self.frost_keys[key_id] = FrostShare(key_package, public)

    def add_ecdsa(self, key_id: str, share: ecdsa.KeyShare) -> None:
        self.ecdsa_keys[key_id] = share

    def frost_share(self, key_id: str) -> FrostShare:
        try:
            return self.frost_keys[key_id]
        except KeyError:
            raise UnknownKey(f"no FROST share of key {key_id!r} on this node") from None

    def ecdsa_share(self, key_id: str) -> ecdsa.KeyShare:
        try:
            return self.ecdsa_keys[key_id]
        except KeyError:
            raise UnknownKey(f"no CGGMP share of key {key_id!r} on this node") from None

    def key_ids(self) -> list[str]:
        return sorted({*self.frost_keys, *self.ecdsa_keys})

    def __repr__(self) -> str:  # key ids only, never a share
        return f"KeyRing({self.key_ids()})"

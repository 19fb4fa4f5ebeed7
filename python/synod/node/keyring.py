"""A node's own key shares, by key id: FROST key packages (with the group's public key
package) and CGGMP key shares. Loaded by the caller (the keystore); a DKG or a reshare
this node takes part in adds its new share here, and a `ShareSink` (a member process:
its keystore) stores it durably before the node uses it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from synod.crypto import ecdsa, frost


def output_key(public: frost.PublicKeyPackage) -> bytes | None:
    """The key a Taproot key-path spend signs for (BIP340 keys only)."""
    if public.suite is not frost.Ciphersuite.SECP256K1_TR:
        return None
    return public.group_public_key(frost.KEY_PATH)


@dataclass(frozen=True)
class PublicKey:
    """The public side of a key this node holds a share of."""

    key_id: str
    scheme: str  # "bip340", "ed25519" or "ecdsa"
    public_key: bytes
    output_key: bytes | None = None  # BIP340: the x-only key the chain sees

    @property
    def verifying_key(self) -> bytes:
        return self.output_key or self.public_key


_SCHEMES = {frost.Ciphersuite.SECP256K1_TR: "bip340", frost.Ciphersuite.ED25519: "ed25519"}


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


class ShareSink(Protocol):
    """Where new shares are kept durably; a failure raises and the share is not used."""

    def store_frost(self, key_id: str, share: FrostShare) -> None: ...

    def store_ecdsa(self, key_id: str, share: ecdsa.KeyShare) -> None: ...

    def forget_frost(self, key_id: str) -> None: ...


@dataclass
class KeyRing:
    frost_keys: dict[str, FrostShare] = field(default_factory=dict, repr=False)
    ecdsa_keys: dict[str, ecdsa.KeyShare] = field(default_factory=dict, repr=False)
    sink: ShareSink | None = field(default=None, repr=False)

    def add_frost(
        self, key_id: str, key_package: frost.KeyPackage, public: frost.PublicKeyPackage
    ) -> None:
        share = FrostShare(key_package, public)
        if self.sink is not None:
            self.sink.store_frost(key_id, share)
        self.frost_keys[key_id] = share

    def add_ecdsa(self, key_id: str, share: ecdsa.KeyShare) -> None:
        if self.sink is not None:
            self.sink.store_ecdsa(key_id, share)
        self.ecdsa_keys[key_id] = share

    def remove_frost(self, key_id: str) -> None:
        """Drop this node's share of `key_id` (an old member retiring after a reshare)."""
        if self.frost_keys.pop(key_id, None) is not None and self.sink is not None:
            self.sink.forget_frost(key_id)

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

    def public_keys(self) -> list[PublicKey]:
        """Every key's public side, by key id (nothing secret)."""
        out = [
            PublicKey(
                key_id,
                _SCHEMES[share.public.suite],
                share.public.verifying_key(),
                output_key(share.public),
            )
            for key_id, share in self.frost_keys.items()
        ]
        out += [
            PublicKey(key_id, "ecdsa", share.public_key)
            for key_id, share in self.ecdsa_keys.items()
        ]
        return sorted(out, key=lambda k: k.key_id)

    def __repr__(self) -> str:  # key ids only, never a share
        return f"KeyRing({self.key_ids()})"

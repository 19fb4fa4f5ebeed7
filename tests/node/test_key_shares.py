"""Key shares in a member's keystore: stored as a DKG gives them, loaded back on start."""

from __future__ import annotations

from pathlib import Path

import pytest

from synod.crypto import ecdsa, frost
from synod.node.key_shares import FROST_PREFIX, KeystoreShares
from synod.node.keystore import Keystore, KeystoreError, SecretKind
from tests.fixtures import stored_aux
from tests.node.helpers import FAST_KDF


def _keystore(tmp_path: Path) -> Keystore:
    return Keystore.create(tmp_path / "keystore", 2, b"test passphrase", FAST_KDF)


@pytest.mark.parametrize("suite", list(frost.Ciphersuite))
def test_frost_share_stored_then_loaded_after_reopen(
    tmp_path: Path, suite: frost.Ciphersuite
) -> None:
    keys, public = frost.local_dkg(suite, 2, 3)
    ring = KeystoreShares(_keystore(tmp_path), 0).load()
    ring.add_frost("k1", keys[2], public)
    ring.add_frost("other", keys[2], public)
    ring.remove_frost("other")

    reopened = Keystore.open(tmp_path / "keystore", b"test passphrase")
    kinds = {i.kind for i in reopened.items()}
    assert {SecretKind.FROST_KEY_PACKAGE, SecretKind.FROST_PUBLIC_KEY_PACKAGE} <= kinds
    loaded = KeystoreShares(reopened, 0).load()
    assert loaded.key_ids() == ["k1"]
    share = loaded.frost_share("k1")
    assert share.key_package.to_bytes() == keys[2].to_bytes()
    assert share.public.verifying_key() == public.verifying_key()
    assert share.threshold == 2 and share.committee == (1, 2, 3)
    assert loaded.sink is not None  # later shares are stored too


def test_aux_info_round_trip_and_other_entries_left_alone(tmp_path: Path) -> None:
    ks = _keystore(tmp_path)
    ks.put("unrelated", SecretKind.FROST_KEY_PACKAGE, 0, b"not a share, not named as one")
    shares = KeystoreShares(ks, 0)
    assert shares.aux_info() is None
    aux = stored_aux(3)[1]
    shares.store_aux_info(aux)
    back = KeystoreShares(Keystore.open(tmp_path / "keystore", b"test passphrase"), 0)
    restored = back.aux_info()
    assert isinstance(restored, ecdsa.AuxInfo) and restored.raw == aux.raw
    assert back.load().key_ids() == []


def test_a_share_entry_that_does_not_parse_is_a_keystore_error(tmp_path: Path) -> None:
    ks = _keystore(tmp_path)
    ks.put(FROST_PREFIX + "bad", SecretKind.FROST_KEY_PACKAGE, 0, b"garbage")
    ks.put("frost-public:bad", SecretKind.FROST_PUBLIC_KEY_PACKAGE, 0, b"garbage")
    with pytest.raises(KeystoreError, match="not a key share"):
        KeystoreShares(ks, 0).load()

"""A CGGMP presignature signs once, whatever copies could exist: the public API has no way
from bytes back to a presignature except the store's take, which erases it first."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from synod.crypto import ecdsa
from synod.crypto.errors import PresignatureUsedError
from synod.state.session_store import SessionStore, StoreError
from tests import fixtures

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def shares() -> list[ecdsa.KeyShare]:
    aux = fixtures.stored_aux(3)
    incomplete = ecdsa.local_incomplete_keygen(2, 3)
    return [ecdsa.KeyShare.from_parts(s, a) for s, a in zip(incomplete, aux, strict=True)]


def test_public_api_has_no_copy(shares: list[ecdsa.KeyShare]) -> None:
    """Copying one presignature's bytes gave a fresh, unused object: two digests signed from
    the original and the copy shared r and revealed the key."""
    presig = ecdsa.local_presign(shares, [0, 1])[0]
    assert not hasattr(presig, "to_bytes")
    assert not hasattr(ecdsa.Presignature, "from_bytes")
    assert not hasattr(presig._core, "to_bytes")
    assert not hasattr(type(presig._core), "from_bytes")


def test_store_takes_once_across_restarts(tmp_path: Path, shares: list[ecdsa.KeyShare]) -> None:
    db = tmp_path / "node.db"
    store = SessionStore(db, KEY)
    presigs = ecdsa.local_presign(shares, [0, 1])
    store.put_presignature("p0", "key-a", presigs[0])
    assert presigs[0].used  # moved into the store: the object cannot sign any more
    with pytest.raises(PresignatureUsedError):
        presigs[0].sign(bytes(32))
    (row,) = store.raw_presignature_rows()
    assert row[1] is not None and b"presignature" not in row[1]  # sealed at rest
    assert store.fresh_presignature_ids("key-a") == ["p0"]

    store = SessionStore(db, KEY)  # a restart
    taken = store.take_presignature("p0")
    assert taken is not None and taken.index == 0 and taken.signers == (0, 1)
    assert store.raw_presignature_rows() == [("p0", None)]  # erased in the take
    assert store.take_presignature("p0") is None
    assert SessionStore(db, KEY).take_presignature("p0") is None

    digest = hashlib.sha256(b"once").digest()
    sig = ecdsa.combine([taken.sign(digest), presigs[1].sign(digest)], digest, shares[0].public_key)
    assert sig.verify(shares[0].public_key, digest)


def test_duplicate_id_and_discard(tmp_path: Path, shares: list[ecdsa.KeyShare]) -> None:
    store = SessionStore(tmp_path / "node.db", KEY)
    first, second = ecdsa.local_presign(shares, [0, 2])
    store.put_presignature("p", "key-a", first)
    with pytest.raises(StoreError):
        store.put_presignature("p", "key-a", second)
    assert store.discard_presignatures("key-a") == 1
    assert store.take_presignature("p") is None
    assert store.fresh_presignature_ids("key-a") == []

"""The session store keeps nonces encrypted, hands each out once, and survives reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from synod.state.session_store import SessionStore, StoreError

KEY = bytes(range(32))


def test_nonce_taken_once_and_encrypted_at_rest(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    store = SessionStore(db, KEY)
    secret = b"NONCE-SECRET-BYTES" * 4
    store.put_nonce("n1", b"sid", secret)
    store.close()
    for f in tmp_path.iterdir():  # the database and any WAL/journal beside it
        assert secret not in f.read_bytes()
    store = SessionStore(db, KEY)  # a restart
    assert store.take_nonce("n1") == secret
    assert store.take_nonce("n1") is None
    store.close()
    store = SessionStore(db, KEY)
    assert store.take_nonce("n1") is None
    assert store.nonce_uses() == ["n1"]


def test_discard_retires_fresh_nonces(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "s.db", KEY)
    store.put_nonce("a", b"s1", b"x")
    store.put_nonce("b", b"s1", b"y")
    store.put_nonce("c", b"s2", b"z")
    assert store.discard_session(b"s1") == 2
    assert store.take_nonce("a") is None
    assert store.fresh_nonce_ids(b"s2") == ["c"]
    assert all(sealed is None for nid, sealed in store.raw_nonce_rows() if nid in "ab")


def test_wrong_key_or_tampering_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SessionStore(db, KEY)
    store.put_secret("share", b"key share")
    store.put_nonce("n", b"s", b"nonce")
    store.close()
    other = SessionStore(db, bytes(32) + b"x")
    with pytest.raises(StoreError):
        other.get_secret("share")
    with pytest.raises(StoreError):
        other.take_nonce("n")
    with pytest.raises(ValueError):
        SessionStore(db, b"short")


def test_duplicate_nonce_id_refused(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "s.db", KEY)
    store.put_nonce("n", b"s", b"1")
    with pytest.raises(StoreError, match="already exists"):
        store.put_nonce("n", b"s", b"2")
    assert store.take_nonce("n") == b"1"  # the first one, untouched
    with pytest.raises(StoreError, match="already exists"):
        store.put_nonce("n", b"s", b"3")  # not even after it was used


@pytest.mark.parametrize("how", ["take", "take-crash", "discard"])
def test_erased_nonce_ciphertext_is_in_neither_file(tmp_path: Path, how: str) -> None:
    """A discard erases at once; a take once the node settles the store (after the share
    made from the nonce is with its transport), or when the store next opens after a
    crash in between."""
    store = SessionStore(tmp_path / "node.db", KEY)
    for i in range(20):  # neighbours on the same pages
        store.put_nonce(f"other{i}", b"sid2", bytes([i]) * 64)
    store.put_nonce("n1", b"sid", b"\x5a" * 64)
    ((_, sealed),) = [r for r in store.raw_nonce_rows() if r[0] == "n1"]
    assert sealed is not None
    files = [tmp_path / "node.db", tmp_path / "node.db-wal"]
    assert any(sealed in f.read_bytes() for f in files if f.exists())
    if how == "take":
        assert store.take_nonce("n1") == b"\x5a" * 64
        store.settle()
    elif how == "take-crash":
        assert store.take_nonce("n1") == b"\x5a" * 64
        store = SessionStore(tmp_path / "node.db", KEY)  # the first never settled or closed
        assert store.take_nonce("n1") is None
    else:
        assert store.discard_session(b"sid") == 1
    # While the store is still open (a running node): the bytes are gone from disk.
    for f in files:
        if f.exists():
            assert sealed not in f.read_bytes(), f.name

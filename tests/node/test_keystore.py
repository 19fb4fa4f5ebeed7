"""Keystore: every secret sealed, every altered byte refused, nothing overwritten on error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synod.node.keystore import (
    KdfParams,
    Keystore,
    KeystoreError,
    SecretKind,
    read_passphrase,
)

FAST = KdfParams(time_cost=1, memory_cost=64, parallelism=1)  # tests only


def _filled(path: Path) -> tuple[Keystore, dict[str, bytes]]:
    ks = Keystore.create(path, 3, b"correct horse", FAST)
    secrets = {f"k-{kind.value}": os.urandom(48) for kind in SecretKind}
    for kind in SecretKind:
        ks.put(f"k-{kind.value}", kind, 2, secrets[f"k-{kind.value}"])
    return ks, secrets


def test_roundtrip_mode_and_no_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    ks, secrets = _filled(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Keystore.open(path, b"correct horse")
    assert again.node_id == 3
    assert {i.key_id: i.kind for i in again.items()} == {f"k-{k.value}": k for k in SecretKind}
    for key_id, secret in secrets.items():
        assert again.get(key_id) == secret
    raw = path.read_bytes()
    for secret in secrets.values():
        assert secret not in raw and secret.hex().encode() not in raw
    assert "correct" not in repr(ks) and secrets["k-identity"].hex() not in repr(ks)
    assert again.delete("k-presignature") and not again.delete("k-presignature")
    assert "k-presignature" not in {i.key_id for i in Keystore.open(path, b"correct horse").items()}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_wrong_passphrase_refused(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    _filled(path)
    with pytest.raises(KeystoreError, match="wrong passphrase") as err:
        Keystore.open(path, b"correct horsf")
    assert "\n" not in str(err.value)


def test_entry_moved_to_other_epoch_does_not_open(tmp_path: Path) -> None:
    """Associated data binds the epoch: a re-labelled entry fails even with the right key."""
    path = tmp_path / "keystore"
    ks, _ = _filled(path)
    entry = ks._entries["k-identity"]
    from dataclasses import replace

    from synod.node.keystore import EntryInfo

    ks._entries["k-identity"] = replace(entry, info=EntryInfo("k-identity", entry.info.kind, 3))
    with pytest.raises(KeystoreError, match="does not open"):
        ks.get("k-identity")


def test_truncated_refused(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    _filled(path)
    raw = path.read_bytes()
    for cut in (0, 1, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(KeystoreError):
            Keystore.open(path, b"correct horse")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_refused(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("ks") / "keystore"
    _filled(path)
    raw = bytearray(path.read_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(raw))
    with pytest.raises(KeystoreError):
        Keystore.open(path, b"correct horse")


def test_change_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    ks, secrets = _filled(path)
    ks.change_passphrase(b"new one")
    with pytest.raises(KeystoreError):
        Keystore.open(path, b"correct horse")
    again = Keystore.open(path, b"new one")
    assert all(again.get(k) == v for k, v in secrets.items())


def test_create_refuses_existing(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    _filled(path)
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        Keystore.create(path, 3, b"x", FAST)
    assert path.read_bytes() == before


def test_read_passphrase(tmp_path: Path) -> None:
    f = tmp_path / "pp"
    f.write_bytes(b"secret words\n")
    assert read_passphrase(f) == b"secret words"
    assert read_passphrase(None, "X", {"X": "from env"}) == b"from env"
    with pytest.raises(KeystoreError, match="set X"):
        read_passphrase(None, "X", {})
    f.write_bytes(b"\n")
    with pytest.raises(KeystoreError, match="empty"):
        read_passphrase(f)


def test_rfc9106_profile_is_default(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    Keystore.create(path, 1, b"pw")
    ks = Keystore.open(path, b"pw")
    assert (ks.params.time_cost, ks.params.memory_cost, ks.params.parallelism) == (3, 65536, 4)

"""A node's secrets encrypted at rest in one file, under a key derived from a passphrase.

The file is canonical JSON (sorted keys, no spaces; any other byte sequence is
refused, so every changed byte is detected)::

    {"format": "synod-keystore", "version": 1, "node_id": 3,
     "kdf": {"name": "argon2id", "time_cost": 3, "memory_cost": 65536,
             "parallelism": 4, "salt": "<hex>"},
     "seal": {"nonce": "<hex>", "tag": "<hex>"},
     "entries": [{"key_id": "...", "kind": "frost_key_package", "epoch": 0,
                  "nonce": "<hex>", "ciphertext": "<hex>"}, ...]}

The key is Argon2id (RFC 9106 section 4, second recommended option: t=3,
m=64 MiB, p=4, 16-byte salt; all recorded in the header) over the passphrase.
Each entry is ChaCha20-Poly1305 with associated data binding the format
version, node id, key id, kind and epoch, so a ciphertext moved to another
entry, node or epoch does not open. ``seal`` is a tag over the header and the
list of entries (ids, kinds, epochs, nonces, ciphertext hashes): a wrong
passphrase, a changed parameter, a dropped or swapped entry fails on open.

Writes are atomic (temporary file, fsync, rename, directory fsync) with mode
0600; a failed open never writes. Secrets are never in a repr or a message.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

FORMAT = "synod-keystore"
VERSION = 1
KEY_LEN = 32
NONCE_LEN = 12
MAX_FILE = 64 << 20
MAX_PASSPHRASE = 1024
PASSPHRASE_ENV = "SYNOD_PASSPHRASE"
NEW_PASSPHRASE_ENV = "SYNOD_NEW_PASSPHRASE"
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_KEY_ID = re.compile(r"[\x21-\x7e]{1,200}")


class KeystoreError(Exception):
    """A keystore that cannot be opened or written; the message is one line, no secret."""


class SecretKind(enum.StrEnum):
    IDENTITY = "identity"  # Ed25519 signing key ‖ X25519 sealing key (raw, 64 bytes)
    TLS_KEY = "tls_key"  # PKCS#8 PEM of the TLS private key
    FROST_KEY_PACKAGE = "frost_key_package"
    FROST_PUBLIC_KEY_PACKAGE = "frost_public_key_package"  # public, kept beside its share
    CGGMP_KEY_SHARE = "cggmp_key_share"
    CGGMP_AUX_INFO = "cggmp_aux_info"
    PRESIGNATURE = "presignature"
    STORAGE_KEY = "storage_key"  # the session store's storage key


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost; memory in KiB."""

    time_cost: int = 3
    memory_cost: int = 64 * 1024
    parallelism: int = 4

    def check(self) -> None:
        if not 1 <= self.time_cost <= 16:
            raise KeystoreError("keystore header: argon2 time_cost out of range")
        if not 8 * self.parallelism <= self.memory_cost <= 4 << 20:
            raise KeystoreError("keystore header: argon2 memory_cost out of range")
        if not 1 <= self.parallelism <= 64:
            raise KeystoreError("keystore header: argon2 parallelism out of range")


RFC9106_SECOND = KdfParams()


@dataclass(frozen=True)
class EntryInfo:
    """What an entry is, without its secret."""

    key_id: str
    kind: SecretKind
    epoch: int


@dataclass(frozen=True)
class _Entry:
    info: EntryInfo
    nonce: bytes
    ciphertext: bytes = b""

    def __repr__(self) -> str:
        return f"_Entry({self.info!r})"

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.info.key_id,
            "kind": self.info.kind.value,
            "epoch": self.info.epoch,
            "nonce": self.nonce.hex(),
            "ciphertext": self.ciphertext.hex(),
        }


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def derive_key(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    try:
        return hash_secret_raw(
            passphrase,
            salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            hash_len=KEY_LEN,
            type=Type.ID,
        )
    except HashingError:
        raise KeystoreError("keystore key derivation failed") from None


def check_passphrase(passphrase: bytes) -> bytes:
    if not passphrase:
        raise KeystoreError("the passphrase is empty")
    if len(passphrase) > MAX_PASSPHRASE:
        raise KeystoreError(f"the passphrase is longer than {MAX_PASSPHRASE} bytes")
    return passphrase


def read_passphrase(
    file: Path | None, env: str = PASSPHRASE_ENV, environ: Mapping[str, str] | None = None
) -> bytes:
    """The passphrase from `file` (one trailing newline dropped) or else the variable `env`."""
    environ = os.environ if environ is None else environ
    if file is not None:
        try:
            with open(file, "rb") as fh:
                data = fh.read(MAX_PASSPHRASE + 2)
        except OSError as err:
            raise KeystoreError(f"cannot read passphrase file {file}: {err.strerror}") from None
        if data.endswith(b"\n"):
            data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
        return check_passphrase(data)
    value = environ.get(env)
    if value is None:
        raise KeystoreError(f"no passphrase: give a passphrase file or set {env}")
    return check_passphrase(value.encode("utf-8"))


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: temporary file, fsync, rename, directory fsync."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Keystore:
    """One node's encrypted secrets. `put`/`delete` persist at once (atomically)."""

    def __init__(
        self,
        path: Path,
        node_id: int,
        params: KdfParams,
        salt: bytes,
        key: bytes,
        entries: dict[str, _Entry],
    ) -> None:
        self.path = path
        self.node_id = node_id
        self.params = params
        self._salt = salt
        self._aead = ChaCha20Poly1305(key)
        self._entries = entries

    def __repr__(self) -> str:
        return f"Keystore(node_id={self.node_id}, entries={len(self._entries)})"

    # -- lifecycle -----------------------------------------------------------
    @classmethod
    def create(
        cls, path: Path, node_id: int, passphrase: bytes, params: KdfParams = RFC9106_SECOND
    ) -> Keystore:
        """A new, empty keystore file; refuses to replace an existing one."""
        if path.exists():
            raise KeystoreError(f"keystore {path} already exists")
        if node_id < 1:
            raise KeystoreError(f"node id must be positive (got {node_id})")
        params.check()
        salt = os.urandom(16)
        key = derive_key(check_passphrase(passphrase), salt, params)
        store = cls(path, node_id, params, salt, key, {})
        store._save()
        return store

    @classmethod
    def open(cls, path: Path, passphrase: bytes) -> Keystore:
        """Open and authenticate the whole file; `KeystoreError` on any problem."""
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_FILE + 1)
        except OSError as err:
            raise KeystoreError(f"cannot read keystore {path}: {err.strerror}") from None
        if len(raw) > MAX_FILE:
            raise KeystoreError(f"keystore {path} is too large")
        doc = _parse(raw, path)
        params, salt, node_id, entries = _structure(doc)
        key = derive_key(check_passphrase(passphrase), salt, params)
        store = cls(path, node_id, params, salt, key, {e.info.key_id: e for e in entries})
        seal = doc["seal"]
        nonce, tag = _hex(seal.get("nonce"), NONCE_LEN), _hex(seal.get("tag"), 16)
        try:
            store._aead.decrypt(nonce, tag, store._header_ad())
        except InvalidTag:
            raise KeystoreError(
                f"keystore {path}: wrong passphrase or the file was altered"
            ) from None
        for entry in entries:  # every entry must open, not only the ones read later
            store._decrypt(entry)
        return store

    def change_passphrase(self, new_passphrase: bytes, params: KdfParams | None = None) -> None:
        """Re-encrypt every entry under a key from `new_passphrase` and a fresh salt."""
        params = params or self.params
        params.check()
        plain = {k: (e.info, self._decrypt(e)) for k, e in self._entries.items()}
        salt = os.urandom(16)
        self._aead = ChaCha20Poly1305(derive_key(check_passphrase(new_passphrase), salt, params))
        self._salt, self.params = salt, params
        self._entries = {k: self._encrypt(info, secret) for k, (info, secret) in plain.items()}
        self._save()

    # -- entries -------------------------------------------------------------
    def put(self, key_id: str, kind: SecretKind, epoch: int, secret: bytes) -> None:
        if not _KEY_ID.fullmatch(key_id):
            raise KeystoreError("key id must be 1 to 200 printable ASCII characters")
        if epoch < 0:
            raise KeystoreError("epoch must not be negative")
        entries = dict(self._entries)
        entries[key_id] = self._encrypt(EntryInfo(key_id, SecretKind(kind), epoch), bytes(secret))
        self._commit(entries)

    def get(self, key_id: str) -> bytes:
        entry = self._entries.get(key_id)
        if entry is None:
            raise KeystoreError(f"no entry {key_id!r} in the keystore")
        return self._decrypt(entry)

    def info(self, key_id: str) -> EntryInfo | None:
        entry = self._entries.get(key_id)
        return None if entry is None else entry.info

    def delete(self, key_id: str) -> bool:
        if key_id not in self._entries:
            return False
        entries = dict(self._entries)
        del entries[key_id]
        self._commit(entries)
        return True

    def items(self) -> list[EntryInfo]:
        return sorted((e.info for e in self._entries.values()), key=lambda i: i.key_id)

    # -- internals -----------------------------------------------------------
    def _entry_ad(self, info: EntryInfo) -> bytes:
        return b"synod/keystore/entry\x00" + _canonical(
            {
                "format": FORMAT,
                "version": VERSION,
                "node_id": self.node_id,
                "key_id": info.key_id,
                "kind": info.kind.value,
                "epoch": info.epoch,
            }
        )

    def _header_doc(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "node_id": self.node_id,
            "kdf": {
                "name": "argon2id",
                "time_cost": self.params.time_cost,
                "memory_cost": self.params.memory_cost,
                "parallelism": self.params.parallelism,
                "salt": self._salt.hex(),
            },
        }

    def _header_ad(self) -> bytes:
        listing = [
            {
                "key_id": e.info.key_id,
                "kind": e.info.kind.value,
                "epoch": e.info.epoch,
                "nonce": e.nonce.hex(),
                "ciphertext_sha256": hashlib.sha256(e.ciphertext).hexdigest(),
            }
            for e in self._sorted()
        ]
        return b"synod/keystore/header\x00" + _canonical({**self._header_doc(), "entries": listing})

    def _sorted(self) -> list[_Entry]:
        return [self._entries[k] for k in sorted(self._entries)]

    def _encrypt(self, info: EntryInfo, secret: bytes) -> _Entry:
        nonce = os.urandom(NONCE_LEN)
        return _Entry(info, nonce, self._aead.encrypt(nonce, secret, self._entry_ad(info)))

    def _decrypt(self, entry: _Entry) -> bytes:
        try:
            return self._aead.decrypt(entry.nonce, entry.ciphertext, self._entry_ad(entry.info))
        except InvalidTag:
            raise KeystoreError(
                f"keystore {self.path}: entry {entry.info.key_id!r} does not open (altered)"
            ) from None

    def _commit(self, entries: dict[str, _Entry]) -> None:
        previous = self._entries
        self._entries = entries
        try:
            self._save()
        except BaseException:
            self._entries = previous
            raise

    def _save(self) -> None:
        nonce = os.urandom(NONCE_LEN)
        tag = self._aead.encrypt(nonce, b"", self._header_ad())
        doc = {
            **self._header_doc(),
            "seal": {"nonce": nonce.hex(), "tag": tag.hex()},
            "entries": [e.to_json() for e in self._sorted()],
        }
        try:
            atomic_write(self.path, _canonical(doc))
        except OSError as err:
            raise KeystoreError(f"cannot write keystore {self.path}: {err.strerror}") from None


def _parse(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeystoreError(f"keystore {path} is corrupt (not canonical JSON)") from None
    if not isinstance(doc, dict) or _canonical(doc) != raw:
        raise KeystoreError(f"keystore {path} is corrupt (not canonical JSON)")
    if doc.get("format") != FORMAT:
        raise KeystoreError(f"{path} is not a synod keystore")
    if doc.get("version") != VERSION:
        raise KeystoreError(f"keystore {path}: unsupported version {doc.get('version')!r}")
    if set(doc) != {"format", "version", "node_id", "kdf", "seal", "entries"}:
        raise KeystoreError(f"keystore {path} is corrupt (fields)")
    return doc


def _hex(value: Any, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise KeystoreError("keystore is corrupt (a field is not lowercase hex)")
    data = bytes.fromhex(value)
    if length is not None and len(data) != length:
        raise KeystoreError("keystore is corrupt (a field has the wrong length)")
    return data


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KeystoreError("keystore is corrupt (a field is not a non-negative integer)")
    return value


def _structure(doc: dict[str, Any]) -> tuple[KdfParams, bytes, int, list[_Entry]]:
    kdf, seal, raw_entries = doc["kdf"], doc["seal"], doc["entries"]
    if not isinstance(kdf, dict) or set(kdf) != {
        "name",
        "time_cost",
        "memory_cost",
        "parallelism",
        "salt",
    }:
        raise KeystoreError("keystore is corrupt (kdf header)")
    if kdf["name"] != "argon2id":
        raise KeystoreError(f"keystore: unsupported key derivation {kdf['name']!r}")
    params = KdfParams(_int(kdf["time_cost"]), _int(kdf["memory_cost"]), _int(kdf["parallelism"]))
    params.check()
    salt = _hex(kdf["salt"])
    if len(salt) < 16:
        raise KeystoreError("keystore is corrupt (salt too short)")
    if not isinstance(seal, dict) or set(seal) != {"nonce", "tag"}:
        raise KeystoreError("keystore is corrupt (seal)")
    node_id = _int(doc["node_id"])
    if not isinstance(raw_entries, list):
        raise KeystoreError("keystore is corrupt (entries)")
    entries: list[_Entry] = []
    for item in raw_entries:
        if not isinstance(item, dict) or set(item) != {
            "key_id",
            "kind",
            "epoch",
            "nonce",
            "ciphertext",
        }:
            raise KeystoreError("keystore is corrupt (an entry)")
        try:
            kind = SecretKind(item["kind"])
        except ValueError:
            raise KeystoreError("keystore is corrupt (an entry kind)") from None
        key_id = item["key_id"]
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise KeystoreError("keystore is corrupt (an entry key id)")
        info = EntryInfo(key_id, kind, _int(item["epoch"]))
        entries.append(_Entry(info, _hex(item["nonce"], NONCE_LEN), _hex(item["ciphertext"])))
    if len({e.info.key_id for e in entries}) != len(entries):
        raise KeystoreError("keystore is corrupt (duplicate entries)")
    return params, salt, node_id, entries

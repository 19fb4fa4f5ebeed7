"""The committee manifest: who the members are and how to reach and recognise them.

One JSON file, identical on every node::

    {"version": 1, "epoch": 0, "threshold": 3, "ca_fingerprint": "<sha256 hex>",
     "members": [{"id": 1, "endpoint": "127.0.0.1:7101", "sign_key": "<hex>",
                  "seal_key": "<hex>", "tls_fingerprint": "<sha256 hex>"}, ...]}

``sign_key`` is the member's Ed25519 identity key (envelope signatures),
``seal_key`` its X25519 key (sealed point-to-point payloads), and
``tls_fingerprint`` the SHA-256 of its DER TLS certificate, which the accepting
side of every peer connection compares with the certificate presented.
Every field is validated on load; an error names the member and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synod.protocols.envelope import PeerKeys

VERSION = 1
MAX_MEMBERS = 1000
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the offending field."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        host, sep, port = text.rpartition(":")
        if not sep or not _HOST.fullmatch(host) or not (port.isascii() and port.isdigit()):
            raise ManifestError(f"endpoint must be host:port (got {text!r})")
        number = int(port)
        if not 0 < number < 65536:
            raise ManifestError(f"endpoint port out of range (got {text!r})")
        return cls(host, number)


@dataclass(frozen=True)
class Member:
    id: int
    endpoint: Endpoint
    sign_key: bytes
    seal_key: bytes
    tls_fingerprint: str

    @property
    def keys(self) -> PeerKeys:
        return PeerKeys(self.id, self.sign_key, self.seal_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": str(self.endpoint),
            "sign_key": self.sign_key.hex(),
            "seal_key": self.seal_key.hex(),
            "tls_fingerprint": self.tls_fingerprint,
        }


@dataclass(frozen=True)
class Manifest:
    epoch: int
    threshold: int
    ca_fingerprint: str
    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        n = len(self.members)
        if not 1 <= n <= MAX_MEMBERS:
            raise ManifestError(f"a committee has 1 to {MAX_MEMBERS} members (got {n})")
        if not 1 <= self.threshold <= n:
            raise ManifestError(f"threshold must be between 1 and {n} (got {self.threshold})")
        if self.epoch < 0:
            raise ManifestError(f"epoch must not be negative (got {self.epoch})")
        if not _HEX64.fullmatch(self.ca_fingerprint):
            raise ManifestError("ca_fingerprint must be 64 lowercase hex digits")
        for field, values in (
            ("id", [m.id for m in self.members]),
            ("endpoint", [str(m.endpoint) for m in self.members]),
            ("sign_key", [m.sign_key for m in self.members]),
            ("tls_fingerprint", [m.tls_fingerprint for m in self.members]),
        ):
            if len(set(values)) != n:
                raise ManifestError(f"two members share the same {field}")

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.members]

    def member(self, member_id: int) -> Member:
        for m in self.members:
            if m.id == member_id:
                return m
        raise ManifestError(f"member {member_id} is not in the manifest")

    def directory(self) -> dict[int, PeerKeys]:
        """The public identities a router verifies envelopes against."""
        return {m.id: m.keys for m in self.members}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "epoch": self.epoch,
            "threshold": self.threshold,
            "ca_fingerprint": self.ca_fingerprint,
            "members": [m.to_json() for m in self.members],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        if not isinstance(doc, dict):
            raise ManifestError("manifest must be a JSON object")
        _keys(doc, {"version", "epoch", "threshold", "ca_fingerprint", "members"}, "manifest")
        if doc["version"] != VERSION:
            raise ManifestError(f"unsupported manifest version {doc['version']!r}")
        members = doc["members"]
        if not isinstance(members, list):
            raise ManifestError("members must be a list")
        return cls(
            epoch=_int(doc["epoch"], "epoch"),
            threshold=_int(doc["threshold"], "threshold"),
            ca_fingerprint=_str(doc["ca_fingerprint"], "ca_fingerprint"),
            members=tuple(_member(m, i) for i, m in enumerate(members)),
        )

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ManifestError(f"cannot read manifest {path}: {err.strerror}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise ManifestError(
                f"manifest {path} is not JSON: {err.msg} (line {err.lineno})"
            ) from None
        return cls.from_json(doc)


def _keys(doc: dict[str, Any], expected: set[str], where: str) -> None:
    missing = expected - doc.keys()
    extra = doc.keys() - expected
    if missing:
        raise ManifestError(f"{where}: missing field {sorted(missing)[0]!r}")
    if extra:
        raise ManifestError(f"{where}: unknown field {sorted(extra)[0]!r}")


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{where} must be an integer")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"{where} must be a string")
    return value


def _key(value: Any, where: str) -> bytes:
    text = _str(value, where)
    if not _HEX64.fullmatch(text):
        raise ManifestError(f"{where} must be 32 bytes as lowercase hex")
    return bytes.fromhex(text)


def _member(doc: Any, index: int) -> Member:
    where = f"members[{index}]"
    if not isinstance(doc, dict):
        raise ManifestError(f"{where} must be an object")
    _keys(doc, {"id", "endpoint", "sign_key", "seal_key", "tls_fingerprint"}, where)
    member_id = _int(doc["id"], f"{where}.id")
    if not 1 <= member_id <= 2**31:
        raise ManifestError(f"{where}.id must be a positive 32-bit integer")
    where = f"member {member_id}"
    fp = _str(doc["tls_fingerprint"], f"{where}: tls_fingerprint")
    if not _HEX64.fullmatch(fp):
        raise ManifestError(f"{where}: tls_fingerprint must be 64 lowercase hex digits")
    try:
        endpoint = Endpoint.parse(_str(doc["endpoint"], f"{where}: endpoint"))
    except ManifestError as err:
        raise ManifestError(f"{where}: {err}") from None
    return Member(
        id=member_id,
        endpoint=endpoint,
        sign_key=_key(doc["sign_key"], f"{where}: sign_key"),
        seal_key=_key(doc["seal_key"], f"{where}: seal_key"),
        tls_fingerprint=fp,
    )

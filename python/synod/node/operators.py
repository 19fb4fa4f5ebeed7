"""Which operator certificates a member's control service admits: by key, with revocation.

A certificate the committee CA issued is not enough: the member admits an operator only when
the SHA-256 of its certificate's public key (SubjectPublicKeyInfo DER: the same for every
certificate ever issued for that key, so a re-issued certificate stays revoked) is in the
member's ``operators.json`` and not revoked there. `synod committee assemble` lists the
operator certificates it issued; `synod member install` merges that list into the member's
(keeping what the member revoked);
`synod member revoke-operator` revokes one on the member's host, effective on the next call
without a restart. A missing or unreadable list admits nobody (fail closed)::

    {"version": 1, "operators": [{"name": "alice", "key_sha256": "<sha256 hex>"}],
     "revoked": ["<sha256 hex>", ...]}
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from synod.node.keystore import atomic_write

OPERATORS = "operators.json"
VERSION = 1
MAX_BYTES = 1 << 20
_FP = re.compile(r"[0-9a-f]{64}")


class OperatorListError(ValueError):
    """An operators file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class OperatorList:
    allowed: dict[str, str] = field(default_factory=dict)  # fingerprint -> name
    revoked: frozenset[str] = frozenset()

    def admits(self, fingerprint: str) -> str | None:
        """None when admitted, else why not (a counter's reason)."""
        if fingerprint in self.revoked:
            return "revoked_operator"
        if fingerprint not in self.allowed:
            return "unknown_operator"
        return None

    def merged(self, newer: OperatorList) -> OperatorList:
        """`newer`'s operators, with the revocations of both."""
        return OperatorList(dict(newer.allowed), self.revoked | newer.revoked)

    def revoke(self, fingerprint: str) -> OperatorList:
        if not _FP.fullmatch(fingerprint):
            raise OperatorListError("a key fingerprint is 64 lowercase hex digits (SHA-256)")
        return OperatorList(dict(self.allowed), self.revoked | {fingerprint})

    def dumps(self) -> str:
        doc = {
            "version": VERSION,
            "operators": [
                {"name": name, "key_sha256": fp} for fp, name in sorted(self.allowed.items())
            ],
            "revoked": sorted(self.revoked),
        }
        return json.dumps(doc, indent=2) + "\n"

    def save(self, path: Path) -> None:
        atomic_write(path, self.dumps().encode(), 0o644)

    @classmethod
    def load(cls, path: Path) -> OperatorList:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_BYTES + 1)
        except OSError as err:
            raise OperatorListError(f"cannot read {path}: {err.strerror}") from None
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: bytes, where: str) -> OperatorList:
        if len(raw) > MAX_BYTES:
            raise OperatorListError(f"{where}: larger than {MAX_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise OperatorListError(f"{where}: not JSON") from None
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise OperatorListError(f"{where}: not an operators file (version {VERSION})")
        entries = doc.get("operators") or []
        if not isinstance(entries, list):
            raise OperatorListError(f"{where}: operators must be a list")
        allowed: dict[str, str] = {}
        for i, entry in enumerate(entries):
            fp = entry.get("key_sha256") if isinstance(entry, dict) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(fp, str) or not _FP.fullmatch(fp) or not isinstance(name, str):
                raise OperatorListError(f"{where}: operators[{i}] needs a name and a key_sha256")
            allowed[fp] = name
        revoked = doc.get("revoked") or []
        if not isinstance(revoked, list) or not all(
            isinstance(fp, str) and _FP.fullmatch(fp) for fp in revoked
        ):
            raise OperatorListError(f"{where}: revoked must be a list of key fingerprints")
        return cls(allowed, frozenset(revoked))


class OperatorFile:
    """The member's list, re-read when the file changes (its size, mtime or inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._list: OperatorList | None = None

    def current(self) -> OperatorList | None:
        """The list now, or None when there is none that can be read (admit nobody)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._seen:
                try:
                    self._list = OperatorList.load(self.path)
                except OperatorListError:
                    self._list = None
                self._seen = stamp
            return self._list

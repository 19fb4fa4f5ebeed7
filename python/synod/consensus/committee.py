"""Who may write to the replicated ledger: the committee's members and the operators' keys.

The committee file is shared by every node (it is part of the chain's genesis): the chain id,
each member's id and Ed25519 identity public key, the operator keys through which user requests
enter (an operator console, the API), which transaction kinds each role may submit, and the
quorum of members that must attest an unspendability proof before a `Requeue` moves funds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

MEMBER, OPERATOR = "member", "operator"
ATTEST = "attest"
DEFAULT_PERMISSIONS: Mapping[str, frozenset[str]] = {
    # Members write back what their runtime did and what their chain watchers saw.
    MEMBER: frozenset(
        {
            "deposit_credit",
            "reserve",
            "start_sign",
            "signed",
            "broadcast",
            "confirm",
            "fail",
            "requeue",
            ATTEST,
            # the transition worker's write-backs
            "keygen_start",
            "keygen_failed",
            "key_ready",
            "migration_start",
            "migration_request",
            "migrations_done",
            "activate",
            "strike",
        }
    ),
    # User requests (and their cancellation) come in through an operator key (console or API),
    # and so does a change of the signer set.
    OPERATOR: frozenset({"withdraw_request", "cancel", "signer_set_update"}),
}


def raw_public(key: Ed25519PrivateKey) -> bytes:
    """The 32-byte public key a committee file lists for a submitter holding `key`."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class CommitteeError(ValueError):
    """A committee file that is not well formed."""


MAX_KEY_FILE = 4096


def operator_key_pem(key: Ed25519PrivateKey) -> bytes:
    """A ledger operator's request-signing key as its file holds it (PKCS#8 PEM; the file is
    the operator's secret: mode 0600)."""
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def read_operator_key(path: Path) -> Ed25519PrivateKey:
    """The key `operator_key_pem` wrote; `CommitteeError` naming the file otherwise."""
    try:
        with open(path, "rb") as fh:
            pem = fh.read(MAX_KEY_FILE + 1)
    except OSError as err:
        raise CommitteeError(f"{path}: cannot read: {err.strerror}") from None
    try:
        key = load_pem_private_key(pem, None) if len(pem) <= MAX_KEY_FILE else None
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise CommitteeError(f"{path}: not an unencrypted Ed25519 private key (PKCS#8 PEM)")
    return key


def _key(value: Any, where: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CommitteeError(f"{where}: sign_key must be 32 bytes of hex (Ed25519 public key)")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise CommitteeError(f"{key} must be a list")
    return value


@dataclass(frozen=True)
class Committee:
    chain_id: str
    members: Mapping[int, bytes]  # member id -> Ed25519 public key
    operators: Mapping[str, bytes] = field(default_factory=dict)  # name -> Ed25519 public key
    quorum: int = 0  # 0: 2f+1 of the members
    permissions: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: dict(DEFAULT_PERMISSIONS)
    )

    def __post_init__(self) -> None:
        if not self.chain_id or len(self.chain_id) > 50:
            raise CommitteeError("chain_id must be 1 to 50 characters")
        if not self.members:
            raise CommitteeError("a committee has at least one member")
        if not 0 <= self.quorum <= len(self.members):
            raise CommitteeError(f"quorum must be between 1 and {len(self.members)} (0: 2f+1)")

    @property
    def faults(self) -> int:
        """f: the members that may be faulty while n >= 3f + 1."""
        return (len(self.members) - 1) // 3

    @property
    def attest_quorum(self) -> int:
        return self.quorum or min(len(self.members), 2 * self.faults + 1)

    @property
    def refute_quorum(self) -> int:
        """Refutations that make the attest quorum unreachable: the proof is refused."""
        return len(self.members) - self.attest_quorum + 1

    def public_key(self, signer: str) -> bytes | None:
        """The key of ``member:<id>`` or ``operator:<name>``; None for anyone else."""
        role, _, name = signer.partition(":")
        if role == MEMBER and name.isascii() and name.isdigit() and len(name) < 10:
            return self.members.get(int(name))
        if role == OPERATOR:
            return self.operators.get(name)
        return None

    def may_submit(self, signer: str, kind: str) -> bool:
        role = signer.partition(":")[0]
        return kind in self.permissions.get(role, frozenset())

    # ------------------------------------------------------------------ file form
    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "members": [{"id": i, "sign_key": k.hex()} for i, k in sorted(self.members.items())],
            "operators": [
                {"name": n, "sign_key": k.hex()} for n, k in sorted(self.operators.items())
            ],
            "quorum": self.quorum,
            "permissions": {r: sorted(k) for r, k in sorted(self.permissions.items())},
        }

    @classmethod
    def from_dict(cls, data: Any) -> Committee:
        if not isinstance(data, dict):
            raise CommitteeError("a committee is a JSON object")
        members: dict[int, bytes] = {}
        for i, m in enumerate(_list(data, "members")):
            mid = m.get("id") if isinstance(m, dict) else None
            if isinstance(mid, bool) or not isinstance(mid, int) or not 0 < mid < 1 << 16:
                raise CommitteeError(f"members[{i}].id must be an integer in 1..65535")
            if mid in members:
                raise CommitteeError(f"member {mid} listed twice")
            members[mid] = _key(m.get("sign_key"), f"members[{i}]")
        operators: dict[str, bytes] = {}
        for i, o in enumerate(_list(data, "operators")):
            name = o.get("name") if isinstance(o, dict) else None
            if not isinstance(name, str) or not name.isidentifier() or len(name) > 32:
                raise CommitteeError(f"operators[{i}].name must be an identifier")
            operators[name] = _key(o.get("sign_key"), f"operators[{i}]")
        permissions = dict(DEFAULT_PERMISSIONS)
        given = data.get("permissions") or {}
        if not isinstance(given, dict):
            raise CommitteeError("permissions must be an object: role -> list of kinds")
        for role, kinds in given.items():
            if role not in (MEMBER, OPERATOR) or not isinstance(kinds, list):
                raise CommitteeError(f"permissions.{role}: a list of kinds for member or operator")
            permissions[role] = frozenset(str(k) for k in kinds)
        quorum = data.get("quorum", 0)
        if isinstance(quorum, bool) or not isinstance(quorum, int):
            raise CommitteeError("quorum must be an integer")
        chain_id = data.get("chain_id")
        if not isinstance(chain_id, str):
            raise CommitteeError("chain_id must be a string")
        return cls(chain_id, members, operators, quorum, permissions)

    @classmethod
    def load(cls, path: str | Path) -> Committee:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise CommitteeError(f"cannot read committee file {path}: {err}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

"""What the API reads about the committee, its keys and signing sessions, behind one small
interface, so a running node can plug its own view in later without the API changing.

Today the embedded engine has no networked node: `LedgerNodeView` serves what the ledger
records (signing sessions started per withdrawal and how each ended) plus what the process
that starts the API knows (group keys and addresses, the committee's members). A node's view
adds last-seen times, culprit counts, sub-sessions and durations from its own records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from synod.state.machine import Ledger


@dataclass(frozen=True)
class GroupKey:
    scheme: str  # bip340 | ed25519 | ecdsa
    public_key: str  # hex
    addresses: Mapping[str, str]  # chain -> address
    epoch: int = 0


@dataclass(frozen=True)
class Member:
    member_id: int
    name: str = ""
    last_seen: int | None = None  # Unix ms, when known
    culprit_count: int = 0


class NodeView(Protocol):
    def public_keys(self) -> list[GroupKey]: ...

    def committee(self) -> dict[str, Any]:
        """{"threshold": t, "members": [Member...], "epoch": e}."""
        ...

    def sessions(self, limit: int) -> list[dict[str, Any]]:
        """Recent signing sessions, newest first."""
        ...

    def culprits(self, withdraw_id: str) -> list[int]:
        """Members named as culprits while signing the withdrawal."""
        ...

    def chain_height(self, chain: str) -> int | None:
        """The chain's current height, when known (for confirmation counts)."""
        ...


@dataclass
class LedgerNodeView:
    """The node view the embedded engine has: sessions from the ledger's transaction log, keys
    and committee as given by the process that starts the API."""

    ledger: Ledger
    group_keys: Sequence[GroupKey] = ()
    threshold: int | None = None
    members: Sequence[Member] = ()
    epoch: int = 0
    culprits_by_withdrawal: dict[str, list[int]] = field(default_factory=dict)
    heights: dict[str, int] = field(default_factory=dict)

    def public_keys(self) -> list[GroupKey]:
        return list(self.group_keys)

    def committee(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "members": list(self.members), "epoch": self.epoch}

    def sessions(self, limit: int) -> list[dict[str, Any]]:
        """Each `start_sign` in the log, with how it ended: signed, re-queued, or still open."""
        rows = self.ledger.db.query(
            "SELECT seq, body FROM applied_tx WHERE kind = 'start_sign' ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        out = []
        for seq, body in rows:
            tx = json.loads(body)
            wid, sid = tx["withdraw_id"], tx["session_id"]
            outcome = "open"
            for later in self.ledger.db.query(
                "SELECT kind, body FROM applied_tx WHERE withdraw_id = ? AND seq > ? "
                "AND kind IN ('signed', 'requeue') ORDER BY seq LIMIT 1",
                (wid, int(seq)),
            ):
                outcome = "signed" if later[0] == "signed" else "timed_out"
            out.append(
                {
                    "session_id": sid,
                    "withdraw_id": wid,
                    "attempt": tx.get("attempt", 0),
                    "ledger_seq": int(seq),
                    "outcome": outcome,
                    "culprits": self.culprits(wid),
                    "sub_sessions": None,
                    "duration_ms": None,
                }
            )
        return out

    def culprits(self, withdraw_id: str) -> list[int]:
        return list(self.culprits_by_withdrawal.get(withdraw_id, ()))

    def chain_height(self, chain: str) -> int | None:
        return self.heights.get(chain)

"""What the API reads about the committee, its keys and signing sessions, behind one small
interface, so a running node can plug its own view in later without the API changing.

Today the embedded engine has no networked node: `LedgerNodeView` serves what the ledger
records (signing sessions started per withdrawal and how each ended) plus what the process
that starts the API knows (group keys and addresses, the committee's members). A node's view
adds last-seen times, culprit counts, sub-sessions and durations from its own records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


MAX_VIEW_BYTES = 1 << 20
log = logging.getLogger("synod.api.providers")


@dataclass
class FileNodeView(LedgerNodeView):
    """`LedgerNodeView` plus what a node process publishes in a JSON file (`write_node_view`):
    group keys, committee members with culprit counts, culprits per withdrawal, chain heights.
    The file is re-read when it changes; a missing, oversized or malformed one leaves the last
    good view in place."""

    path: Path | None = None
    _stamp: tuple[float, int] | None = field(default=None, init=False, repr=False)

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            stat = self.path.stat()
            if (stat.st_mtime, stat.st_size) == self._stamp or stat.st_size > MAX_VIEW_BYTES:
                return
            data = json.loads(self.path.read_bytes())
            keys = [
                GroupKey(
                    str(k["scheme"]),
                    str(k["public_key"]),
                    {str(c): str(a) for c, a in dict(k.get("addresses", {})).items()},
                    int(k.get("epoch", 0)),
                )
                for k in data.get("keys", [])
            ]
            members = [
                Member(
                    int(m["member_id"]),
                    str(m.get("name", "")),
                    None if m.get("last_seen") is None else int(m["last_seen"]),
                    int(m.get("culprit_count", 0)),
                )
                for m in data.get("members", [])
            ]
            culprits = {
                str(w): [int(c) for c in cs]
                for w, cs in dict(data.get("culprits_by_withdrawal", {})).items()
            }
            heights = {str(c): int(h) for c, h in dict(data.get("heights", {})).items()}
            threshold = data.get("threshold")
            epoch = int(data.get("epoch", 0))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            log.warning("node view %s not used: %s", self.path, type(err).__name__)
            return
        self.group_keys, self.members, self.culprits_by_withdrawal = keys, members, culprits
        self.heights, self.epoch = heights, epoch
        self.threshold = None if threshold is None else int(threshold)
        self._stamp = (stat.st_mtime, stat.st_size)

    def public_keys(self) -> list[GroupKey]:
        self._refresh()
        return super().public_keys()

    def committee(self) -> dict[str, Any]:
        self._refresh()
        return super().committee()

    def culprits(self, withdraw_id: str) -> list[int]:
        self._refresh()
        return super().culprits(withdraw_id)

    def chain_height(self, chain: str) -> int | None:
        self._refresh()
        return super().chain_height(chain)


def write_node_view(
    path: Path,
    keys: Sequence[GroupKey],
    threshold: int,
    members: Sequence[Member],
    culprits_by_withdrawal: Mapping[str, Sequence[int]],
    heights: Mapping[str, int],
    epoch: int = 0,
) -> None:
    """Publish a node's view for `FileNodeView` (written whole, then renamed into place)."""
    data = {
        "keys": [
            {
                "scheme": k.scheme,
                "public_key": k.public_key,
                "addresses": dict(k.addresses),
                "epoch": k.epoch,
            }
            for k in keys
        ],
        "threshold": threshold,
        "epoch": epoch,
        "members": [
            {
                "member_id": m.member_id,
                "name": m.name,
                "last_seen": m.last_seen,
                "culprit_count": m.culprit_count,
            }
            for m in members
        ],
        "culprits_by_withdrawal": {w: list(c) for w, c in culprits_by_withdrawal.items()},
        "heights": dict(heights),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)

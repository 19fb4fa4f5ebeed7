"""Test-edge fakes for the runtime: a signer and a chain. They keep their state in a JSON file
when given one, so they survive a killed worker process like a real chain would."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from synod.runtime.interfaces import BlockingSigner, ChainStatus, SigningTimeout
from synod.state.machine import Withdrawal


class FakeSigner(BlockingSigner):
    """'Signs' by hashing the recorded template; can time out the first `fail_first` sessions."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.sessions: list[str] = []

    def sign(self, withdrawal: Withdrawal, session_id: str) -> str:
        self.sessions.append(session_id)
        if len(self.sessions) <= self.fail_first:
            raise SigningTimeout(session_id)
        return hashlib.sha256(f"sig|{withdrawal.template_hash}".encode()).hexdigest()


class FakeChain:
    """Accepts broadcasts; the same template always gives the same txid (like a real chain);
    a transaction confirms after `confirm_after` status polls; `reject` lists withdrawals whose
    first broadcast is rejected; `unreachable` makes broadcasting a withdrawal raise a
    connection error that many times (a node that is down)."""

    def __init__(
        self,
        chain: str,
        path: Path | None = None,
        confirm_after: int = 1,
        reject: set[str] | None = None,
        unreachable: dict[str, int] | None = None,
    ) -> None:
        self.chain = chain
        self.path = path
        self.confirm_after = confirm_after
        self.reject = reject or set()
        self.unreachable = dict(unreachable or {})
        self.state: dict[str, Any] = {"broadcasts": [], "polls": {}, "rejected": []}
        if path is not None and path.exists():
            self.state = json.loads(path.read_text())

    def _save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state))
            tmp.replace(self.path)

    def broadcast(self, w: Withdrawal, signature_ref: str) -> str:
        if self.unreachable.get(w.withdraw_id, 0) > 0:
            self.unreachable[w.withdraw_id] -= 1
            raise ConnectionError("node unreachable")
        txid = hashlib.sha256(f"{w.template_hash}|{signature_ref}".encode()).hexdigest()
        self.state["broadcasts"].append([w.withdraw_id, txid])
        self._save()
        return txid

    def status(self, w: Withdrawal) -> ChainStatus:
        if w.withdraw_id in self.reject and w.withdraw_id not in self.state["rejected"]:
            self.state["rejected"].append(w.withdraw_id)
            self._save()
            return ChainStatus(0, rejected=True, reason="fee too low")
        polls = self.state["polls"].get(w.txid or "", 0) + 1
        self.state["polls"][w.txid or ""] = polls
        self._save()
        return ChainStatus(polls if polls >= self.confirm_after else 0, height=100 + polls)

    def txids_by_withdrawal(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for wid, txid in self.state["broadcasts"]:
            out.setdefault(wid, set()).add(txid)
        return out

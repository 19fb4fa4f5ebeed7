"""How ledger records look in API responses, and the reads the list endpoints page through.

Amounts are decimal strings (base units) so no client loses precision; times are Unix
milliseconds. Cursors are opaque to clients: base64url of the last ledger sequence returned.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from synod.api.problems import Problem, ProblemType
from synod.api.providers import NodeView
from synod.state.machine import BALANCE_FIELDS, Ledger, Withdrawal

MAX_PAGE = 200
_SCAN_LIMIT = 5000  # rows one deposits page may look at before it returns a cursor


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": seq}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        if len(cursor) > 64:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["after"]
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise Problem(
            ProblemType.INVALID_CURSOR,
            "cursor is not one this API returned",
            "query.cursor",
        ) from None
    return after


def withdrawal_view(w: Withdrawal, ledger: Ledger, node: NodeView) -> dict[str, Any]:
    history = ledger.history(w.withdraw_id)
    tip = node.chain_height(w.chain) if w.height is not None else None
    return {
        "id": w.withdraw_id,
        "external_id": w.request_id,
        "chain": w.chain,
        "asset": w.asset,
        "destination": w.to,
        "amount": str(w.amount),
        "state": w.status,
        "fee": None if w.fee is None else str(w.fee),
        "template_hash": w.template_hash,
        "txid": w.txid,
        "confirmed_height": w.height,
        "confirmations": None if tip is None or w.height is None else max(0, tip - w.height + 1),
        "attempt": w.attempt,
        "reason": w.reason,
        "requested_at": w.requested_at or None,
        "signing_sessions": [h["tx"]["session_id"] for h in history if h["kind"] == "start_sign"],
        "culprits": node.culprits(w.withdraw_id),
        "history": [_step(h) for h in history],
    }


def _step(h: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = {
        "ledger_seq": h["seq"],
        "transaction": h["kind"],
        "state": h["result"].get("status"),
    }
    for name in ("session_id", "txid", "reason", "height", "attempt"):
        if name in h["tx"]:
            step[name] = h["tx"][name]
    return step


@dataclass(frozen=True)
class WithdrawalFilter:
    state: str | None = None
    chain: str | None = None
    asset: str | None = None
    external_id: str | None = None
    created_after: int | None = None  # Unix ms, inclusive
    created_before: int | None = None  # Unix ms, exclusive


def withdrawals_page(
    ledger: Ledger, f: WithdrawalFilter, after: int, limit: int, newest_first: bool = False
) -> tuple[list[Withdrawal], int | None]:
    """Withdrawals in request order after sequence `after` (newest first: before it, 0 meaning
    from the newest); (page, last seq if more may follow)."""
    sql = "seq < ?" if newest_first else "seq > ?"
    params: list[Any] = [after or 2**62] if newest_first else [after]
    for column, value in (
        ("status", f.state),
        ("chain", f.chain),
        ("asset", f.asset),
        ("request_id", f.external_id),
    ):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if f.created_after is not None:
        sql += " AND requested_at >= ?"
        params.append(f.created_after)
    if f.created_before is not None:
        sql += " AND requested_at < ?"
        params.append(f.created_before)
    rows = ledger.select_withdrawals(sql, params, limit + 1, newest_first)
    page = rows[:limit]
    more = len(rows) > limit
    return page, (page[-1].seq if more and page else None)


def deposits_page(
    ledger: Ledger, chain: str | None, asset: str | None, after: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Credited deposits from the ledger's transaction log, oldest first."""
    out: list[dict[str, Any]] = []
    scanned = 0
    cursor = after
    while len(out) < limit and scanned < _SCAN_LIMIT:
        rows = ledger.db.query(
            "SELECT seq, body FROM applied_tx WHERE kind = 'deposit_credit' AND seq > ? "
            "ORDER BY seq LIMIT 500",
            (cursor,),
        )
        if not rows:
            return out, None
        for seq, body in rows:
            scanned += 1
            cursor = int(seq)
            tx = json.loads(body)
            if (chain is None or tx["chain"] == chain) and (asset is None or tx["asset"] == asset):
                out.append(
                    {
                        "ledger_seq": int(seq),
                        "chain": tx["chain"],
                        "asset": tx["asset"],
                        "amount": str(tx["amount"]),
                        "ref": tx["ref"],
                        "height": tx["height"],
                    }
                )
                if len(out) == limit:
                    break
    return out, cursor


def balances_view(ledger: Ledger) -> list[dict[str, Any]]:
    out = []
    for (chain, asset), b in sorted(ledger.balances().items()):
        parts = sum(b[k] for k in BALANCE_FIELDS[1:])
        out.append(
            {
                "chain": chain,
                "asset": asset,
                **{k: str(b[k]) for k in BALANCE_FIELDS},
                "conserved": b["deposited"] == parts,
            }
        )
    return out


def held_assets(ledger: Ledger, chain: str) -> set[str]:
    return {r[0] for r in ledger.db.query("SELECT asset FROM balances WHERE chain = ?", (chain,))}

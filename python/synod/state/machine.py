"""The custody state machine: deterministic handlers over a database (seed 000 §4–§8).

`Ledger.apply(tx)` validates a transaction against the current state and, in one
database transaction, either applies it completely or rejects it with a typed
`Rejected` error and changes nothing. A transaction already applied is
recognised by its id and returns its original receipt. Handlers never read a
clock or the network: the same transactions in the same order give the same state
on every node and on both stores.

Withdrawal states: QUEUED → RESERVED → SIGNING → SIGNED → BROADCAST → CONFIRMED,
with BROADCAST → FAILED, FAILED → QUEUED and SIGNING → QUEUED (same template), and
FAILED → CONFIRMED when the transaction reported failed is mined after all, and
QUEUED → CANCELLED while no template was ever reserved. `TRANSITIONS` is the one table of
which transaction applies in which states.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synod.state import errors as E
from synod.state.db import PostgresDatabase, SqliteDatabase
from synod.state.fees import FeeSchedule
from synod.state.transactions import (
    CHAINS,
    Broadcast,
    Cancel,
    Confirm,
    DepositCredit,
    Fail,
    Requeue,
    Reserve,
    Signed,
    StartSign,
    Tx,
    WithdrawRequest,
    parse_tx,
)
from synod.state.transition import MIGRATION, TransitionBook, TransitionRules

if TYPE_CHECKING:
    from synod.config import ChainsConfig, TransitionConfig, WithdrawConfig

QUEUED, RESERVED, SIGNING, SIGNED = "QUEUED", "RESERVED", "SIGNING", "SIGNED"
BROADCAST, CONFIRMED, FAILED = "BROADCAST", "CONFIRMED", "FAILED"
CANCELLED = "CANCELLED"
STATUSES = (QUEUED, RESERVED, SIGNING, SIGNED, BROADCAST, CONFIRMED, FAILED, CANCELLED)
FINAL = (CONFIRMED, CANCELLED)
"""No transaction moves a withdrawal out of these."""

TRANSITIONS: dict[str, tuple[str, ...]] = {
    Reserve.KIND: (QUEUED,),
    StartSign.KIND: (RESERVED, SIGNING),  # SIGNING: refused as SessionActive, named as such
    Signed.KIND: (SIGNING,),
    Broadcast.KIND: (SIGNED,),
    Confirm.KIND: (BROADCAST, FAILED),  # FAILED: reported failed, then mined after all
    Fail.KIND: (BROADCAST,),
    Requeue.KIND: (SIGNING, FAILED),
    Cancel.KIND: (QUEUED,),
}
"""The states each transaction about an existing withdrawal may find it in."""
BTC_DUST = 330  # sats: the smallest P2TR output worth creating
BALANCE_FIELDS = ("deposited", "available", "reserved", "withdrawn", "fees", "external")

TemplateBuilder = Callable[[dict[str, Any]], bytes]


def withdraw_id_for(request_id: str) -> str:
    """The id the ledger gives the withdrawal of `request_id` (known before it is applied)."""
    return hashlib.sha256(b"synod/withdraw/" + request_id.encode()).hexdigest()[:32]


def canonical_template(template: dict[str, Any]) -> bytes:
    """Chain-agnostic template bytes: canonical JSON of what will be signed and paid."""
    return json.dumps(template, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Receipt:
    tx_id: str
    kind: str
    seq: int
    result: dict[str, Any]
    duplicate: bool = False


@dataclass(frozen=True)
class Withdrawal:
    withdraw_id: str
    seq: int
    request_id: str
    chain: str
    asset: str
    to: str
    amount: int
    status: str
    fee: int | None
    template_hash: str | None
    template: str | None
    session_id: str | None
    signature_ref: str | None
    txid: str | None
    height: int | None
    sessions: int
    attempt: int
    reason: str | None
    account_nonce: int | None = None
    requested_at: int = 0
    purpose: str = "withdrawal"  # or "migration": a power transition's own transaction
    key_epoch: int | None = None  # the committee epoch whose key signs it (set at StartSign)
    sign_context: str | None = None  # chain data the signed bytes commit to (StartSign)


_W_COLUMNS = (
    "withdraw_id, seq, request_id, chain, asset, to_addr, amount, status, fee, template_hash, "
    "template, session_id, signature_ref, txid, height, sessions, attempt, reason, account_nonce, "
    "requested_at, purpose, key_epoch, sign_context"
)


def recorded_template(w: Withdrawal) -> dict[str, Any]:
    """The template reserved for `w`, parsed, after checking it against the recorded hash:
    what chain adapters build from, so a transaction never pays anything but the template."""
    if not w.template or not w.template_hash:
        raise ValueError(f"{w.withdraw_id}: no template recorded yet")
    if hashlib.sha256(w.template.encode()).hexdigest() != w.template_hash:
        raise ValueError(f"{w.withdraw_id}: template does not match its hash")
    template: dict[str, Any] = json.loads(w.template)
    if template.get("withdraw_id") != w.withdraw_id or template.get("chain") != w.chain:
        raise ValueError(f"{w.withdraw_id}: the template is for another withdrawal or chain")
    return template


def _withdrawal(row: tuple[Any, ...]) -> Withdrawal:
    w = list(row)
    w[6] = int(w[6])
    w[8] = None if w[8] is None else int(w[8])
    w[21] = None if w[21] is None else int(w[21])
    return Withdrawal(*w)


class Ledger:
    """The state machine over one database.

    `nonce_chains` are the chains paid from an account whose transactions carry a sequence
    number (EVM in EOA mode). Reservation gives each withdrawal the next number, in FIFO
    order, inside its template; a new template for the same withdrawal keeps the number, so
    the chain itself lets at most one of its transactions execute.
    """

    def __init__(
        self,
        db: SqliteDatabase | PostgresDatabase,
        fees: FeeSchedule | None = None,
        template_builder: TemplateBuilder = canonical_template,
        nonce_chains: Collection[str] = (),
        max_request: Mapping[str, int] | None = None,
        rules: TransitionRules | None = None,
    ) -> None:
        """`max_request` caps one request's amount per asset (base units); a request above it
        is refused when it arrives, so it never sits at the head of the queue."""
        unknown = sorted(set(nonce_chains) - {"eth", "bnb"})
        if unknown:
            raise ValueError(f"account nonces exist only on EVM chains, not {unknown}")
        self.db = db
        self.fees = fees or FeeSchedule()
        self.template_builder = template_builder
        self.nonce_chains = frozenset(nonce_chains)
        self.max_request = dict(max_request or {})
        self._handlers: dict[str, Callable[[Any], dict[str, Any]]] = {
            DepositCredit.KIND: self._deposit,
            WithdrawRequest.KIND: self._request,
            Reserve.KIND: self._reserve,
            StartSign.KIND: self._start_sign,
            Signed.KIND: self._signed,
            Broadcast.KIND: self._broadcast,
            Confirm.KIND: self._confirm,
            Fail.KIND: self._fail,
            Requeue.KIND: self._requeue,
            Cancel.KIND: self._cancel,
        }
        self.transitions = TransitionBook(self, rules or TransitionRules())
        self._handlers.update(self.transitions.handlers())

    @classmethod
    def from_config(
        cls,
        db: SqliteDatabase | PostgresDatabase,
        chains: ChainsConfig,
        withdraw: WithdrawConfig | None = None,
        transition: TransitionConfig | None = None,
    ) -> Ledger:
        """The ledger a node runs: fees and EOA-mode chains from the `chains` config, the
        per-asset request maximum from `withdraw.maxRequest`, and the power transitions'
        rules from `transition`."""
        rules = None
        if transition is not None:
            rules = TransitionRules(
                trigger_ratio=transition.trigger_change_ratio,
                strike_limit=transition.strike_limit,
                sweep_batch=transition.sweep_batch_inputs,
                pause_during_switch=transition.pause_withdraw_during_switch,
            )
        return cls(
            db,
            FeeSchedule.from_config(chains),
            nonce_chains=chains.nonce_chains,
            max_request=withdraw.max_request if withdraw is not None else None,
            rules=rules,
        )

    # ------------------------------------------------------------------ apply
    def apply(self, tx: Tx | dict[str, Any] | bytes | str) -> Receipt:
        """Apply one transaction atomically; `Rejected` (with a reason) leaves the state as is."""
        if not isinstance(tx, Tx):
            tx = parse_tx(tx)
        else:
            tx.validate()
        tx_id = tx.tx_id
        with self.db.transaction():
            done = self.applied(tx_id)
            if done is not None:
                return done
            result = self._handlers[tx.KIND](tx)
            seq = self._next("tx_seq")
            self.db.execute(
                "INSERT INTO applied_tx (tx_id, seq, kind, body, result, withdraw_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    tx_id,
                    seq,
                    tx.KIND,
                    tx.canonical().decode(),
                    json.dumps(result, sort_keys=True),
                    result.get("withdraw_id"),
                ),
            )
        return Receipt(tx_id, tx.KIND, seq, result)

    # ------------------------------------------------------------------ reads
    def applied(self, tx_id: str) -> Receipt | None:
        """The receipt of a transaction already applied (marked `duplicate`), or None."""
        rows = self.db.query("SELECT seq, kind, result FROM applied_tx WHERE tx_id = ?", (tx_id,))
        if not rows:
            return None
        seq, kind, result = rows[0]
        return Receipt(tx_id, kind, int(seq), json.loads(result), duplicate=True)

    def withdrawal(self, withdraw_id: str) -> Withdrawal:
        rows = self.db.query(
            f"SELECT {_W_COLUMNS} FROM withdrawals WHERE withdraw_id = ?", (withdraw_id,)
        )
        if not rows:
            raise E.UnknownWithdrawal(withdraw_id)
        return _withdrawal(rows[0])

    def withdrawals(self, status: str | None = None, chain: str | None = None) -> list[Withdrawal]:
        """In FIFO order (request sequence)."""
        sql = f"SELECT {_W_COLUMNS} FROM withdrawals WHERE 1 = 1"
        params: list[Any] = []
        if status:
            sql += " AND status = ?"
            params.append(status)
        if chain:
            sql += " AND chain = ?"
            params.append(chain)
        return [_withdrawal(r) for r in self.db.query(sql + " ORDER BY seq", params)]

    def select_withdrawals(
        self, where: str, params: Sequence[Any], limit: int, newest_first: bool = False
    ) -> list[Withdrawal]:
        """Up to `limit` withdrawals matching a condition on the table's columns (`?` for each
        of `params`), in request order (or its reverse): the read the API's pages use."""
        order = "DESC" if newest_first else "ASC"
        rows = self.db.query(
            f"SELECT {_W_COLUMNS} FROM withdrawals WHERE {where} ORDER BY seq {order} LIMIT ?",
            (*params, limit),
        )
        return [_withdrawal(r) for r in rows]

    def open_withdrawals(self) -> list[Withdrawal]:
        """Everything not yet confirmed or cancelled, in FIFO order: what the runtime works on."""
        rows = self.db.query(
            f"SELECT {_W_COLUMNS} FROM withdrawals WHERE status NOT IN (?, ?) ORDER BY seq", FINAL
        )
        return [_withdrawal(r) for r in rows]

    def balance(self, chain: str, asset: str) -> dict[str, int]:
        """deposited = available + reserved + withdrawn + fees + external, always."""
        rows = self.db.query(
            f"SELECT {', '.join(BALANCE_FIELDS)} FROM balances WHERE chain = ? AND asset = ?",
            (chain, asset),
        )
        if not rows:
            return dict.fromkeys(BALANCE_FIELDS, 0)
        return {n: int(v) for n, v in zip(BALANCE_FIELDS, rows[0], strict=True)}

    def balances(self) -> dict[tuple[str, str], dict[str, int]]:
        return {
            (c, a): self.balance(c, a)
            for c, a in self.db.query("SELECT chain, asset FROM balances")
        }

    def utxos(self, include_spent: bool = False) -> list[dict[str, Any]]:
        sql = "SELECT outpoint, value, script, height, locked_by, spent_by FROM utxos"
        if not include_spent:
            sql += " WHERE spent_by IS NULL"
        rows = self.db.query(sql + " ORDER BY height, seq")
        keys = ("outpoint", "value", "script", "height", "locked_by", "spent_by")
        return [{**dict(zip(keys, r, strict=True)), "value": int(r[1])} for r in rows]

    def has_utxo(self, outpoint: str) -> bool:
        """Whether the ledger holds (or held) this output: a transaction spending it is ours."""
        return bool(self.db.query("SELECT 1 FROM utxos WHERE outpoint = ?", (outpoint,)))

    def lots(self, chain: str, asset: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT lot_id, amount, remaining, height FROM lots "
            "WHERE chain = ? AND asset = ? ORDER BY seq",
            (chain, asset),
        )
        return [
            {"lot_id": r[0], "amount": int(r[1]), "remaining": int(r[2]), "height": r[3]}
            for r in rows
        ]

    def history(self, withdraw_id: str) -> list[dict[str, Any]]:
        """The applied transactions about the withdrawal, in order (its state history)."""
        rows = self.db.query(
            "SELECT seq, kind, body, result FROM applied_tx WHERE withdraw_id = ? ORDER BY seq",
            (withdraw_id,),
        )
        return [
            {"seq": int(r[0]), "kind": r[1], "tx": json.loads(r[2]), "result": json.loads(r[3])}
            for r in rows
        ]

    def broadcast_txids(self, withdraw_id: str) -> list[str]:
        """The txids broadcast for the withdrawal, oldest first; in EOA mode only those at its
        current account nonce (the ones at a used-up nonce can never execute again)."""
        return self._txids_at_nonce(self.withdrawal(withdraw_id))

    def _txids_at_nonce(self, w: Withdrawal) -> list[str]:
        rows = self.db.query(
            "SELECT txid FROM broadcasts WHERE withdraw_id = ? "
            "AND (account_nonce IS NULL OR account_nonce = ?) ORDER BY seq",
            (w.withdraw_id, w.account_nonce),
        )
        return [r[0] for r in rows]

    def reservations(self, withdraw_id: str) -> list[tuple[str, str, int]]:
        rows = self.db.query(
            "SELECT source, asset, amount FROM reservations "
            "WHERE withdraw_id = ? ORDER BY source, asset",
            (withdraw_id,),
        )
        return [(r[0], r[1], int(r[2])) for r in rows]

    # ------------------------------------------------------------------ helpers
    def _next(self, counter: str) -> int:
        rows = self.db.query("SELECT value FROM meta WHERE key = ?", (counter,))
        value = int(rows[0][0]) + 1 if rows else 1
        if rows:
            self.db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(value), counter))
        else:
            self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (counter, str(value)))
        return value

    def _adjust(self, chain: str, asset: str, **deltas: int) -> None:
        b = self.balance(chain, asset)
        for k, d in deltas.items():
            b[k] += d
            if b[k] < 0:
                raise AssertionError(
                    f"balance {chain}/{asset}.{k} would go negative"
                )  # a bug, not input
        updates = ", ".join(f"{k} = excluded.{k}" for k in BALANCE_FIELDS)
        self.db.execute(
            f"INSERT INTO balances (chain, asset, {', '.join(BALANCE_FIELDS)}) "
            f"VALUES (?, ?, {', '.join('?' for _ in BALANCE_FIELDS)}) "
            f"ON CONFLICT (chain, asset) DO UPDATE SET {updates}",
            (chain, asset, *(str(b[k]) for k in BALANCE_FIELDS)),
        )

    def _set(self, withdraw_id: str, **fields: Any) -> None:
        columns = {"to": "to_addr"}
        assignments = ", ".join(f"{columns.get(k, k)} = ?" for k in fields)
        self.db.execute(
            f"UPDATE withdrawals SET {assignments} WHERE withdraw_id = ?",
            (*fields.values(), withdraw_id),
        )

    def _expect(self, tx: Any) -> Withdrawal:
        """The withdrawal `tx` is about, in one of the states `TRANSITIONS` allows for it."""
        allowed = TRANSITIONS[tx.KIND]
        w = self.withdrawal(tx.withdraw_id)
        if tx.attempt != w.attempt:
            raise E.StaleAttempt(
                f"{tx.KIND} for attempt {tx.attempt}, {w.withdraw_id} is at {w.attempt}"
            )
        if w.status not in allowed:
            raise E.InvalidTransition(
                f"{tx.KIND} needs {w.withdraw_id} in {'/'.join(allowed)}, it is {w.status}"
            )
        return w

    # ------------------------------------------------------------------ handlers
    def _deposit(self, tx: DepositCredit) -> dict[str, Any]:
        amount = int(tx.amount)
        if tx.chain == "btc":
            if self.db.query("SELECT 1 FROM utxos WHERE outpoint = ?", (tx.ref,)):
                raise E.DuplicateDeposit(f"UTXO {tx.ref} already credited")
            self.db.execute(
                "INSERT INTO utxos (outpoint, seq, value, script, height, locked_by, spent_by) "
                "VALUES (?, ?, ?, ?, ?, NULL, NULL)",
                (tx.ref, self._next("utxo_seq"), str(amount), tx.script, tx.height),
            )
        else:
            lot_id = f"{tx.chain}:{tx.asset}:{tx.ref}"
            if self.db.query("SELECT 1 FROM lots WHERE lot_id = ?", (lot_id,)):
                raise E.DuplicateDeposit(f"deposit {tx.ref} already credited")
            self.db.execute(
                "INSERT INTO lots (lot_id, seq, chain, asset, amount, remaining, height, "
                "key_epoch) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    lot_id,
                    self._next("lot_seq"),
                    tx.chain,
                    tx.asset,
                    str(amount),
                    str(amount),
                    tx.height,
                    self.transitions.active_epoch(),  # paid to the committee in charge
                ),
            )
        self._adjust(tx.chain, tx.asset, deposited=amount, available=amount)
        return {"chain": tx.chain, "asset": tx.asset, "credited": amount}

    def _request(self, tx: WithdrawRequest) -> dict[str, Any]:
        if self.db.query("SELECT 1 FROM withdrawals WHERE request_id = ?", (tx.request_id,)):
            raise E.DuplicateRequest(f"request {tx.request_id} already queued")
        if tx.chain == "btc" and tx.asset != "BTC":
            raise E.MalformedTransaction("Bitcoin withdrawals are in BTC")
        most = self.max_request.get(tx.asset)
        if most is not None and int(tx.amount) > most:
            raise E.AboveMaximum(f"{tx.amount} {tx.asset} is above the maximum of {most}")
        seq = self._next("withdraw_seq")
        withdraw_id = withdraw_id_for(tx.request_id)
        self.db.execute(
            "INSERT INTO withdrawals (withdraw_id, seq, request_id, chain, asset, to_addr, amount, "
            "status, sessions, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (
                withdraw_id,
                seq,
                tx.request_id,
                tx.chain,
                tx.asset,
                tx.to,
                str(int(tx.amount)),
                QUEUED,
                tx.requested_at,
            ),
        )
        return {"withdraw_id": withdraw_id, "seq": seq, "status": QUEUED}

    # -- reservation planning (pure reads) ---------------------------------------
    def _plan(self, w: Withdrawal) -> dict[str, Any] | None:
        """What reserving `w` now would take, or None if the funds do not suffice."""
        if w.chain == "btc":
            return self._plan_btc(w)
        native = CHAINS[w.chain]
        fee = self.fees.account_fee(w.chain, w.asset)
        need: dict[str, int] = {w.asset: w.amount}
        need[native] = need.get(native, 0) + fee
        takes: list[tuple[str, str, int]] = []
        for asset, amount in sorted(need.items()):
            left = amount
            for lot_id, remaining in self._open_lots(w.chain, asset):
                take = min(left, remaining)
                takes.append((lot_id, asset, take))
                left -= take
                if left == 0:
                    break
            if left:
                return None
        template = {
            "withdraw_id": w.withdraw_id,
            "chain": w.chain,
            "asset": w.asset,
            "to": w.to,
            "amount": str(w.amount),
            "fee": str(fee),
            "fee_asset": native,
            "lots": [[src, asset, str(a)] for src, asset, a in takes],
        }
        return {"fee": fee, "takes": takes, "template": template}

    def _account_nonce(self, w: Withdrawal) -> int:
        """The withdrawal's account nonce: its own if it ever had one, else the chain's next."""
        if w.account_nonce is not None:
            return w.account_nonce
        # accounts start at nonce 0; a fresh key is a new account with its own count
        nonce = self._next(self.transitions.nonce_counter(w.chain)) - 1
        self._set(w.withdraw_id, account_nonce=nonce)
        return nonce

    def _plan_btc(self, w: Withdrawal) -> dict[str, Any] | None:
        chosen: list[dict[str, Any]] = []
        total = 0
        for u in self._free_utxos():
            chosen.append(u)
            total += u["value"]
            fee = self.fees.btc_fee(len(chosen), 2)
            if total >= w.amount + fee:
                break
        else:
            return None
        change = total - w.amount - fee
        if change < BTC_DUST:
            fee = total - w.amount  # no change output: the remainder goes to the miners
            change = 0
        outputs = [{"to": w.to, "value": str(w.amount)}]
        if change:  # back to the custody's own script
            outputs.append({"to": "change", "value": str(change), "script": chosen[0]["script"]})
        template = {
            "withdraw_id": w.withdraw_id,
            "chain": "btc",
            "inputs": [[u["outpoint"], str(u["value"]), u["script"]] for u in chosen],
            "outputs": outputs,
            "fee": str(fee),
        }
        takes = [(u["outpoint"], "BTC", u["value"]) for u in chosen]
        return {"fee": fee, "takes": takes, "template": template, "change": change}

    def _reserve(self, tx: Reserve) -> dict[str, Any]:
        w = self._expect(tx)
        if w.template_hash is not None:
            # Re-queued after a session timeout: same funds, same template.
            self._set(w.withdraw_id, status=RESERVED)
            return {
                "withdraw_id": w.withdraw_id,
                "status": RESERVED,
                "template_hash": w.template_hash,
            }
        self.transitions.check_reserve(w)
        for earlier in self._earlier_unreserved(w):
            if self._plan(earlier) is not None:
                raise E.FifoViolation(
                    f"{earlier.withdraw_id} (seq {earlier.seq}) was requested first and fits"
                )
        plan = self._plan(w)
        if plan is None:
            raise E.InsufficientFunds(
                f"{w.withdraw_id}: {w.amount} {w.asset} plus fee not available"
            )
        self._lock_funds(w.withdraw_id, w.chain, plan["takes"])
        if w.chain in self.nonce_chains:
            plan["template"]["nonce"] = str(self._account_nonce(w))
        template_hash = self._fix_template(w.withdraw_id, plan["template"], plan["fee"])
        return {"withdraw_id": w.withdraw_id, "status": RESERVED, "template_hash": template_hash}

    def _lock_funds(self, withdraw_id: str, chain: str, takes: list[tuple[str, str, int]]) -> None:
        """Move the planned UTXOs or lot amounts from available to reserved for one payment."""
        for source, asset, amount in takes:
            if chain == "btc":
                self.db.execute(
                    "UPDATE utxos SET locked_by = ? WHERE outpoint = ?", (withdraw_id, source)
                )
            else:
                rows = self.db.query("SELECT remaining FROM lots WHERE lot_id = ?", (source,))
                left = int(rows[0][0]) - amount
                self.db.execute(
                    "UPDATE lots SET remaining = ?, exhausted = ? WHERE lot_id = ?",
                    (str(left), int(left == 0), source),
                )
            self.db.execute(
                "INSERT INTO reservations (withdraw_id, source, asset, amount) VALUES (?, ?, ?, ?)",
                (withdraw_id, source, asset, str(amount)),
            )
            self._adjust(chain, asset, available=-amount, reserved=amount)

    def _fix_template(self, withdraw_id: str, template: dict[str, Any], fee: int) -> str:
        """Record the template (and its hash) and the fee: the payment is RESERVED."""
        raw = self.template_builder(template)
        template_hash = hashlib.sha256(raw).hexdigest()
        self._set(
            withdraw_id,
            status=RESERVED,
            fee=str(fee),
            template=raw.decode(),
            template_hash=template_hash,
        )
        return template_hash

    def _open_lots(self, chain: str, asset: str) -> Iterator[tuple[str, int]]:
        """Lots with something left, oldest first, fetched a page at a time."""
        last = -1
        while True:
            rows = self.db.query(
                "SELECT lot_id, remaining, seq FROM lots WHERE chain = ? AND asset = ? "
                "AND exhausted = 0 AND seq > ? ORDER BY seq LIMIT 64",
                (chain, asset, last),
            )
            if not rows:
                return
            for lot_id, remaining, seq in rows:
                last = seq
                yield lot_id, int(remaining)

    def _free_utxos(self) -> Iterator[dict[str, Any]]:
        """Unlocked, unspent UTXOs, oldest first, a page at a time."""
        last = (-1, -1)
        while True:
            rows = self.db.query(
                "SELECT outpoint, value, script, height, seq FROM utxos "
                "WHERE locked_by IS NULL AND spent_by IS NULL "
                "AND (height > ? OR (height = ? AND seq > ?)) ORDER BY height, seq LIMIT 64",
                (last[0], last[0], last[1]),
            )
            if not rows:
                return
            for outpoint, value, script, height, seq in rows:
                last = (height, seq)
                yield {
                    "outpoint": outpoint,
                    "value": int(value),
                    "script": script,
                    "height": height,
                }

    def _earlier_unreserved(self, w: Withdrawal) -> list[Withdrawal]:
        rows = self.db.query(
            f"SELECT {_W_COLUMNS} FROM withdrawals WHERE chain = ? AND asset = ? AND status = ? "
            "AND seq < ? AND template_hash IS NULL ORDER BY seq",
            (w.chain, w.asset, QUEUED, w.seq),
        )
        return [_withdrawal(r) for r in rows]

    def _start_sign(self, tx: StartSign) -> dict[str, Any]:
        w = self._expect(tx)
        if w.status == SIGNING:
            raise E.SessionActive(f"{w.withdraw_id} is already being signed in {w.session_id}")
        if w.sign_context and tx.sign_context and tx.sign_context != w.sign_context:
            # A second message for one template could pay it twice.
            raise E.InvalidTransition(
                f"{w.withdraw_id}: its template is signed under {w.sign_context!r}, "
                f"not {tx.sign_context!r}"
            )
        context = w.sign_context or tx.sign_context or None
        epoch = self.transitions.signing_epoch(w)
        self._set(
            w.withdraw_id,
            status=SIGNING,
            session_id=tx.session_id,
            sessions=w.sessions + 1,
            key_epoch=epoch,
            sign_context=context,
        )
        result = {
            "withdraw_id": w.withdraw_id,
            "status": SIGNING,
            "template_hash": w.template_hash,
            "key_epoch": epoch,
        }
        if context:
            result["sign_context"] = context
        return result

    def _signed(self, tx: Signed) -> dict[str, Any]:
        w = self._expect(tx)
        if w.session_id != tx.session_id:
            raise E.SessionMismatch(
                f"{w.withdraw_id} is being signed in {w.session_id}, not {tx.session_id}"
            )
        self._set(w.withdraw_id, status=SIGNED, signature_ref=tx.signature_ref)
        return {"withdraw_id": w.withdraw_id, "status": SIGNED}

    def _broadcast(self, tx: Broadcast) -> dict[str, Any]:
        w = self._expect(tx)
        if not self.db.query(
            "SELECT 1 FROM broadcasts WHERE withdraw_id = ? AND txid = ?", (w.withdraw_id, tx.txid)
        ):
            self.db.execute(
                "INSERT INTO broadcasts (withdraw_id, txid, seq, account_nonce) "
                "VALUES (?, ?, ?, ?)",
                (w.withdraw_id, tx.txid, self._next("broadcast_seq"), w.account_nonce),
            )
        self._set(w.withdraw_id, status=BROADCAST, txid=tx.txid)
        return {"withdraw_id": w.withdraw_id, "status": BROADCAST, "txid": tx.txid}

    def _confirm(self, tx: Confirm) -> dict[str, Any]:
        # FAILED too: a transaction reported failed can still be mined (its txid is kept).
        w = self._expect(tx)
        if w.txid != tx.txid and not (
            # EOA mode excepted: there every transaction of the withdrawal shares one nonce,
            # so an earlier one mined instead of the last is the one payment.
            w.chain in self.nonce_chains and tx.txid in self._txids_at_nonce(w)
        ):
            raise E.InvalidTransition(f"{w.withdraw_id} was broadcast as {w.txid}, not {tx.txid}")
        fee = int(w.fee or 0)
        native = CHAINS[w.chain]
        reserved = self.reservations(w.withdraw_id)
        if w.purpose == MIGRATION:
            self.transitions.confirm_migration(w, tx.txid, tx.height)
        elif w.chain == "btc":
            inputs = sum(a for _, _, a in reserved)
            change = inputs - w.amount - fee
            for source, _, _ in reserved:
                self.db.execute(
                    "UPDATE utxos SET spent_by = ? WHERE outpoint = ?", (w.withdraw_id, source)
                )
            self._adjust(
                "btc", "BTC", reserved=-inputs, withdrawn=w.amount, fees=fee, available=change
            )
            if change:
                template = json.loads(w.template or "{}")
                script = template["outputs"][-1].get("script", "")
                self.db.execute(
                    "INSERT INTO utxos (outpoint, seq, value, script, height, locked_by, spent_by) "
                    "VALUES (?, ?, ?, ?, ?, NULL, NULL)",
                    (f"{tx.txid}:1", self._next("utxo_seq"), str(change), script, tx.height),
                )
        else:
            by_asset: dict[str, int] = {}
            for _, asset, amount in reserved:
                by_asset[asset] = by_asset.get(asset, 0) + amount
            for asset, amount in by_asset.items():
                paid = w.amount if asset == w.asset else 0
                fees = fee if asset == native else 0
                self._adjust(w.chain, asset, reserved=-amount, withdrawn=paid, fees=fees)
        self.db.execute("DELETE FROM reservations WHERE withdraw_id = ?", (w.withdraw_id,))
        self._set(w.withdraw_id, status=CONFIRMED, height=tx.height, txid=tx.txid)
        return {"withdraw_id": w.withdraw_id, "status": CONFIRMED}

    def _fail(self, tx: Fail) -> dict[str, Any]:
        w = self._expect(tx)
        self._set(w.withdraw_id, status=FAILED, reason=tx.reason)
        return {"withdraw_id": w.withdraw_id, "status": FAILED}

    def _requeue(self, tx: Requeue) -> dict[str, Any]:
        w = self._expect(tx)
        if w.status == SIGNING and (tx.spent_outpoints or tx.nonce_spent):
            raise E.InvalidTransition(f"{w.withdraw_id}: nothing was broadcast, nothing was spent")
        if tx.nonce_spent and w.chain not in self.nonce_chains:
            raise E.InvalidTransition(f"{w.withdraw_id}: {w.chain} keeps no account nonces here")
        if w.status == SIGNING or not tx.unspendable_proof:
            # Same template: nothing that was signed can pay a second, different transaction.
            self._set(
                w.withdraw_id,
                status=QUEUED,
                session_id=None,
                reason=tx.reason,
                attempt=w.attempt + 1,
            )
            return {
                "withdraw_id": w.withdraw_id,
                "status": QUEUED,
                "template_hash": w.template_hash,
            }
        self._write_off(w, tx.spent_outpoints)
        self._release(w)
        if tx.nonce_spent:
            self._burn_fee(w)
            self._set(w.withdraw_id, account_nonce=None)  # the next template takes a fresh one
        if w.purpose == MIGRATION:
            # Its funds are back under the old key; the transition worker requests a new batch.
            reason = f"{tx.reason} (unspendable: {tx.unspendable_proof})"
            self._set(w.withdraw_id, status=CANCELLED, session_id=None, reason=reason)
            return {"withdraw_id": w.withdraw_id, "status": CANCELLED, "template_hash": None}
        self._set(
            w.withdraw_id,
            status=QUEUED,
            session_id=None,
            template=None,
            template_hash=None,
            fee=None,
            signature_ref=None,
            txid=None,
            sign_context=None,
            attempt=w.attempt + 1,
            reason=f"{tx.reason} (unspendable: {tx.unspendable_proof})",
        )
        return {"withdraw_id": w.withdraw_id, "status": QUEUED, "template_hash": None}

    def _cancel(self, tx: Cancel) -> dict[str, Any]:
        w = self._expect(tx)
        if w.template_hash is not None:
            raise E.InvalidTransition(
                f"{w.withdraw_id} has a reserved template that may have been signed; "
                "it can no longer be cancelled"
            )
        if w.account_nonce is not None:
            raise E.InvalidTransition(
                f"{w.withdraw_id} holds account nonce {w.account_nonce}; cancelling it would "
                "leave a gap no later transaction can pass"
            )
        self._set(w.withdraw_id, status=CANCELLED, reason=tx.reason)
        return {"withdraw_id": w.withdraw_id, "status": CANCELLED}

    def _write_off(self, w: Withdrawal, outpoints: Sequence[str]) -> None:
        """Inputs of `w` shown spent by another transaction: gone, never back to the pool."""
        if outpoints and w.chain != "btc":
            raise E.MalformedTransaction("spent_outpoints are Bitcoin inputs")
        reserved = {source: amount for source, _, amount in self.reservations(w.withdraw_id)}
        for outpoint in dict.fromkeys(outpoints):
            if outpoint not in reserved:
                raise E.InvalidTransition(f"{outpoint} is not an input of {w.withdraw_id}")
            self.db.execute(
                "UPDATE utxos SET locked_by = NULL, spent_by = ? WHERE outpoint = ?",
                (f"external:{w.withdraw_id}", outpoint),
            )
            self.db.execute(
                "DELETE FROM reservations WHERE withdraw_id = ? AND source = ?",
                (w.withdraw_id, outpoint),
            )
            self._adjust("btc", "BTC", reserved=-reserved[outpoint], external=reserved[outpoint])

    def _burn_fee(self, w: Withdrawal) -> None:
        """A transaction of `w` executed and reverted: its fee is gone (booked at the most the
        template allowed, as for a confirmed one), taken from the oldest native lots."""
        native, left = CHAINS[w.chain], int(w.fee or 0)
        self._adjust(w.chain, native, available=-left, fees=left)
        for lot_id, remaining in self._open_lots(w.chain, native):
            take = min(left, remaining)
            self.db.execute(
                "UPDATE lots SET remaining = ?, exhausted = ? WHERE lot_id = ?",
                (str(remaining - take), int(remaining == take), lot_id),
            )
            left -= take
            if left == 0:
                return

    def _release(self, w: Withdrawal) -> None:
        for source, asset, amount in self.reservations(w.withdraw_id):
            if w.chain == "btc":
                self.db.execute("UPDATE utxos SET locked_by = NULL WHERE outpoint = ?", (source,))
            else:
                rows = self.db.query("SELECT remaining FROM lots WHERE lot_id = ?", (source,))
                self.db.execute(
                    "UPDATE lots SET remaining = ?, exhausted = 0 WHERE lot_id = ?",
                    (str(int(rows[0][0]) + amount), source),
                )
            self._adjust(w.chain, asset, available=amount, reserved=-amount)
        self.db.execute("DELETE FROM reservations WHERE withdraw_id = ?", (w.withdraw_id,))

"""Power transitions: the ledger's second queue (seed 000 §6).

A committee record per epoch (members, threshold, group keys per scheme) and at most one
open transition at a time, moving through `Phase`:

    DETECTED ─KeygenStart─▶ KEYGEN ─KeyReady─▶ KEY_READY ─MigrationStart─▶ MIGRATING
        ▲                     │                                               │
        └──KeygenFailed───────┘ (ABORTED when too few members remain)  MigrationsDone
                                                                              ▼
                                               ACTIVE ◀─────Activate────── MIGRATED

`PHASES` is the one table of which transaction applies in which phase. From KEY_READY
until ACTIVE (the switch window) no new withdrawal enters SIGNING; on a chain whose key
changes (a fresh key) no new withdrawal reserves funds either, and withdrawals reserved
but never signed give their funds back at MIGRATING. Migration transactions are rows of
the withdrawals table (purpose `migration`), reserved when requested and then signed,
broadcast and confirmed by the same handlers as a withdrawal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from synod.state import errors as E
from synod.state.key_proofs import check_key
from synod.state.transactions import (
    CHAINS,
    Activate,
    KeygenFailed,
    KeygenStart,
    KeyReady,
    MigrationRequest,
    MigrationsDone,
    MigrationStart,
    SignerSetUpdate,
    Strike,
)

if TYPE_CHECKING:
    from synod.state.machine import Ledger, Withdrawal


class Phase(StrEnum):
    DETECTED = "DETECTED"
    KEYGEN = "KEYGEN"
    KEY_READY = "KEY_READY"
    MIGRATING = "MIGRATING"
    MIGRATED = "MIGRATED"
    ACTIVE = "ACTIVE"
    ABORTED = "ABORTED"


PHASES: dict[str, tuple[tuple[Phase, ...], Phase]] = {
    KeygenStart.KIND: ((Phase.DETECTED,), Phase.KEYGEN),
    KeygenFailed.KIND: ((Phase.KEYGEN,), Phase.DETECTED),  # or ABORTED, too few remain
    KeyReady.KIND: ((Phase.KEYGEN,), Phase.KEY_READY),
    MigrationStart.KIND: ((Phase.KEY_READY,), Phase.MIGRATING),
    MigrationRequest.KIND: ((Phase.MIGRATING,), Phase.MIGRATING),
    MigrationsDone.KIND: ((Phase.MIGRATING,), Phase.MIGRATED),
    Activate.KIND: ((Phase.MIGRATED,), Phase.ACTIVE),
}
"""Transaction kind -> (the phases it may find the transition in, the phase it leaves)."""
CLOSED = (Phase.ACTIVE, Phase.ABORTED)
WINDOW = (Phase.KEY_READY, Phase.MIGRATING, Phase.MIGRATED)
"""The switch window: no new withdrawal enters SIGNING."""
MIGRATION = "migration"
UPDATE_PUBKEY = "PUBKEY"
"""The asset name of a custody contract's key update (a migration that moves no funds)."""


@dataclass(frozen=True)
class TransitionRules:
    """Configuration every node applies identically (`transition.*`)."""

    trigger_ratio: float = 0.2
    strike_limit: int = 3
    sweep_batch: int = 50
    pause_during_switch: bool = True  # False: chains that keep their key sign on in the window


@dataclass(frozen=True)
class Transition:
    epoch: int
    from_epoch: int
    phase: Phase
    members: tuple[int, ...]
    threshold: int
    attempt: int
    session_id: str | None
    reason: str | None
    culprits: tuple[int, ...]
    keys: dict[str, dict[str, str]]
    addresses: dict[str, dict[str, str]]
    key_ready_at: int | None
    active_at: int | None

    @property
    def fresh_chains(self) -> frozenset[str]:
        """Chains whose key changes (a fresh key): their funds move, the contract is told."""
        return frozenset(self.addresses)

    @property
    def switch_window_ms(self) -> int | None:
        if self.key_ready_at is None or self.active_at is None:
            return None
        return self.active_at - self.key_ready_at

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "from_epoch": self.from_epoch,
            "state": self.phase.value,
            "members": list(self.members),
            "threshold": self.threshold,
            "attempt": self.attempt,
            "reason": self.reason,
            "culprits": list(self.culprits),
            "keys": {
                s: {"mode": k["mode"], "group_key": k["group_key"]} for s, k in self.keys.items()
            },
            "fresh_chains": sorted(self.fresh_chains),
            "switch_window_ms": self.switch_window_ms,
        }


@dataclass(frozen=True)
class Committee:
    epoch: int
    members: tuple[int, ...]
    threshold: int
    keys: dict[str, dict[str, str]]
    status: str  # PENDING, ACTIVE, RETIRED


_T_COLUMNS = (
    "epoch, from_epoch, state, members, threshold, attempt, session_id, reason, culprits, "
    "keys, addresses, key_ready_at, active_at"
)


def _transition(row: tuple[Any, ...]) -> Transition:
    return Transition(
        int(row[0]),
        int(row[1]),
        Phase(row[2]),
        tuple(json.loads(row[3])),
        int(row[4]),
        int(row[5]),
        row[6],
        row[7],
        tuple(json.loads(row[8])),
        json.loads(row[9] or "{}"),
        json.loads(row[10] or "{}"),
        None if row[11] is None else int(row[11]),
        None if row[12] is None else int(row[12]),
    )


def chain_scheme(chain: str, nonce_chains: Collection[str]) -> str:
    """The scheme whose key holds a chain's funds."""
    if chain == "btc":
        return "bip340"
    if chain == "sol":
        return "ed25519"
    if chain == "trx" or chain in nonce_chains:
        return "ecdsa"
    return "bip340"  # EVM custody contract: a BIP340 key checked with ecrecover


def change_ratio(old: Collection[int], new: Collection[int]) -> float:
    """How much of the committee changes: members leaving or joining, whichever is more,
    over the current committee's size."""
    o, n = set(old), set(new)
    return max(len(o - n), len(n - o)) / max(len(o), 1)


class TransitionBook:
    """The transition handlers and reads; one per `Ledger`, sharing its database."""

    def __init__(self, ledger: Ledger, rules: TransitionRules) -> None:
        self.ledger = ledger
        self.db = ledger.db
        self.rules = rules

    def handlers(self) -> dict[str, Callable[[Any], dict[str, Any]]]:
        return {
            SignerSetUpdate.KIND: self._signer_set_update,
            KeygenStart.KIND: self._keygen_start,
            KeygenFailed.KIND: self._keygen_failed,
            KeyReady.KIND: self._key_ready,
            MigrationStart.KIND: self._migration_start,
            MigrationRequest.KIND: self._migration_request,
            MigrationsDone.KIND: self._migrations_done,
            Activate.KIND: self._activate,
            Strike.KIND: self._strike,
        }

    # ------------------------------------------------------------------ reads
    def active_epoch(self) -> int:
        rows = self.db.query("SELECT value FROM meta WHERE key = 'active_epoch'")
        return int(rows[0][0]) if rows else 0

    def committee(self, epoch: int) -> Committee | None:
        rows = self.db.query(
            "SELECT epoch, members, threshold, keys, status FROM committees WHERE epoch = ?",
            (epoch,),
        )
        if not rows:
            return None
        r = rows[0]
        return Committee(int(r[0]), tuple(json.loads(r[1])), int(r[2]), json.loads(r[3]), r[4])

    def transition(self, epoch: int) -> Transition:
        rows = self.db.query(f"SELECT {_T_COLUMNS} FROM transitions WHERE epoch = ?", (epoch,))
        if not rows:
            raise E.InvalidTransitionState(f"no transition to epoch {epoch}")
        return _transition(rows[0])

    def transitions(self) -> list[Transition]:
        rows = self.db.query(f"SELECT {_T_COLUMNS} FROM transitions ORDER BY epoch")
        return [_transition(r) for r in rows]

    def open_transition(self) -> Transition | None:
        rows = self.db.query(
            f"SELECT {_T_COLUMNS} FROM transitions WHERE state NOT IN (?, ?) ORDER BY epoch",
            tuple(CLOSED),
        )
        return _transition(rows[0]) if rows else None

    def window(self) -> Transition | None:
        """The transition whose switch window is open, if any."""
        t = self.open_transition()
        return t if t is not None and t.phase in WINDOW else None

    def strikes(self) -> dict[int, int]:
        rows = self.db.query("SELECT member, count FROM strikes ORDER BY member")
        return {int(m): int(c) for m, c in rows}

    def excluded(self) -> set[int]:
        return {m for m, c in self.strikes().items() if c >= self.rules.strike_limit}

    def migrations(self, epoch: int) -> list[Withdrawal]:
        return self.ledger.select_withdrawals(
            "purpose = ? AND key_epoch = ?", (MIGRATION, self._from_epoch(epoch)), 10_000
        )

    def chain_key_epoch(self, chain: str) -> int:
        """The epoch whose fresh key owns the chain's current address (0: the first one)."""
        for t in reversed(self.transitions()):
            if t.phase is Phase.ACTIVE and chain in t.addresses:
                return t.epoch
        return 0

    def nonce_counter(self, chain: str) -> str:
        """The ledger's nonce counter of the account that pays on `chain` now (EOA mode)."""
        epoch = self.chain_key_epoch(chain)
        return f"account_nonce:{chain}" + (f"@{epoch}" if epoch else "")

    def next_batch(self, epoch: int, chain: str, asset: str) -> int | None:
        """The batch number of the next migration of `chain:asset`, or None while one of the
        contract's key updates is still open (a second one would be a duplicate)."""
        rows = self.db.query(
            "SELECT status FROM withdrawals WHERE purpose = ? AND request_id LIKE ?",
            (MIGRATION, f"migration/{epoch}/{chain}/{asset}/%"),
        )
        if asset == UPDATE_PUBKEY and any(r[0] not in ("CONFIRMED", "CANCELLED") for r in rows):
            return None
        return len(rows)

    def report(self) -> dict[str, Any]:
        """The operator's view: every transition with its migration transactions, the
        strikes per member, the active epoch (the CLI's `status`, the API's /transitions)."""
        out = []
        for t in self.transitions():
            row = t.as_dict()
            row["migrations"] = [
                {
                    "withdraw_id": m.withdraw_id,
                    "chain": m.chain,
                    "asset": m.asset,
                    "amount": str(m.amount),
                    "status": m.status,
                    "txid": m.txid,
                }
                for m in self.ledger.select_withdrawals(
                    "purpose = ? AND request_id LIKE ?",
                    (MIGRATION, f"migration/{t.epoch}/%"),
                    1000,
                )
            ]
            out.append(row)
        return {
            "active_epoch": self.active_epoch(),
            "transitions": out,
            "strikes": {str(m): c for m, c in self.strikes().items()},
            "strike_limit": self.rules.strike_limit,
        }

    def _from_epoch(self, epoch: int) -> int:
        return self.transition(epoch).from_epoch

    # ------------------------------------------------------------------ helpers
    def _expect(self, tx: Any) -> Transition:
        allowed, _ = PHASES[tx.KIND]
        t = self.transition(tx.epoch)
        if t.phase not in allowed:
            raise E.InvalidTransitionState(
                f"{tx.KIND} needs epoch {t.epoch} in {'/'.join(allowed)}, it is {t.phase}"
            )
        attempt = getattr(tx, "attempt", None)
        if attempt is not None and attempt != t.attempt:
            raise E.StaleAttempt(
                f"{tx.KIND} for attempt {attempt}, epoch {t.epoch} is at {t.attempt}"
            )
        return t

    def _set(self, epoch: int, **fields: Any) -> None:
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(
            f"UPDATE transitions SET {assignments} WHERE epoch = ?", (*fields.values(), epoch)
        )

    def _add_strikes(self, members: Collection[int], reason: str) -> None:
        for m in sorted(set(members)):
            rows = self.db.query("SELECT count FROM strikes WHERE member = ?", (m,))
            if rows:
                self.db.execute(
                    "UPDATE strikes SET count = ?, last_reason = ? WHERE member = ?",
                    (int(rows[0][0]) + 1, reason, m),
                )
            else:
                self.db.execute(
                    "INSERT INTO strikes (member, count, last_reason) VALUES (?, 1, ?)",
                    (m, reason),
                )

    # ------------------------------------------------------------------ handlers
    def _signer_set_update(self, tx: SignerSetUpdate) -> dict[str, Any]:
        if (t := self.open_transition()) is not None:
            raise E.TransitionOpen(f"the transition to epoch {t.epoch} is {t.phase}")
        excluded = self.excluded()
        members = tuple(sorted(set(tx.members) - excluded))
        if len(members) < tx.threshold:
            raise E.InvalidCommittee(
                f"{len(members)} eligible members (excluded for strikes: {sorted(excluded)}) "
                f"cannot meet threshold {tx.threshold}"
            )
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('eligible', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (json.dumps({"members": members, "threshold": tx.threshold}),),
        )
        current = self.active_epoch()
        committee = self.committee(current) if current else None
        ratio = 1.0 if committee is None else change_ratio(committee.members, members)
        changed = committee is None or committee.threshold != tx.threshold
        if not (tx.force or changed or ratio >= self.rules.trigger_ratio):
            return {"opened": False, "change_ratio": ratio, "members": list(members)}
        rows = self.db.query("SELECT MAX(epoch) FROM transitions")
        epoch = max(current, int(rows[0][0] or 0)) + 1
        self.db.execute(
            f"INSERT INTO transitions ({_T_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, 0, NULL, ?, '[]', '{}', '{}', NULL, NULL)",
            (epoch, current, Phase.DETECTED.value, json.dumps(members), tx.threshold, tx.reason),
        )
        return {
            "opened": True,
            "epoch": epoch,
            "state": Phase.DETECTED.value,
            "change_ratio": ratio,
            "members": list(members),
            "excluded": sorted(excluded & set(tx.members)),
        }

    def _keygen_start(self, tx: KeygenStart) -> dict[str, Any]:
        t = self._expect(tx)
        self._set(t.epoch, state=Phase.KEYGEN.value, session_id=tx.session_id)
        return {"epoch": t.epoch, "state": Phase.KEYGEN.value}

    def _keygen_failed(self, tx: KeygenFailed) -> dict[str, Any]:
        t = self._expect(tx)
        self._add_strikes(tx.culprits, f"epoch {t.epoch} keygen: {tx.reason}")
        culprits = tuple(sorted(set(t.culprits) | set(tx.culprits)))
        members = tuple(m for m in t.members if m not in culprits)
        state = Phase.DETECTED if len(members) >= t.threshold else Phase.ABORTED
        self._set(
            t.epoch,
            state=state.value,
            members=json.dumps(members),
            culprits=json.dumps(culprits),
            attempt=t.attempt + 1,
            session_id=None,
            reason=tx.reason,
        )
        return {"epoch": t.epoch, "state": state.value, "culprits": list(tx.culprits)}

    def _key_ready(self, tx: KeyReady) -> dict[str, Any]:
        t = self._expect(tx)
        members = tuple(m for m in t.members if m not in tx.culprits)
        if len(members) < t.threshold:
            raise E.InvalidCommittee(f"{len(members)} members left for threshold {t.threshold}")
        old = self.committee(t.from_epoch) if t.from_epoch else None
        for scheme, key in sorted(tx.keys.items()):  # each key proven by its own signature
            check_key(t.epoch, scheme, key["group_key"], key["proof"])
        for scheme, key in tx.keys.items():
            previous = old.keys.get(scheme) if old else None
            if key["mode"] == "reshare" and (
                previous is None or previous["group_key"] != key["group_key"]
            ):
                raise E.InvalidTransition(f"{scheme}: a reshare keeps the group key")
        nonce_chains = self.ledger.nonce_chains
        for chain in tx.addresses:
            mode = tx.keys.get(chain_scheme(chain, nonce_chains), {}).get("mode")
            if mode != "fresh":
                raise E.InvalidTransition(f"{chain}: a new address needs a fresh key")
        self._add_strikes(tx.culprits, f"epoch {t.epoch} keygen: named and excluded")
        self.db.execute(
            "INSERT INTO committees (epoch, members, threshold, keys, status) "
            "VALUES (?, ?, ?, ?, 'PENDING')",
            (t.epoch, json.dumps(members), t.threshold, json.dumps(tx.keys, sort_keys=True)),
        )
        self._set(
            t.epoch,
            state=Phase.KEY_READY.value,
            members=json.dumps(members),
            culprits=json.dumps(sorted(set(t.culprits) | set(tx.culprits))),
            keys=json.dumps(tx.keys, sort_keys=True),
            addresses=json.dumps(tx.addresses, sort_keys=True),
            key_ready_at=tx.at,
        )
        return {"epoch": t.epoch, "state": Phase.KEY_READY.value}

    def _migration_start(self, tx: MigrationStart) -> dict[str, Any]:
        from synod.state.machine import QUEUED, RESERVED

        t = self._expect(tx)
        released = []
        for chain in sorted(t.fresh_chains):
            for w in self.ledger.withdrawals(RESERVED, chain):
                if w.purpose != "withdrawal" or w.sessions or w.account_nonce is not None:
                    continue  # signed before, or holding an account nonce: finishes on the old key
                self.ledger._release(w)
                self.ledger._set(
                    w.withdraw_id,
                    status=QUEUED,
                    template=None,
                    template_hash=None,
                    fee=None,
                    attempt=w.attempt + 1,
                    reason=f"released for the key change to epoch {t.epoch}",
                )
                released.append(w.withdraw_id)
        self._set(t.epoch, state=Phase.MIGRATING.value)
        return {"epoch": t.epoch, "state": Phase.MIGRATING.value, "released": released}

    def _migration_request(self, tx: MigrationRequest) -> dict[str, Any]:
        from synod.state.machine import RESERVED, withdraw_id_for

        t = self._expect(tx)
        if tx.chain not in t.fresh_chains:
            raise E.InvalidTransition(f"{tx.chain} keeps its key in epoch {t.epoch}")
        request_id = f"migration/{t.epoch}/{tx.chain}/{tx.asset}/{tx.batch}"
        if self.db.query("SELECT 1 FROM withdrawals WHERE request_id = ?", (request_id,)):
            raise E.DuplicateRequest(f"{request_id} already requested")
        withdraw_id = withdraw_id_for(request_id)
        target = t.addresses[tx.chain]
        plan = self._plan_migration(t, tx, withdraw_id, target)
        seq = self.ledger._next("withdraw_seq")
        self.db.execute(
            "INSERT INTO withdrawals (withdraw_id, seq, request_id, chain, asset, to_addr, amount, "
            "status, sessions, purpose, key_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (
                withdraw_id,
                seq,
                request_id,
                tx.chain,
                tx.asset,
                target["address"],
                str(plan["amount"]),
                RESERVED,
                MIGRATION,
                t.from_epoch,
            ),
        )
        if "nonce" in plan["template"]:  # EOA mode: the old account's next nonce is its own
            self.ledger._set(withdraw_id, account_nonce=int(plan["template"]["nonce"]))
        self.ledger._lock_funds(withdraw_id, tx.chain, plan["takes"])
        template_hash = self.ledger._fix_template(withdraw_id, plan["template"], plan["fee"])
        return {
            "withdraw_id": withdraw_id,
            "status": RESERVED,
            "epoch": t.epoch,
            "amount": str(plan["amount"]),
            "template_hash": template_hash,
        }

    def _plan_migration(
        self, t: Transition, tx: MigrationRequest, withdraw_id: str, target: dict[str, str]
    ) -> dict[str, Any]:
        fees = self.ledger.fees
        base = {
            "withdraw_id": withdraw_id,
            "chain": tx.chain,
            "purpose": MIGRATION,
            "epoch": t.epoch,
        }
        if tx.chain == "btc":
            if tx.asset != "BTC":
                raise E.MalformedTransaction("a Bitcoin sweep moves BTC")
            chosen = []
            for u in self.ledger._free_utxos():
                if u["script"] != target["script"]:
                    chosen.append(u)
                if len(chosen) >= self.rules.sweep_batch:
                    break
            total = sum(u["value"] for u in chosen)
            fee = fees.btc_fee(len(chosen), 1)
            if not chosen or total - fee < 330:
                raise E.InsufficientFunds("no old-key UTXO worth sweeping")
            template = {
                **base,
                "inputs": [[u["outpoint"], str(u["value"]), u["script"]] for u in chosen],
                "outputs": [
                    {"to": target["address"], "value": str(total - fee), "script": target["script"]}
                ],
                "fee": str(fee),
            }
            takes = [(u["outpoint"], "BTC", u["value"]) for u in chosen]
            return {"amount": total - fee, "fee": fee, "takes": takes, "template": template}
        if tx.asset == UPDATE_PUBKEY:
            if chain_scheme(tx.chain, self.ledger.nonce_chains) != "bip340" or tx.chain == "sol":
                raise E.MalformedTransaction(f"{tx.chain} has no custody contract here")
            self._no_old_payments(t, tx.chain)
            # The contract's epoch moves by one per key update, from 0 at deployment.
            updates = self.db.query(
                "SELECT COUNT(*) FROM withdrawals WHERE purpose = ? AND chain = ? AND asset = ? "
                "AND status = 'CONFIRMED'",
                (MIGRATION, tx.chain, UPDATE_PUBKEY),
            )
            template = {
                **base,
                "kind": "update_pubkey",
                "new_key": t.keys["bip340"]["group_key"],
                "contract_epoch": int(updates[0][0]) + 1,
                "fee": "0",
            }
            return {"amount": 0, "fee": 0, "takes": [], "template": template}
        native = CHAINS[tx.chain]
        fee = fees.account_fee(tx.chain, tx.asset)
        lots = self._old_lots(tx.chain, tx.asset, t.epoch)
        total = sum(a for _, a in lots)
        amount = total - fee if tx.asset == native else total
        if amount <= 0:
            raise E.InsufficientFunds(f"nothing of {tx.asset} left to move on {tx.chain}")
        takes = [(lot, tx.asset, a) for lot, a in lots]
        if tx.asset != native:
            left = fee
            for lot, a in self._old_lots(tx.chain, native, t.epoch):
                take = min(left, a)
                takes.append((lot, native, take))
                left -= take
                if not left:
                    break
            if left:
                raise E.InsufficientFunds(f"no {native} left for the fee of moving {tx.asset}")
        template = {
            **base,
            "asset": tx.asset,
            "to": target["address"],
            "amount": str(amount),
            "fee": str(fee),
            "fee_asset": native,
            "lots": [[src, asset, str(a)] for src, asset, a in takes],
        }
        if tx.chain in self.ledger.nonce_chains:
            template["nonce"] = str(self.ledger._next(self.nonce_counter(tx.chain)) - 1)
        return {"amount": amount, "fee": fee, "takes": takes, "template": template}

    def _no_old_payments(self, t: Transition, chain: str) -> None:
        """A contract's key changes only once nothing signed by the old key can still be sent:
        its signature would no longer verify."""
        rows = self.db.query(
            "SELECT withdraw_id FROM withdrawals WHERE chain = ? AND purpose = 'withdrawal' "
            "AND key_epoch = ? AND status NOT IN ('CONFIRMED', 'CANCELLED') LIMIT 1",
            (chain, t.from_epoch),
        )
        if rows:
            raise E.InvalidTransition(f"{rows[0][0]} is still in flight under the old key")

    def _old_lots(self, chain: str, asset: str, epoch: int) -> list[tuple[str, int]]:
        rows = self.db.query(
            "SELECT lot_id, remaining FROM lots WHERE chain = ? AND asset = ? AND exhausted = 0 "
            "AND key_epoch < ? ORDER BY seq",
            (chain, asset, epoch),
        )
        return [(r[0], int(r[1])) for r in rows if int(r[1]) > 0]

    def confirm_migration(self, w: Withdrawal, txid: str, height: int) -> None:
        """Book a confirmed migration: the funds stay the custody's, at the new key."""
        template = json.loads(w.template or "{}")
        epoch = int(template["epoch"])
        fee = int(w.fee or 0)
        reserved = self.ledger.reservations(w.withdraw_id)
        if w.chain == "btc":
            inputs = sum(a for _, _, a in reserved)
            for source, _, _ in reserved:
                self.db.execute(
                    "UPDATE utxos SET spent_by = ? WHERE outpoint = ?", (w.withdraw_id, source)
                )
            self.ledger._adjust("btc", "BTC", reserved=-inputs, fees=fee, available=w.amount)
            self.db.execute(
                "INSERT INTO utxos (outpoint, seq, value, script, height, locked_by, spent_by) "
                "VALUES (?, ?, ?, ?, ?, NULL, NULL)",
                (
                    f"{txid}:0",
                    self.ledger._next("utxo_seq"),
                    str(w.amount),
                    template["outputs"][0]["script"],
                    height,
                ),
            )
            return
        native = CHAINS[w.chain]
        by_asset: dict[str, int] = {}
        for _, asset, amount in reserved:
            by_asset[asset] = by_asset.get(asset, 0) + amount
        for asset, amount in by_asset.items():
            moved = w.amount if asset == w.asset else 0
            fees = fee if asset == native else 0
            self.ledger._adjust(w.chain, asset, reserved=-amount, available=moved, fees=fees)
        if w.amount:
            self.db.execute(
                "INSERT INTO lots (lot_id, seq, chain, asset, amount, remaining, height, "
                "key_epoch) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f"{w.chain}:{w.asset}:migration:{w.withdraw_id}",
                    self.ledger._next("lot_seq"),
                    w.chain,
                    w.asset,
                    str(w.amount),
                    str(w.amount),
                    height,
                    epoch,
                ),
            )

    def _migrations_done(self, tx: MigrationsDone) -> dict[str, Any]:
        from synod.state.machine import FINAL, SIGNING

        t = self._expect(tx)
        waiting = self.pending_migration(t)
        if waiting:
            raise E.InvalidTransition(f"epoch {t.epoch} still migrating: {waiting}")
        # Sessions under the old shares end first (re-queued ones are signed again by the new
        # committee where the key is kept); on a chain whose key changes, everything signed
        # under the old key must be final, since the old shares go next.
        fresh = sorted(t.fresh_chains)
        in_flight = self.ledger.select_withdrawals(
            f"key_epoch = ? AND purpose = 'withdrawal' AND (status = ? OR (chain IN "
            f"({', '.join('?' for _ in fresh) or 'NULL'}) AND status NOT IN "
            f"({', '.join('?' for _ in FINAL)})))",
            (t.from_epoch, SIGNING, *fresh, *FINAL),
            1,
        )
        if in_flight:
            raise E.InvalidTransition(
                f"{in_flight[0].withdraw_id} is still in flight under epoch {t.from_epoch}"
            )
        self._set(t.epoch, state=Phase.MIGRATED.value)
        return {"epoch": t.epoch, "state": Phase.MIGRATED.value}

    def pending_migration(self, t: Transition) -> list[str]:
        """What still keeps funds (or a contract) on the old key, per chain: empty when done.
        The transition worker requests a migration for each `chain:asset` listed."""
        out: list[str] = []
        for chain in sorted(t.fresh_chains):
            if chain == "btc":
                script = t.addresses["btc"]["script"]
                rows = self.db.query(
                    "SELECT 1 FROM utxos WHERE spent_by IS NULL AND script != ? LIMIT 1", (script,)
                )
                if rows:
                    out.append("btc:BTC")
                continue
            if chain_scheme(chain, self.ledger.nonce_chains) == "bip340" and chain != "sol":
                done = self.db.query(
                    "SELECT 1 FROM withdrawals WHERE purpose = ? AND chain = ? AND asset = ? "
                    "AND status = 'CONFIRMED' AND request_id LIKE ?",
                    (MIGRATION, chain, UPDATE_PUBKEY, f"migration/{t.epoch}/%"),
                )
                if not done:
                    out.append(f"{chain}:{UPDATE_PUBKEY}")
                continue
            rows = self.db.query(
                "SELECT DISTINCT asset FROM lots WHERE chain = ? AND exhausted = 0 "
                "AND key_epoch < ? ORDER BY asset",
                (chain, t.epoch),
            )
            out += [f"{chain}:{r[0]}" for r in rows]
        rows = self.db.query(
            "SELECT withdraw_id FROM withdrawals WHERE purpose = ? AND key_epoch = ? "
            "AND status NOT IN ('CONFIRMED', 'CANCELLED')",
            (MIGRATION, t.from_epoch),
        )
        out += [f"open:{r[0]}" for r in rows]
        return out

    def _activate(self, tx: Activate) -> dict[str, Any]:
        t = self._expect(tx)
        self.db.execute("UPDATE committees SET status = 'RETIRED' WHERE status = 'ACTIVE'")
        self.db.execute("UPDATE committees SET status = 'ACTIVE' WHERE epoch = ?", (t.epoch,))
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('active_epoch', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(t.epoch),),
        )
        self._set(t.epoch, state=Phase.ACTIVE.value, active_at=tx.at)
        window = None if t.key_ready_at is None else tx.at - t.key_ready_at
        return {"epoch": t.epoch, "state": Phase.ACTIVE.value, "switch_window_ms": window}

    def _strike(self, tx: Strike) -> dict[str, Any]:
        self._add_strikes((tx.member,), f"{tx.reason} ({tx.evidence})")
        count = self.strikes()[tx.member]
        return {
            "member": tx.member,
            "strikes": count,
            "excluded": count >= self.rules.strike_limit,
        }

    # ------------------------------------------------------------------ withdrawals
    def check_reserve(self, w: Withdrawal) -> None:
        """New withdrawals reserve no old-key funds on a chain whose key is changing."""
        t = self.window()
        if t is not None and w.chain in t.fresh_chains and w.purpose != MIGRATION:
            raise E.SwitchWindow(f"{w.chain} changes key in epoch {t.epoch} ({t.phase})")

    def signing_epoch(self, w: Withdrawal) -> int:
        """The key epoch `w` is signed under now, or `SwitchWindow` while it must wait.

        Migrations and withdrawals committed to the old key on a chain whose key changes
        (signed before, or holding an old account nonce) sign under the active epoch during
        the window; every other withdrawal waits until the new committee is ACTIVE."""
        active = self.active_epoch()
        if w.purpose == MIGRATION:
            assert w.key_epoch is not None
            return w.key_epoch
        t = self.window()
        if t is None:
            return active
        committed = w.sessions > 0 or w.account_nonce is not None
        if w.chain in t.fresh_chains and committed:
            return active
        if w.chain not in t.fresh_chains and not self.rules.pause_during_switch:
            return active
        raise E.SwitchWindow(f"no withdrawal enters SIGNING in epoch {t.epoch}'s switch window")

"""Power transitions in the ledger on SQLite and PostgreSQL: the phase table, the trigger
ratio, strikes and exclusion, the switch window, key epochs, and migration transactions
(Bitcoin sweeps, balance transfers, custody key updates) booked with conservation."""

from __future__ import annotations

from typing import Any

import pytest

from synod.state import errors as E
from synod.state.machine import (
    BALANCE_FIELDS,
    CANCELLED,
    CONFIRMED,
    QUEUED,
    RESERVED,
    Ledger,
    withdraw_id_for,
)
from synod.state.transactions import (
    Activate,
    Broadcast,
    Confirm,
    DepositCredit,
    KeygenFailed,
    KeygenStart,
    KeyReady,
    MigrationRequest,
    MigrationsDone,
    MigrationStart,
    Requeue,
    Reserve,
    Signed,
    SignerSetUpdate,
    StartSign,
    Strike,
    WithdrawRequest,
    parse_tx,
)
from synod.state.transition import UPDATE_PUBKEY, Phase, TransitionRules
from tests.keyproofs import proven, proven_keys

from .conftest import Opener

OLD_SCRIPT = "5120" + "ab" * 32
NEW_SCRIPT = "5120" + "cd" * 32


def conserved(ledger: Ledger) -> None:
    for (chain, asset), b in ledger.balances().items():
        rest = sum(b[k] for k in BALANCE_FIELDS if k != "deposited")
        assert b["deposited"] == rest, (chain, asset, b)


def genesis(ledger: Ledger, members: tuple[int, ...] = (1, 2, 3, 4, 5), t: int = 3) -> None:
    """Install committee epoch 1 through the same pipeline (no funds to migrate)."""
    r = ledger.apply(SignerSetUpdate(members, t, "genesis"))
    assert r.result["opened"] and r.result["epoch"] == 1
    ledger.apply(KeygenStart(1, "kg1"))
    ledger.apply(KeyReady(1, proven_keys("old", 1, ("bip340", "ed25519")), {}, at=1_000))
    ledger.apply(MigrationStart(1))
    ledger.apply(MigrationsDone(1))
    ledger.apply(Activate(1, at=1_500))
    assert ledger.transitions.active_epoch() == 1


def walk(ledger: Ledger, wid: str, txid: str, attempt: int = 0) -> None:
    ledger.apply(StartSign(wid, f"s-{wid}-{attempt}", attempt=attempt))
    ledger.apply(Signed(wid, f"s-{wid}-{attempt}", "sig", attempt=attempt))
    ledger.apply(Broadcast(wid, txid, attempt=attempt))
    ledger.apply(Confirm(wid, txid, 100, attempt=attempt))


def request(ledger: Ledger, n: int, chain: str = "btc", amount: int = 10_000) -> str:
    asset = {"btc": "BTC", "sol": "SOL", "eth": "ETH"}[chain]
    return str(
        ledger.apply(WithdrawRequest(f"r{n}", chain, asset, f"addr{n}", amount)).result[
            "withdraw_id"
        ]
    )


def test_phase_table_trigger_ratio_and_reshare(open_db: Opener) -> None:
    ledger = Ledger(open_db(), rules=TransitionRules(trigger_ratio=0.4))
    with pytest.raises(E.InvalidTransitionState):
        ledger.apply(KeygenStart(1, "kg"))
    genesis(ledger)
    # One member of five replaced: 20% < 40%, recorded but nothing opens.
    r = ledger.apply(SignerSetUpdate((1, 2, 3, 4, 6), 3, "rotation"))
    assert r.result == {"opened": False, "change_ratio": 0.2, "members": [1, 2, 3, 4, 6]}
    # 3-of-5 -> 4-of-7 sharing two members.
    r = ledger.apply(SignerSetUpdate((4, 5, 6, 7, 8, 9, 10), 4, "handover"))
    assert r.result["opened"] and r.result["epoch"] == 2
    with pytest.raises(E.TransitionOpen):
        ledger.apply(SignerSetUpdate((1, 2, 3), 2, "another"))
    with pytest.raises(E.InvalidTransitionState):
        ledger.apply(MigrationStart(2))  # DETECTED: keygen first
    ledger.apply(KeygenStart(2, "kg2"))
    with pytest.raises(E.InvalidTransition, match="keeps the group key"):
        ledger.apply(KeyReady(2, {"bip340": proven("other", 2, "reshare")}, {}, 5))
    with pytest.raises(E.InvalidTransition, match="needs a fresh key"):
        reshare = {"bip340": proven("old", 2, "reshare")}
        ledger.apply(KeyReady(2, reshare, {"btc": {"address": "bc1p", "script": NEW_SCRIPT}}, 5))
    ledger.apply(KeyReady(2, {"bip340": proven("old", 2, "reshare")}, {}, at=10_000))
    ledger.apply(MigrationStart(2))
    with pytest.raises(E.InvalidTransition):  # a reshare moves nothing on Bitcoin
        ledger.apply(MigrationRequest(2, "btc", "BTC"))
    ledger.apply(MigrationsDone(2))
    r = ledger.apply(Activate(2, at=12_500))
    assert r.result["switch_window_ms"] == 2_500
    t = ledger.transitions.transition(2)
    assert t.phase is Phase.ACTIVE and t.members == (4, 5, 6, 7, 8, 9, 10)
    assert ledger.transitions.committee(1).status == "RETIRED"  # type: ignore[union-attr]
    assert ledger.transitions.committee(2).status == "ACTIVE"  # type: ignore[union-attr]
    # Replayed transactions give their receipts back and change nothing.
    assert ledger.apply(Activate(2, at=12_500)).duplicate


def test_keygen_failure_strikes_and_exclusion(open_db: Opener) -> None:
    ledger = Ledger(open_db(), rules=TransitionRules(strike_limit=2))
    genesis(ledger)
    ledger.apply(SignerSetUpdate((1, 2, 3, 6, 7), 3, "new members"))
    ledger.apply(KeygenStart(2, "kg2"))
    r = ledger.apply(KeygenFailed(2, "invalid reshare package", (6,)))
    assert r.result["state"] == "DETECTED"
    assert ledger.apply(KeygenStart(2, "kg2")).duplicate  # the same transaction, replayed
    with pytest.raises(E.StaleAttempt):
        ledger.apply(KeygenStart(2, "kg2-late"))  # attempt 0 is over
    ledger.apply(KeygenStart(2, "kg2b", attempt=1))
    t = ledger.transitions.transition(2)
    assert t.members == (1, 2, 3, 7) and t.culprits == (6,) and t.attempt == 1
    ledger.apply(KeyReady(2, {"bip340": proven("old", 2, "reshare")}, {}, 1, attempt=1))
    ledger.apply(MigrationStart(2))
    ledger.apply(MigrationsDone(2))
    ledger.apply(Activate(2, at=2))
    assert ledger.transitions.strikes() == {6: 1}
    r = ledger.apply(Strike(6, "invalid signature share", "session abc"))
    assert r.result == {"member": 6, "strikes": 2, "excluded": True}
    # The next signer set leaves member 6 out; too few left for the threshold is refused.
    r = ledger.apply(SignerSetUpdate((1, 2, 3, 6, 8), 3, "again"))
    assert r.result["members"] == [1, 2, 3, 8] and r.result["excluded"] == [6]
    ledger.apply(KeygenStart(3, "kg3"))
    r = ledger.apply(KeygenFailed(3, "silent", (1, 2)))
    assert r.result["state"] == "ABORTED"  # 2 members left for a threshold of 3
    assert ledger.transitions.active_epoch() == 2  # the committee in charge stays
    with pytest.raises(E.InvalidCommittee):
        ledger.apply(SignerSetUpdate((1, 6), 2, "too few"))


def test_switch_window_pauses_new_signing_only(open_db: Opener) -> None:
    ledger = Ledger(open_db())
    genesis(ledger)
    for i in range(4):
        ledger.apply(DepositCredit("btc", "BTC", 100_000, f"{i:064x}:0", 1, OLD_SCRIPT))
    ids = [request(ledger, i) for i in range(4)]
    ledger.apply(Reserve(ids[0]))
    ledger.apply(StartSign(ids[0], "s0"))  # SIGNING when the window opens
    ledger.apply(Reserve(ids[1]))  # reserved, never signed
    assert ledger.withdrawal(ids[0]).key_epoch == 1
    ledger.apply(SignerSetUpdate((1, 2, 6, 7, 8), 3, "handover"))
    ledger.apply(KeygenStart(2, "kg2"))
    ledger.apply(KeyReady(2, {"bip340": proven("old", 2, "reshare")}, {}, at=0))
    with pytest.raises(E.SwitchWindow):
        ledger.apply(StartSign(ids[1], "s1"))
    ledger.apply(Reserve(ids[2]))  # the key is kept: reserving goes on
    ledger.apply(Signed(ids[0], "s0", "sig"))  # the one already SIGNING finishes
    ledger.apply(MigrationStart(2))
    ledger.apply(MigrationsDone(2))
    ledger.apply(Activate(2, at=1))
    ledger.apply(StartSign(ids[1], "s1"))
    assert ledger.withdrawal(ids[1]).key_epoch == 2
    conserved(ledger)


def test_fresh_key_bitcoin_sweep_in_batches(open_db: Opener) -> None:
    ledger = Ledger(open_db(), rules=TransitionRules(sweep_batch=2))
    genesis(ledger)
    for i in range(5):
        ledger.apply(DepositCredit("btc", "BTC", 100_000, f"{i:064x}:0", 1, OLD_SCRIPT))
    before = [request(ledger, i) for i in range(3)]
    ledger.apply(Reserve(before[0]))
    ledger.apply(StartSign(before[0], "s0"))  # signing under epoch 1's key
    ledger.apply(Reserve(before[1]))  # reserved, never signed: released at MIGRATING
    ledger.apply(SignerSetUpdate((4, 5, 6, 7, 8, 9, 10), 4, "handover"))
    ledger.apply(KeygenStart(2, "kg2"))
    target = {"address": "bcrt1pnew", "script": NEW_SCRIPT}
    ledger.apply(KeyReady(2, {"bip340": proven("new", 2)}, {"btc": target}, 0))
    with pytest.raises(E.SwitchWindow):
        ledger.apply(Reserve(before[2]))  # no new withdrawal takes old-key funds
    r = ledger.apply(MigrationStart(2))
    assert r.result["released"] == [before[1]]
    assert ledger.withdrawal(before[1]).status == QUEUED
    assert ledger.withdrawal(before[1]).template_hash is None
    sweeps = []
    for batch in range(3):
        try:
            r = ledger.apply(MigrationRequest(2, "btc", "BTC", batch))
        except E.InsufficientFunds:
            break
        sweeps.append(r.result["withdraw_id"])
    # 4 free old UTXOs (one locked by the withdrawal in flight): two batches of two.
    assert len(sweeps) == 2
    conserved(ledger)
    with pytest.raises(E.InvalidTransition):
        ledger.apply(MigrationsDone(2))
    for n, wid in enumerate(sweeps):
        w = ledger.withdrawal(wid)
        assert w.purpose == "migration" and w.status == RESERVED and w.key_epoch == 1
        walk(ledger, wid, f"{n + 10:064x}")
        conserved(ledger)
    # The withdrawal in flight finishes under the old key; its change comes back old.
    ledger.apply(Signed(before[0], "s0", "sig"))
    ledger.apply(Broadcast(before[0], "e" * 64))
    ledger.apply(Confirm(before[0], "e" * 64, 101))
    with pytest.raises(E.InvalidTransition, match="btc:BTC"):
        ledger.apply(MigrationsDone(2))
    last = ledger.apply(MigrationRequest(2, "btc", "BTC", 2)).result["withdraw_id"]
    walk(ledger, last, "f" * 64)
    ledger.apply(MigrationsDone(2))
    ledger.apply(Activate(2, at=5))
    conserved(ledger)
    unspent = ledger.utxos()
    assert unspent and all(u["script"] == NEW_SCRIPT for u in unspent)
    b = ledger.balance("btc", "BTC")
    assert b["available"] == sum(u["value"] for u in unspent)
    assert b["withdrawn"] == 10_000  # only the real withdrawal paid anyone
    # After ACTIVE the released withdrawals reserve new-key UTXOs and sign under epoch 2.
    for wid in before[1:]:
        ledger.apply(Reserve(wid, attempt=ledger.withdrawal(wid).attempt))
        w = ledger.withdrawal(wid)
        assert all(s == NEW_SCRIPT for _, _, s in _inputs(w.template))
        ledger.apply(StartSign(wid, "n" + wid, attempt=w.attempt))
        assert ledger.withdrawal(wid).key_epoch == 2


def _inputs(template: str | None) -> list[Any]:
    import json

    return list(json.loads(template or "{}")["inputs"])


def test_unspendable_sweep_is_cancelled_and_funds_return(open_db: Opener) -> None:
    ledger = Ledger(open_db())
    genesis(ledger)
    ledger.apply(DepositCredit("btc", "BTC", 100_000, f"{1:064x}:0", 1, OLD_SCRIPT))
    ledger.apply(SignerSetUpdate((6, 7, 8), 2, "handover"))
    ledger.apply(KeygenStart(2, "kg2"))
    target = {"address": "bcrt1pnew", "script": NEW_SCRIPT}
    ledger.apply(KeyReady(2, {"bip340": proven("new", 2)}, {"btc": target}, 0))
    ledger.apply(MigrationStart(2))
    wid = ledger.apply(MigrationRequest(2, "btc", "BTC", 0)).result["withdraw_id"]
    ledger.apply(StartSign(wid, "s"))
    ledger.apply(Requeue(wid, "session timed out"))  # same template, next aggregator
    assert ledger.withdrawal(wid).status == QUEUED
    ledger.apply(Reserve(wid, attempt=1))
    ledger.apply(StartSign(wid, "s2", attempt=1))
    ledger.apply(Signed(wid, "s2", "sig", attempt=1))
    ledger.apply(Broadcast(wid, "a" * 64, attempt=1))
    from synod.state.transactions import Fail

    ledger.apply(Fail(wid, "rejected", attempt=1))
    ledger.apply(Requeue(wid, "retry", "blockhash expired", attempt=1))
    assert ledger.withdrawal(wid).status == CANCELLED
    assert ledger.balance("btc", "BTC")["available"] == 100_000
    wid2 = ledger.apply(MigrationRequest(2, "btc", "BTC", 1)).result["withdraw_id"]
    walk(ledger, wid2, "b" * 64)
    ledger.apply(MigrationsDone(2))
    conserved(ledger)


def test_account_transfers_and_contract_key_update(open_db: Opener) -> None:
    ledger = Ledger(open_db())
    genesis(ledger)
    ledger.apply(DepositCredit("sol", "SOL", 5 * 10**9, "d1", 1))
    ledger.apply(DepositCredit("sol", "USDC", 700, "d2", 1))
    ledger.apply(DepositCredit("eth", "ETH", 10**18, "d3", 1))
    ledger.apply(SignerSetUpdate((6, 7, 8), 2, "handover"))
    ledger.apply(KeygenStart(2, "kg2"))
    keys = proven_keys("new", 2, ("bip340", "ed25519"))
    addresses = {"sol": {"address": "NewSol"}, "eth": {"address": "0xcustody"}}
    ledger.apply(KeyReady(2, keys, addresses, 0))
    ledger.apply(MigrationStart(2))
    pending = ledger.transitions.pending_migration(ledger.transitions.transition(2))
    assert pending == [f"eth:{UPDATE_PUBKEY}", "sol:SOL", "sol:USDC"]
    token = ledger.apply(MigrationRequest(2, "sol", "USDC")).result["withdraw_id"]
    native = ledger.apply(MigrationRequest(2, "sol", "SOL")).result["withdraw_id"]
    update = ledger.apply(MigrationRequest(2, "eth", UPDATE_PUBKEY)).result["withdraw_id"]
    assert ledger.withdrawal(update).amount == 0
    assert ledger.balance("eth", "ETH")["available"] == 10**18  # the contract keeps its funds
    for n, wid in enumerate((token, native, update)):
        walk(ledger, wid, f"tx{n}")
        conserved(ledger)
    ledger.apply(MigrationsDone(2))
    ledger.apply(Activate(2, at=1))
    lots = {lot["lot_id"]: lot for lot in ledger.lots("sol", "USDC")}
    assert sum(lot["remaining"] for lot in lots.values()) == 700
    # A later withdrawal takes the lots at the new key.
    wid = request(ledger, 1, "sol", 10**9)
    ledger.apply(Reserve(wid))
    assert "migration" in (ledger.withdrawal(wid).template or "")


def test_transition_transactions_round_trip_and_refuse_garbage() -> None:
    key = proven("old", 2)
    tx = KeyReady(2, {"bip340": key}, {"btc": {"address": "a", "script": "51"}}, 7, 0, (3,))
    assert parse_tx(tx.canonical()).tx_id == tx.tx_id
    assert parse_tx(SignerSetUpdate((1, 2), 2, "x", True).canonical()).tx_id == (
        SignerSetUpdate((1, 2), 2, "x", True).tx_id
    )
    bad: list[dict[str, Any]] = [
        {"kind": "signer_set_update", "members": [1, 1], "threshold": 1, "reason": "x"},
        {"kind": "signer_set_update", "members": [1, 2], "threshold": 3, "reason": "x"},
        {"kind": "signer_set_update", "members": [0], "threshold": 1, "reason": "x"},
        {"kind": "signer_set_update", "members": [1], "threshold": 1, "reason": "x", "force": 1},
        {"kind": "key_ready", "epoch": 1, "keys": {"rsa": key}, "addresses": {}, "at": 0},
        {"kind": "key_ready", "epoch": 0, "keys": {"bip340": key}, "addresses": {}, "at": 0},
        {"kind": "migration_request", "epoch": 1, "chain": "doge", "asset": "D"},
        {"kind": "strike", "member": -1, "reason": "x", "evidence": "y"},
    ]
    for body in bad:
        with pytest.raises(E.MalformedTransaction):
            parse_tx(body)
    assert withdraw_id_for("migration/2/btc/BTC/0") != withdraw_id_for("migration/2/btc/BTC/1")
    assert CONFIRMED == "CONFIRMED"


def test_a_key_is_believed_only_with_its_proof_for_this_epoch(open_db: Opener) -> None:
    """A reported group key must carry its signature over the ledger's challenge for this
    transition: a proof by another key, for another epoch, or none at all is refused, and the
    transition stays in KEYGEN."""
    ledger = Ledger(open_db())
    genesis(ledger)
    ledger.apply(SignerSetUpdate((6, 7, 8), 2, "handover"))
    ledger.apply(KeygenStart(2, "kg2"))
    target = {"btc": {"address": "bcrt1pmine", "script": NEW_SCRIPT}}
    stale = proven("mine", 1)  # proven for another epoch: a replayed proof
    borrowed = {**proven("mine", 2), "proof": proven("other", 2)["proof"]}
    for key in (stale, borrowed, {**proven("mine", 2), "proof": "00" * 64}):
        with pytest.raises(E.InvalidProof):
            ledger.apply(KeyReady(2, {"bip340": key}, target, 0))
        assert ledger.transitions.transition(2).phase is Phase.KEYGEN
    ledger.apply(KeyReady(2, {"bip340": proven("mine", 2)}, target, 0))
    assert ledger.transitions.transition(2).phase is Phase.KEY_READY

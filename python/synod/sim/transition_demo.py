"""`synod demo --transition`: a power transition between two batches of withdrawals.

A 3-of-5 committee (epoch 1, made through the transition pipeline itself) custodies SOL
in the Solana runtime (LiteSVM) and ETH in the custody contract on an in-process EVM
(py-evm). A first batch of withdrawals is queued and processing starts; the operator
then proposes a 4-of-7 committee sharing two members. The transition worker drives it by
resharing (both group keys, hence the Solana account and the contract's key, stay the
same; the fresh-key path with its migrations is exercised by the tests on btcd and
py-evm), while a second batch is queued inside the switch window. Every withdrawal is
confirmed once; the report names the epoch that signed each one, the measured window,
and that the old shares were erased.

It belongs to the simulator: the committees are `SimCommittee`s, every member in this one
process. The hand-over among member processes is not built yet (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synod.chains.evm.address import checksum_address
from synod.config import load_config
from synod.runtime.consensus import SoloConsensus
from synod.runtime.interfaces import ChainAdapter, Signer
from synod.runtime.journal import Journal
from synod.runtime.transition import TransitionPolicy, TransitionWorker
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.sim.committee import SimCommittee
from synod.state.db import SqliteDatabase
from synod.state.machine import CONFIRMED, Ledger, Withdrawal
from synod.state.transactions import DepositCredit, SignerSetUpdate, WithdrawRequest
from synod.state.transition import Phase

OLD, NEW = (1, 2, 3, 4, 5), (4, 5, 6, 7, 8, 9, 10)
Progress = Callable[[str], None]


@dataclass
class TransitionDemoReport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    transition: dict[str, Any] = field(default_factory=dict)
    all_confirmed: bool = False
    elapsed_s: float = 0.0


def run_transition_demo(
    workdir: Path, per_batch: int = 2, progress: Progress = lambda _: None
) -> TransitionDemoReport:
    from solders.keypair import Keypair
    from solders.litesvm import LiteSVM
    from solders.pubkey import Pubkey

    from synod.chains.evm.adapter import EthTesterBackend
    from synod.chains.evm.custody import build_call, selector
    from synod.chains.evm.devchain import (
        ETHER,
        GWEI,
        DevChain,
        deploy_custody,
        relayed_custody_adapter,
    )
    from synod.chains.solana.adapter import SolanaAdapter

    started = time.perf_counter()
    cfg = load_config()
    ledger = Ledger.from_config(
        SqliteDatabase(workdir / "ledger.db"), cfg.chains, cfg.withdraw, cfg.transition
    )
    consensus = SoloConsensus(ledger, Journal(workdir / "journal.db"))
    committee = SimCommittee()
    mode = "reshare"

    def address_for(chain: str, scheme: str, key: bytes) -> dict[str, str]:
        raise ValueError(f"{chain}: the demo keeps every key")  # reshare: nothing moves

    transition = TransitionWorker(
        ledger,
        consensus,
        committee,
        address_for,
        TransitionPolicy(frost_handover=mode, chains=("sol", "eth")),
    )
    progress("epoch 1: a 3-of-5 committee, keys made by DKG through the transition pipeline")
    consensus.submit(SignerSetUpdate(OLD, 3, "genesis"))
    while ledger.transitions.active_epoch() != 1:
        transition.step()

    # Solana: the committee's Ed25519 key is the custody account.
    svm = LiteSVM()
    sol_key = committee.public[(1, "ed25519")].group_public_key()
    svm.airdrop(Pubkey.from_bytes(sol_key), 20 * 10**9)
    consensus.submit(DepositCredit("sol", "SOL", 20 * 10**9, "demo-airdrop", 1))
    sol = SolanaAdapter(svm, sol_key, confirmations=1, store={})

    # EVM: the custody contract holds the committee's BIP340 key.
    dev = DevChain()
    custody = deploy_custody(dev, committee.public[(1, "bip340")].group_public_key(), fund=0)
    dev.transact(custody, value=10 * ETHER)
    consensus.submit(DepositCredit("eth", "ETH", 10 * ETHER, "demo-deposit", 1))
    gas_price = 30 * GWEI

    def call_for(w: Withdrawal) -> Any:
        epoch = int.from_bytes(dev.call(custody, selector("epoch()")), "big")
        template = json.loads(w.template or "{}")
        return build_call(
            template,
            chain_id=dev.chain_id,
            contract=custody,
            fee_cap=gas_price,
            deadline=2**40,
            epoch=epoch,
        )

    eth = relayed_custody_adapter(
        "eth",
        EthTesterBackend(dev.tester),
        dev.chain_id,
        dev.tester.get_nonce,
        custody,
        gas_price,
        call_for,
    )
    adapters: dict[str, ChainAdapter] = {"sol": sol, "eth": eth}
    signers: dict[str, Signer] = {
        "sol": committee.signer("ed25519", lambda w: bytes(sol.prepare(w).message)),
        "eth": committee.signer("bip340", lambda w: bytes(call_for(w).digest())),
    }
    policy = WorkerPolicy(
        max_in_flight_per_chain=cfg.withdraw.max_in_flight_per_chain,
        confirmations={"sol": 1, "eth": 1},
        backoff_s=0.0,
    )
    worker = WithdrawWorker(ledger, consensus, signers, adapters, policy)
    recipients: dict[str, Callable[[], str]] = {
        "sol": lambda: str(Keypair().pubkey()),
        "eth": lambda: checksum_address(os.urandom(20)),
    }
    amounts = {"sol": ("SOL", 10**8), "eth": ("ETH", ETHER // 100)}
    queued = [0]

    def queue(batch: str) -> None:
        for chain in ("sol", "eth"):
            for _ in range(per_batch):
                queued[0] += 1
                asset, amount = amounts[chain]
                to = recipients[chain]()
                consensus.submit(WithdrawRequest(f"{batch}-{queued[0]}", chain, asset, to, amount))

    def settled() -> bool:
        return ledger.transitions.open_transition() is None and all(
            w.status == CONFIRMED for w in ledger.withdrawals()
        )

    queue("batch1")
    progress(f"batch 1: {2 * per_batch} withdrawals queued; processing starts")
    worker.step()
    progress(f"proposing a 4-of-7 committee sharing members 4 and 5 ({mode})")
    consensus.submit(SignerSetUpdate(NEW, 4, "demo handover"))
    second = False
    report = TransitionDemoReport()
    for _ in range(400):
        if settled():
            break
        before = ledger.transitions.transition(2).phase
        transition.step()
        t = ledger.transitions.transition(2)
        if t.phase is not before:
            progress(f"transition to epoch 2: {before} -> {t.phase}")
        if t.phase in (Phase.KEY_READY, Phase.MIGRATING) and not second:
            second = True
            queue("batch2")
            progress(f"batch 2: {2 * per_batch} withdrawals queued inside the switch window")
        worker.step()
    t = ledger.transitions.transition(2)
    report.transition = t.as_dict()
    report.transition["old_shares_erased"] = not any(committee.holds(m, 1) for m in OLD)

    def paid(w: Withdrawal) -> int:
        """What the recipient (a fresh address) holds: its payment."""
        if w.chain == "sol":
            return svm.get_balance(Pubkey.from_string(w.to)) or 0
        return dev.balance(w.to)

    for w in ledger.withdrawals():
        report.rows.append(
            {
                "chain": w.chain,
                "request": w.request_id,
                "purpose": w.purpose,
                "state": w.status,
                "key_epoch": w.key_epoch,
                "txid": w.txid,
                "paid_once": w.purpose != "withdrawal" or paid(w) == w.amount,
            }
        )
    report.all_confirmed = settled() and all(r["paid_once"] for r in report.rows)
    consensus.journal.close()
    ledger.db.close()
    report.elapsed_s = time.perf_counter() - started
    return report

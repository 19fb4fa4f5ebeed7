"""The withdraw worker paying from a threshold-ECDSA account (EVM EOA mode): CGGMP signing among
five simulated nodes with one silent member, signed EIP-1559 transactions executed by py-evm."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from synod.chains.evm.adapter import EthTesterBackend, EvmAdapter
from synod.chains.evm.address import address_bytes, checksum_address
from synod.chains.evm.custody import uint_word
from synod.chains.evm.devchain import ETHER, GWEI, DevChain
from synod.chains.evm.eoa import Eip1559Transaction, template_transaction, transaction_hash
from synod.crypto import ecdsa
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.sim.committee_signer import CggmpCommitteeSigner
from synod.state.db import SqliteDatabase
from synod.state.fees import FeeSchedule
from synod.state.machine import CONFIRMED, Ledger
from synod.state.transactions import (
    Broadcast,
    DepositCredit,
    Fail,
    Requeue,
    Reserve,
    Signed,
    StartSign,
    WithdrawRequest,
)
from tests.fixtures import stored_aux


def eoa_worker(
    tmp_path: Path,
    ledger: Ledger,
    dev: DevChain,
    shares: list[ecdsa.KeyShare],
    tx_for: Callable[[Any], Eip1559Transaction],
    silent: set[int] | None = None,
) -> tuple[WithdrawWorker, EvmAdapter, CggmpCommitteeSigner]:
    """The worker paying from the CGGMP group's account on `dev`, the ledger keeping nonces."""
    threshold = shares[0].threshold
    signer = CggmpCommitteeSigner(shares, threshold, lambda w: tx_for(w).digest(), silent)
    adapter = EvmAdapter(
        "eth",
        EthTesterBackend(dev.tester),
        lambda w, ref: tx_for(w).signed(ecdsa.Signature.from_recoverable(bytes.fromhex(ref))),
        sender=address_bytes(shares[0].public_key),
        history=ledger.broadcast_txids,
    )
    worker = WithdrawWorker(
        ledger,
        SoloConsensus(ledger, Journal(tmp_path / "journal.db")),
        {"eth": signer},
        {"eth": adapter},
        WorkerPolicy(confirmations={"eth": 1}, backoff_s=0),
    )
    return worker, adapter, signer


def test_eoa_withdrawals_signed_with_cggmp(tmp_path: Path) -> None:
    aux = stored_aux(5)
    shares = ecdsa.local_keygen(3, 5, aux)
    group = checksum_address(address_bytes(shares[0].public_key))
    dev = DevChain()
    assert dev.transact(group, value=3 * ETHER)["status"] == 1
    fees = FeeSchedule(eth_gas_price_gwei=30, eth_gas_limit=21_000)
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"), fees, nonce_chains={"eth"})
    ledger.apply(DepositCredit("eth", "ETH", 3 * ETHER, "0xfund", 1))
    recipients = [checksum_address(os.urandom(20)) for _ in range(3)]
    for i, to in enumerate(recipients):
        ledger.apply(WithdrawRequest(f"eoa-{i}", "eth", "ETH", to, ETHER // 10 * (i + 1)))

    def tx_for(w: Any) -> Eip1559Transaction:
        # The nonce comes from the ledger's template, fixed at reservation in FIFO order.
        return template_transaction(json.loads(w.template), dev.chain_id, 30 * GWEI, 21_000, GWEI)

    worker, _, signer = eoa_worker(tmp_path, ledger, dev, shares, tx_for, silent={4})
    for _ in range(20):
        worker.step()
        if all(w.status == CONFIRMED for w in ledger.withdrawals()):
            break
    for w in ledger.withdrawals():
        assert w.status == CONFIRMED
        assert dev.balance(w.to) == w.amount
        tx = dev.tester.get_transaction_by_hash(w.txid)
        assert str(tx["from"]).lower() == group.lower()
        assert tx["nonce"] == w.account_nonce
    assert dev.tester.get_nonce(group) == 3
    assert all(r.ok for r in signer.records)


@pytest.mark.parametrize("mined", ["before the new one is sent", "instead of the new one"])
def test_replaced_transaction_mined_after_all(tmp_path: Path, mined: str) -> None:
    """A fee bump in EOA mode where the chain mines the *old* transaction after all. Both share
    the ledger's nonce, so it is the one payment: the worker sends nothing more (or finds the
    new one never executed) and confirms the withdrawal with the old txid."""
    shares = ecdsa.local_keygen(2, 3, stored_aux(3))
    group = checksum_address(address_bytes(shares[0].public_key))
    dev = DevChain()
    dev.transact(group, value=ETHER)
    db = SqliteDatabase(tmp_path / "ledger.db")
    cheap = Ledger(
        db, FeeSchedule(eth_gas_price_gwei=2, eth_gas_limit=21_000), nonce_chains={"eth"}
    )
    cheap.apply(DepositCredit("eth", "ETH", ETHER, "0xfund", 1))
    to = checksum_address(os.urandom(20))
    wid = cheap.apply(WithdrawRequest("bump", "eth", "ETH", to, 10**15)).result["withdraw_id"]

    def tx_for(w: Any) -> Eip1559Transaction:
        template = json.loads(w.template)
        gas_price = int(template["fee"]) // 21_000
        return template_transaction(template, dev.chain_id, gas_price, 21_000)

    # The old transaction: signed and handed to a node, then not mined for a long while.
    cheap.apply(Reserve(wid))
    cheap.apply(StartSign(wid, "s0"))
    old_tx = tx_for(cheap.withdrawal(wid))
    old = old_tx.signed(ecdsa.local_sign(shares, [0, 1], old_tx.digest()))
    old_txid = "0x" + transaction_hash(old).hex()
    cheap.apply(Signed(wid, "s0", "old"))
    cheap.apply(Broadcast(wid, old_txid))
    cheap.apply(Fail(wid, "not mined: underpriced"))
    cheap.apply(Requeue(wid, "fee bump", unspendable_proof="replaced at the same nonce"))

    dear = Ledger(
        db, FeeSchedule(eth_gas_price_gwei=40, eth_gas_limit=21_000), nonce_chains={"eth"}
    )
    worker, adapter, _ = eoa_worker(tmp_path, dear, dev, shares, tx_for)
    while dear.withdrawal(wid).status != "SIGNED":
        worker.step(max_actions=1)
    signed = dear.withdrawal(wid)
    new = adapter.raw_transaction(signed, signed.signature_ref or "")
    new_txid = "0x" + transaction_hash(new).hex()
    if mined == "instead of the new one":
        # The new one went to a node that lost it: recorded, never executed.
        dear.apply(Broadcast(wid, new_txid, attempt=1))
    dev.tester.send_raw_transaction("0x" + old.hex())  # the old one is mined after all
    for _ in range(5):
        worker.step()
    w = dear.withdrawal(wid)
    assert w.status == CONFIRMED and w.txid == old_txid
    assert dev.balance(to) == 10**15 and dev.tester.get_nonce(group) == 1
    assert not adapter.backend.is_known(bytes.fromhex(new_txid[2:]))  # never sent, or lost


def test_a_reverted_transaction_uses_up_its_nonce(tmp_path: Path) -> None:
    """An ERC-20 payment from the EOA reverts on chain (the ledger believed in more tokens than
    the account held). The nonce is used and the gas burned without paying: the worker proves
    it, the ledger books the fee and gives the withdrawal a fresh nonce, and once the tokens
    are there the payment goes through, exactly once."""
    shares = ecdsa.local_keygen(2, 3, stored_aux(3))
    group = checksum_address(address_bytes(shares[0].public_key))
    dev = DevChain()
    dev.transact(group, value=ETHER)
    token = dev.deploy("TestToken", uint_word(10**24))
    dev.token_transfer(token, group, 100)  # the chain holds 100 ...
    fees = FeeSchedule(eth_gas_price_gwei=2, eth_gas_limit=100_000)
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"), fees, nonce_chains={"eth"})
    ledger.apply(DepositCredit("eth", "ETH", ETHER, "0xfund", 1))
    ledger.apply(DepositCredit("eth", "TST", 500, "0xtoken", 2))  # ... the ledger believes 500
    to = checksum_address(os.urandom(20))
    wid = ledger.apply(WithdrawRequest("tst", "eth", "TST", to, 300)).result["withdraw_id"]

    def tx_for(w: Any) -> Eip1559Transaction:
        template = json.loads(w.template)
        return template_transaction(
            template, dev.chain_id, 2 * GWEI, 100_000, tokens={"TST": token}
        )

    worker, _, _ = eoa_worker(tmp_path, ledger, dev, shares, tx_for)
    while ledger.withdrawal(wid).attempt == 0:
        worker.step(max_actions=1)
    w = ledger.withdrawal(wid)
    assert w.status == "QUEUED" and w.account_nonce is None and "reverted" in (w.reason or "")
    assert dev.tester.get_nonce(group) == 1 and dev.token_balance(token, to) == 0
    assert ledger.balance("eth", "ETH")["fees"] == fees.account_fee("eth")  # the burned gas

    dev.token_transfer(token, group, 400)
    for _ in range(10):
        worker.step()
    w = ledger.withdrawal(wid)
    assert w.status == CONFIRMED and w.account_nonce == 1
    assert dev.token_balance(token, to) == 300 and dev.tester.get_nonce(group) == 2
    assert ledger.balance("eth", "ETH")["fees"] == 2 * fees.account_fee("eth")
    b = ledger.balance("eth", "ETH")
    assert b["deposited"] == b["available"] + b["reserved"] + b["withdrawn"] + b["fees"]

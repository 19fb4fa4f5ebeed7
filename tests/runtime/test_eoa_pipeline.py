"""The withdraw worker paying from a threshold-ECDSA account (EVM EOA mode): CGGMP signing among
five simulated nodes with one silent member, signed EIP-1559 transactions executed by py-evm."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from synod.chains.evm.adapter import EthTesterBackend, EvmAdapter
from synod.chains.evm.address import address_bytes, checksum_address
from synod.chains.evm.devchain import ETHER, GWEI, DevChain
from synod.chains.evm.eoa import Eip1559Transaction, template_transaction
from synod.crypto import ecdsa
from synod.runtime.consensus import LocalConsensus
from synod.runtime.journal import Journal
from synod.runtime.signers import CggmpCommitteeSigner
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import SqliteDatabase
from synod.state.fees import FeeSchedule
from synod.state.machine import CONFIRMED, Ledger
from synod.state.transactions import DepositCredit, WithdrawRequest
from tests.fixtures import stored_aux


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

    def digest(w: Any) -> bytes:
        return tx_for(w).digest()

    def raw(w: Any, ref: str) -> bytes:
        return tx_for(w).signed(ecdsa.Signature.from_recoverable(bytes.fromhex(ref)))

    adapter = EvmAdapter(
        "eth", EthTesterBackend(dev.tester), raw, sender=address_bytes(shares[0].public_key)
    )
    signer = CggmpCommitteeSigner(shares, 3, digest, silent={4})
    worker = WithdrawWorker(
        ledger,
        LocalConsensus(ledger, Journal(tmp_path / "journal.db")),
        {"eth": signer},
        {"eth": adapter},
        WorkerPolicy(confirmations={"eth": 1}, backoff_s=0),
    )
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

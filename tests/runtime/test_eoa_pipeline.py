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
from synod.chains.evm.eoa import Eip1559Transaction, payment
from synod.crypto import ecdsa
from synod.runtime.consensus import LocalConsensus
from synod.runtime.journal import Journal
from synod.runtime.signers import CggmpCommitteeSigner
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import SqliteDatabase
from synod.state.machine import CONFIRMED, Ledger
from synod.state.transactions import DepositCredit, WithdrawRequest
from tests.fixtures import stored_aux


def test_eoa_withdrawals_signed_with_cggmp(tmp_path: Path) -> None:
    aux = stored_aux(5)
    shares = ecdsa.local_keygen(3, 5, aux)
    group = checksum_address(address_bytes(shares[0].public_key))
    dev = DevChain()
    assert dev.transact(group, value=3 * ETHER)["status"] == 1
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    ledger.apply(DepositCredit("eth", "ETH", 3 * ETHER, "0xfund", 1))
    recipients = [checksum_address(os.urandom(20)) for _ in range(2)]
    for i, to in enumerate(recipients):
        ledger.apply(WithdrawRequest(f"eoa-{i}", "eth", "ETH", to, ETHER // 10 * (i + 1)))

    nonces: dict[str, int] = {}  # fixed once per withdrawal, in FIFO order, before signing

    def tx_for(w: Any) -> Eip1559Transaction:
        if w.withdraw_id not in nonces:
            nonces[w.withdraw_id] = dev.tester.get_nonce(group) + len(
                [n for n in nonces.values() if n >= dev.tester.get_nonce(group)]
            )
        to, value, data = payment(json.loads(w.template))
        return Eip1559Transaction(
            dev.chain_id,
            nonces[w.withdraw_id],
            GWEI,
            30 * GWEI,
            21_000,
            to,
            value,
            data,
        )

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
    assert all(r.ok for r in signer.records)

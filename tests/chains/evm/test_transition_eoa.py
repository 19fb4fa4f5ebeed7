"""A power transition in EOA mode (py-evm): the 3-of-5 committee's CGGMP key cannot be
reshared, so the 4-of-7 committee gets a fresh CGGMP key and the ledger moves the balance
from the old account to the new one with a transfer signed by the old committee at the old
account's next nonce. Withdrawals before, during and after are paid once; the new account
starts its own nonces at 0."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from synod.chains.evm.adapter import EthTesterBackend, EvmAdapter
from synod.chains.evm.address import address_bytes, checksum_address
from synod.chains.evm.eoa import Eip1559Transaction, template_transaction
from synod.crypto import ecdsa
from synod.runtime.worker import WorkerPolicy
from synod.sim.committee import SimCommittee
from synod.state.machine import CONFIRMED, Withdrawal
from synod.state.transactions import DepositCredit
from tests.fixtures import stored_aux

from ...runtime.transition_world import World, genesis, handover
from .conftest import ETHER, GWEI, Evm


def test_fresh_cggmp_key_moves_the_eoa_balance(tmp_path: Path) -> None:
    evm = Evm()
    holder: dict[str, World] = {}

    def tx_for(w: Withdrawal) -> Eip1559Transaction:
        template = json.loads(w.template or "{}")
        return template_transaction(template, evm.chain_id, 30 * GWEI, 21_000, GWEI)

    def raw(w: Withdrawal, ref: str) -> bytes:
        return tx_for(w).signed(ecdsa.Signature.from_recoverable(bytes.fromhex(ref)))

    def adapters(_: Path) -> dict[str, Any]:
        def history(withdraw_id: str) -> list[str]:
            return holder["world"].ledger.broadcast_txids(withdraw_id)

        return {"eth": EvmAdapter("eth", EthTesterBackend(evm.tester), raw, history=history)}

    world = World(
        tmp_path,
        SimCommittee(schemes=("ecdsa",), ecdsa_aux=stored_aux),
        mode="fresh",
        messages={"eth": ("ecdsa", lambda w: tx_for(w).digest(), None)},
        make_adapters=adapters,
        policy=WorkerPolicy(max_in_flight_per_chain=2, confirmations={"eth": 1}, backoff_s=0),
        recipient=lambda chain, n: checksum_address(os.urandom(20)),
        nonce_chains=("eth",),
    )
    world.address_for = lambda chain, scheme, key: {  # type: ignore[method-assign]
        "address": checksum_address(address_bytes(key))
    }
    holder["world"] = world
    genesis(world)
    world.open()
    old = checksum_address(address_bytes(world.committee.ecdsa_shares[1][1].public_key))
    assert evm.transact(old, value=3 * ETHER)["status"] == 1
    world.ledger.apply(DepositCredit("eth", "ETH", 3 * ETHER, "0xfund", 1))

    handover(world, before=2, during=1, after=1)  # CGGMP signing is slow in one process

    t = world.ledger.transitions.transition(2)
    new = t.addresses["eth"]["address"]
    assert new != old and t.keys["ecdsa"]["mode"] == "fresh"
    (move,) = world.ledger.select_withdrawals("purpose = 'migration'", (), 10)
    assert move.status == CONFIRMED and move.to == new and move.key_epoch == 1
    sent = evm.tester.get_transaction_by_hash(move.txid)
    assert str(sent["from"]).lower() == old.lower() and sent["nonce"] == move.account_nonce
    by_epoch: dict[int, list[Withdrawal]] = {1: [], 2: []}
    for w in world.ledger.withdrawals():
        assert w.status == CONFIRMED
        if w.purpose == "withdrawal":
            assert evm.balance(w.to) == w.amount  # paid exactly once
            by_epoch[w.key_epoch or 0].append(w)
    assert by_epoch[1] and by_epoch[2]
    # The old account made its withdrawals and the move, nothing after; the new one counts
    # its own nonces from 0.
    assert evm.tester.get_nonce(old) == len(by_epoch[1]) + 1
    assert sorted(w.account_nonce for w in by_epoch[2]) == list(range(len(by_epoch[2])))
    assert evm.tester.get_nonce(new) == len(by_epoch[2])
    assert not any(world.committee.holds(m, 1) for m in (1, 2, 3, 4, 5))

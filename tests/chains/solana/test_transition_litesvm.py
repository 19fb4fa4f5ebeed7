"""A power transition by resharing, on the Solana runtime (LiteSVM): the 3-of-5 committee
reshares its Ed25519 key to a 4-of-7 committee sharing two members. The group key, hence
the custody account, is unchanged and nothing moves; withdrawals queued before, during and
after are each paid once, the later ones signed by the new committee."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey

from synod.chains.solana.adapter import SolanaAdapter
from synod.runtime.worker import WorkerPolicy
from synod.sim.committee import SimCommittee
from synod.state.machine import CONFIRMED, Withdrawal
from synod.state.transactions import DepositCredit

from ...runtime.transition_world import NEW, World, genesis, handover


def test_reshare_keeps_the_solana_account(tmp_path: Path) -> None:
    svm = LiteSVM()
    holder: dict[str, SolanaAdapter] = {}

    def message(w: Withdrawal) -> bytes:
        return bytes(holder["adapter"].prepare(w).message)

    def adapters(_: Path) -> dict[str, Any]:
        return {"sol": holder["adapter"]}

    world = World(
        tmp_path,
        SimCommittee(schemes=("ed25519",)),
        mode="reshare",
        messages={"sol": ("ed25519", message, None)},
        policy=WorkerPolicy(max_in_flight_per_chain=2, confirmations={"sol": 1}, backoff_s=0),
        recipient=lambda chain, n: str(Keypair().pubkey()),
    )
    genesis(world)
    group = world.committee.public[(1, "ed25519")].group_public_key()
    account = Pubkey.from_bytes(group)
    svm.airdrop(account, 20 * 10**9)
    world.ledger.apply(DepositCredit("sol", "SOL", 20 * 10**9, "airdrop-1", 1))
    holder["adapter"] = SolanaAdapter(svm, group, confirmations=1, store={})
    world.make_adapters = adapters
    world.open()

    handover(world, before=3, during=1, after=3)

    assert world.committee.public[(2, "ed25519")].group_public_key() == group  # same account
    assert world.ledger.transitions.transition(2).members == NEW
    assert not world.ledger.select_withdrawals("purpose = 'migration'", (), 10)
    for w in world.ledger.withdrawals():
        assert w.status == CONFIRMED
        assert svm.get_balance(Pubkey.from_string(w.to)) == w.amount  # paid exactly once
    assert {w.key_epoch for w in world.ledger.withdrawals()} == {1, 2}
    paid = sum(w.amount for w in world.ledger.withdrawals())
    fees = world.ledger.balance("sol", "SOL")["fees"]
    assert svm.get_balance(account) >= 20 * 10**9 - paid - fees

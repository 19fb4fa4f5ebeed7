"""A power transition on the custody contract (py-evm, and geth --dev when available):
the 3-of-5 committee hands over to a 4-of-7 committee with a fresh BIP340 key; the
ledger's `updatePubkey` migration, signed by the old committee through ROAST, is relayed
and confirmed; afterwards the contract pays withdrawals signed by the new committee and
refuses the old committee's signature."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_tester.exceptions import TransactionFailed

from synod.chains.evm.adapter import EthTesterBackend, EvmAdapter
from synod.chains.evm.address import checksum_address, parse_address
from synod.chains.evm.custody import build_call, build_withdraw_call, selector
from synod.chains.evm.devchain import DEV_RELAYER_KEY
from synod.crypto import frost
from synod.runtime.worker import WorkerPolicy
from synod.sim.committee import SimCommittee
from synod.state.machine import CONFIRMED, Withdrawal
from synod.state.transactions import DepositCredit
from synod.state.transition import UPDATE_PUBKEY

from ...runtime.transition_world import World, genesis, handover
from .conftest import ETHER, GWEI, Evm, deploy_custody, random_address

GAS_PRICE = 30 * GWEI


@dataclass
class Engine:
    """What the test needs from an EVM: py-evm in process or a geth --dev node."""

    chain: Any  # DevChain or GethChain
    backend: Any  # EthTesterBackend or JsonRpcBackend
    nonce: Callable[[str], int]


@pytest.fixture(params=["py-evm", "geth"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if request.param == "py-evm":
        evm = Evm()
        yield Engine(evm, EthTesterBackend(evm.tester), evm.tester.get_nonce)
        return
    from synod.chains.evm.devnode import GethUnavailable, start_geth

    try:
        node = start_geth(tmp_path_factory.mktemp("geth"))
    except GethUnavailable as err:
        if os.environ.get("SYNOD_REQUIRE_GETH") == "1":
            pytest.fail(f"SYNOD_REQUIRE_GETH=1 but geth is unavailable: {err}")
        pytest.skip(f"geth unavailable: {err}")
    try:
        yield Engine(node.chain, node.chain.backend, node.chain.nonce)
    finally:
        node.stop()


def test_update_pubkey_migration(engine: Engine, tmp_path: Path) -> None:
    evm = engine.chain
    relayer = Account.from_key(DEV_RELAYER_KEY)
    contract: dict[str, str] = {}

    def contract_epoch() -> int:
        return int.from_bytes(evm.call(contract["address"], selector("epoch()")), "big")

    def call_for(w: Withdrawal) -> Any:
        return build_call(
            json.loads(w.template or "{}"),
            chain_id=evm.chain_id,
            contract=contract["address"],
            fee_cap=GAS_PRICE,
            deadline=2**40,
            epoch=contract_epoch(),
        )

    def digest(w: Withdrawal) -> bytes:
        return bytes(call_for(w).digest())

    def raw_transaction(w: Withdrawal, signature_ref: str) -> bytes:
        tx = {
            "chainId": evm.chain_id,
            "nonce": engine.nonce(relayer.address),
            "gas": 200_000,
            "gasPrice": GAS_PRICE,
            "to": checksum_address(parse_address(contract["address"])),
            "value": 0,
            "data": call_for(w).calldata(bytes.fromhex(signature_ref)),
        }
        return bytes(relayer.sign_transaction(tx).raw_transaction)

    def adapters(_: Path) -> dict[str, Any]:
        backend = engine.backend
        sender = parse_address(relayer.address)
        return {"eth": EvmAdapter("eth", backend, raw_transaction, sender=sender)}

    world = World(
        tmp_path,
        SimCommittee(schemes=("bip340",)),
        mode="fresh",
        messages={"eth": ("bip340", digest, None)},
        make_adapters=adapters,
        policy=WorkerPolicy(max_in_flight_per_chain=2, confirmations={"eth": 1}, backoff_s=0),
        recipient=lambda chain, n: random_address(),
    )
    genesis(world)
    old_key = world.committee.public[(1, "bip340")].group_public_key()
    contract["address"] = deploy_custody(evm, old_key, fund=0)
    evm.transact(contract["address"], value=50 * ETHER)
    if engine.nonce(relayer.address) == 0 and evm.balance(relayer.address) == 0:
        evm.transact(relayer.address, value=ETHER)  # geth: the relayer pays its gas
    world.ledger.apply(DepositCredit("eth", "ETH", 50 * ETHER, "deposit-1", 1))
    # An outgoing member who kept a copy of its old shares (what the contract must refuse).
    old_shares = dict(world.committee.keys(1, "bip340"))
    old_public = world.committee.public[(1, "bip340")]
    world.open()

    handover(world, before=3, during=1, after=3)

    new_key = world.committee.public[(2, "bip340")].group_public_key()
    assert new_key != old_key
    px = int.from_bytes(evm.call(contract["address"], selector("px()")), "big")
    assert px == int.from_bytes(new_key, "big") and contract_epoch() == 1
    (update,) = world.ledger.select_withdrawals("purpose = 'migration'", (), 10)
    assert update.asset == UPDATE_PUBKEY and update.status == CONFIRMED and update.key_epoch == 1
    for w in world.ledger.withdrawals():
        assert w.status == CONFIRMED
        if w.purpose == "withdrawal":
            assert evm.balance(w.to) == w.amount  # paid exactly once
    assert {w.key_epoch for w in world.ledger.withdrawals()} == {1, 2}
    # The old committee's signature no longer moves anything.
    to = random_address()
    template = {"withdraw_id": "old-key", "chain": "eth", "asset": "ETH", "to": to, "amount": "5"}
    call = build_withdraw_call(
        template,
        chain_id=evm.chain_id,
        contract=contract["address"],
        fee_cap=GAS_PRICE,
        deadline=2**40,
        epoch=1,
    )
    signers = sorted(old_shares)[:3]
    forged = frost.local_sign(old_shares, old_public, call.digest(), signers).raw
    if isinstance(evm, Evm):  # py-evm names the revert reason
        with pytest.raises(TransactionFailed, match="bad signature"):
            evm.call(contract["address"], call.calldata(forged))
    assert evm.transact(contract["address"], call.calldata(forged), gas=200_000)["status"] == 0
    assert evm.balance(to) == 0

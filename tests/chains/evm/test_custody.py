"""The custody contract on a real EVM: payouts authorised by a FROST threshold signature,
replay, expiry, fee cap and wrong-signature refusals, and key rotation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed

from synod.chains.evm.address import keccak256
from synod.chains.evm.custody import (
    SECP256K1_N,
    UpdatePubkeyCall,
    WithdrawCall,
    build_withdraw_call,
    selector,
    uint_word,
    withdraw_id_bytes,
)

from .conftest import ETHER, GWEI, Evm, Group, deploy_custody, random_address

FEE_CAP = 100 * GWEI
TOKEN_SUPPLY = 10**24


def template(withdraw_id: str, to: str, amount: int, asset: str = "ETH") -> dict[str, Any]:
    """The ledger's account-chain template, as the state machine records it."""
    return {
        "withdraw_id": withdraw_id,
        "chain": "eth",
        "asset": asset,
        "to": to,
        "amount": str(amount),
        "fee": str(180_000 * 30 * GWEI),
        "fee_asset": "ETH",
        "lots": [["dep-1", asset, str(amount)]],
    }


def call_for(
    evm: Evm,
    custody: str,
    tpl: dict[str, Any],
    *,
    epoch: int = 0,
    deadline: int | None = None,
    fee_cap: int = FEE_CAP,
    tokens: dict[str, str] | None = None,
) -> WithdrawCall:
    return build_withdraw_call(
        tpl,
        chain_id=evm.chain_id,
        contract=custody,
        fee_cap=fee_cap,
        deadline=evm.timestamp() + 3600 if deadline is None else deadline,
        epoch=epoch,
        tokens=tokens,
    )


def relay(evm: Evm, custody: str, data: bytes, **fees: int) -> dict[str, Any]:
    """Anyone may submit: the signature, not the sender, authorises the payout."""
    return evm.transact(custody, data, sender=evm.relayer, gas=200_000, **fees)


def assert_reverts(evm: Evm, custody: str, data: bytes, reason: str, **fees: int) -> None:
    if reason:
        with pytest.raises(TransactionFailed, match=reason):
            evm.call(custody, data)
    assert relay(evm, custody, data, **fees)["status"] == 0


def view_uint(evm: Evm, custody: str, signature: str, arg: bytes = b"") -> int:
    return int.from_bytes(evm.call(custody, selector(signature) + arg), "big")


def test_withdraw_native(evm: Evm, group: Group) -> None:
    custody = deploy_custody(evm, group.px)
    to = random_address()
    call = call_for(evm, custody, template("w-1", to, 12_345_678_901))
    receipt = relay(evm, custody, call.calldata(group.sign(call.digest())))

    assert receipt["status"] == 1
    assert evm.balance(to) == 12_345_678_901
    assert evm.balance(custody) == 10 * ETHER - 12_345_678_901
    assert view_uint(evm, custody, "used(bytes32)", withdraw_id_bytes("w-1")) == 1
    (log,) = receipt["logs"]
    assert bytes.fromhex(log["topics"][1][2:]) == withdraw_id_bytes("w-1")
    # About 94k with a new recipient account (25k of it for creating the account).
    assert receipt["gas_used"] < 100_000


def test_withdraw_token(evm: Evm, group: Group) -> None:
    custody = deploy_custody(evm, group.px, fund=0)
    token = evm.deploy("TestToken", uint_word(TOKEN_SUPPLY))
    evm.token_transfer(token, custody, 5_000)
    to = random_address()
    call = call_for(evm, custody, template("w-t", to, 1_234, "TST"), tokens={"TST": token})
    assert call.asset == bytes.fromhex(token[2:])

    receipt = relay(evm, custody, call.calldata(group.sign(call.digest())))
    assert receipt["status"] == 1
    assert evm.token_balance(token, to) == 1_234
    assert evm.token_balance(token, custody) == 5_000 - 1_234


def test_token_returning_false_or_without_code_reverts(evm: Evm, group: Group) -> None:
    custody = deploy_custody(evm, group.px, fund=0)
    token = evm.deploy("TestToken", uint_word(TOKEN_SUPPLY))
    evm.token_transfer(token, custody, 5_000)
    assert evm.transact(token, selector("set_refuse(bool)") + (1).to_bytes(32, "big"))["status"]
    to = random_address()
    call = call_for(evm, custody, template("w-f", to, 10, "TST"), tokens={"TST": token})
    assert_reverts(evm, custody, call.calldata(group.sign(call.digest())), "transfer")
    assert view_uint(evm, custody, "used(bytes32)", withdraw_id_bytes("w-f")) == 0
    # A "token" without code returns nothing too, but is not taken for a success.
    no_code = call_for(evm, custody, template("w-g", to, 10, "X"), tokens={"X": random_address()})
    assert_reverts(evm, custody, no_code.calldata(group.sign(no_code.digest())), "")


def test_same_withdraw_id_twice_reverts(evm: Evm, group: Group) -> None:
    custody = deploy_custody(evm, group.px)
    to = random_address()
    call = call_for(evm, custody, template("w-2", to, 1_000))
    data = call.calldata(group.sign(call.digest()))
    assert relay(evm, custody, data)["status"] == 1
    assert_reverts(evm, custody, data, "withdraw id used")
    # A fresh signature over different fields does not help either: the id is spent.
    other = call_for(evm, custody, template("w-2", to, 2_000))
    assert_reverts(evm, custody, other.calldata(group.sign(other.digest())), "withdraw id used")
    assert evm.balance(to) == 1_000


def test_wrong_signatures_revert(evm: Evm, group: Group, next_group: Group) -> None:
    custody = deploy_custody(evm, group.px)
    to = random_address()
    call = call_for(evm, custody, template("w-3", to, 1_000))
    good = group.sign(call.digest())
    # Another committee's key; the right key over other fields; flipped bits in R.x and s.
    wrong_key = next_group.sign(call.digest())
    wrong_message = group.sign(keccak256(b"something else"))
    flipped_r = bytes([good[0] ^ 1]) + good[1:]
    flipped_s = good[:63] + bytes([good[63] ^ 1])
    for sig in (wrong_key, wrong_message, flipped_r, flipped_s, bytes(64)):
        assert_reverts(evm, custody, call.calldata(sig), "bad signature")
    # Signed for 1 000 wei, submitted as 2 000 wei.
    tampered = replace(call, amount=2_000)
    assert_reverts(evm, custody, tampered.calldata(good), "bad signature")
    assert evm.balance(to) == 0
    assert relay(evm, custody, call.calldata(good))["status"] == 1


def test_expired_deadline_reverts(evm: Evm, group: Group) -> None:
    custody = deploy_custody(evm, group.px)
    call = call_for(evm, custody, template("w-4", random_address(), 1), deadline=evm.timestamp())
    data = call.calldata(group.sign(call.digest()))
    evm.tester.time_travel(evm.timestamp() + 10)
    assert_reverts(evm, custody, data, "expired")


def test_gas_price_above_cap_reverts(evm: Evm, group: Group) -> None:
    custody = deploy_custody(evm, group.px)
    call = call_for(evm, custody, template("w-5", random_address(), 1), fee_cap=GWEI)
    data = call.calldata(group.sign(call.digest()))
    # eth_call runs at gas price 0, so only the mined transaction shows the cap.
    high = {"max_fee_per_gas": 50 * GWEI, "max_priority_fee_per_gas": 2 * GWEI}
    assert_reverts(evm, custody, data, "", **high)
    assert relay(evm, custody, data, max_fee_per_gas=GWEI, max_priority_fee_per_gas=0)["status"]


def test_key_rotation(evm: Evm, group: Group, next_group: Group) -> None:
    custody = deploy_custody(evm, group.px)
    update = UpdatePubkeyCall(evm.chain_id, bytes.fromhex(custody[2:]), next_group.px, 1)
    # The new committee cannot install itself.
    assert_reverts(evm, custody, update.calldata(next_group.sign(update.digest())), "bad signature")

    data = update.calldata(group.sign(update.digest()))
    receipt = relay(evm, custody, data)
    assert receipt["status"] == 1
    assert view_uint(evm, custody, "px()") == int.from_bytes(next_group.px, "big")
    assert view_uint(evm, custody, "epoch()") == 1
    (log,) = receipt["logs"]
    assert int(log["topics"][1], 16) == 1  # PubkeyUpdated, indexed epoch
    assert_reverts(evm, custody, data, "bad signature")  # replay: now epoch 2 is expected

    to = random_address()
    new_call = call_for(evm, custody, template("w-6", to, 777), epoch=1)
    old_call = call_for(evm, custody, template("w-7", to, 888), epoch=1)
    stale = call_for(evm, custody, template("w-8", to, 999), epoch=0)
    assert_reverts(evm, custody, old_call.calldata(group.sign(old_call.digest())), "bad signature")
    assert_reverts(evm, custody, stale.calldata(next_group.sign(stale.digest())), "bad signature")
    assert relay(evm, custody, new_call.calldata(next_group.sign(new_call.digest())))["status"]
    assert evm.balance(to) == 777


def test_bad_keys_refused(evm: Evm, group: Group) -> None:
    custody = deploy_custody(evm, group.px, fund=0)
    off_curve = bytes.fromhex("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34")
    for bad in (bytes(32), SECP256K1_N.to_bytes(32, "big"), off_curve):
        update = UpdatePubkeyCall(evm.chain_id, bytes.fromhex(custody[2:]), bad, 1)
        assert_reverts(evm, custody, update.calldata(group.sign(update.digest())), "bad key")

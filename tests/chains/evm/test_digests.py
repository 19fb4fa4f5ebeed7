"""The Python digests and calldata, checked against eth-abi and eth-utils (encoders nobody here
wrote), and the template-to-call builder. That the contract computes the same digests is
shown by every successful withdrawal in test_custody."""

from __future__ import annotations

import eth_abi
import pytest
from eth_utils import keccak, to_checksum_address

from synod.chains.evm.address import parse_address
from synod.chains.evm.custody import (
    NATIVE,
    UPDATE_PUBKEY_SIGNATURE,
    WITHDRAW_SIGNATURE,
    UpdatePubkeyCall,
    WithdrawCall,
    build_withdraw_call,
    valid_group_key,
    withdraw_id_bytes,
)

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TOKEN = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
TO = "0x71C7656EC7ab88b098defB751B7401B5f6d8976F"
SIG = bytes(range(64))


def template(asset: str = "ETH", chain: str = "eth", to: str = TO) -> dict[str, str]:
    return {
        "withdraw_id": "wd-42",
        "chain": chain,
        "asset": asset,
        "to": to,
        "amount": "1000000000000000000",
        "fee": "5400000000000000",
        "fee_asset": "ETH",
    }


def test_withdraw_digest_and_calldata_match_eth_abi() -> None:
    call = build_withdraw_call(
        template("USDT"),
        chain_id=1,
        contract=CONTRACT,
        fee_cap=30 * 10**9,
        deadline=1_800_000_000,
        epoch=3,
        tokens={"USDT": TOKEN},
    )
    wid = keccak(text="wd-42")
    words = eth_abi.encode(
        ["bytes32", "bytes32", "uint256", "address", "address", "address"] + ["uint256"] * 4,
        [
            keccak(text="synod.custody.withdraw.v1"),
            wid,
            1,
            CONTRACT,
            TOKEN,
            TO,
            10**18,
            30 * 10**9,
            1_800_000_000,
            3,
        ],
    )
    assert call.digest() == keccak(words)
    args = eth_abi.encode(
        ["bytes32", "address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes32"],
        [wid, TOKEN, TO, 10**18, 30 * 10**9, 1_800_000_000, *(SIG[:32], SIG[32:])],
    )
    assert call.calldata(SIG) == keccak(text=WITHDRAW_SIGNATURE)[:4] + args


def test_update_digest_and_calldata_match_eth_abi() -> None:
    new_px = bytes.fromhex("DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659")
    call = UpdatePubkeyCall(56, parse_address(CONTRACT), new_px, 8)
    words = eth_abi.encode(
        ["bytes32", "uint256", "uint256", "address", "uint256"],
        [
            keccak(text="synod.custody.update-key.v1"),
            int.from_bytes(new_px, "big"),
            56,
            CONTRACT,
            8,
        ],
    )
    assert call.digest() == keccak(words)
    args = eth_abi.encode(
        ["uint256", "bytes32", "bytes32"], [int.from_bytes(new_px, "big"), SIG[:32], SIG[32:]]
    )
    assert call.calldata(SIG) == keccak(text=UPDATE_PUBKEY_SIGNATURE)[:4] + args


def build(tpl: dict[str, str], **overrides: int) -> WithdrawCall:
    fields = {"chain_id": 56, "fee_cap": 3, "deadline": 10, "epoch": 0, **overrides}
    return build_withdraw_call(tpl, contract=CONTRACT, **fields)


def test_builder_native_and_determinism() -> None:
    call = build(template("BNB", "bnb"))
    assert call.asset == NATIVE and call.to == parse_address(TO) and call.amount == 10**18
    assert call.withdraw_id == withdraw_id_bytes("wd-42")
    again = build(template("BNB", "bnb"))
    assert again == call and again.digest() == call.digest()
    # Every bound field changes the digest.
    for field, value in [("chain_id", 1), ("epoch", 1), ("deadline", 11), ("fee_cap", 4)]:
        assert build(template("BNB", "bnb"), **{field: value}).digest() != call.digest()
    assert build(template("BNB", "bnb", to=CONTRACT)).digest() != call.digest()


@pytest.mark.parametrize(
    ("tpl", "tokens", "message"),
    [
        (template("USDT"), {}, "no token contract"),
        (template("ETH", "btc"), {}, "not an EVM chain"),
        (template(to=TO.lower()[:-1] + "0x"), {}, "not an EVM address"),
        (template(to=TO[:-1] + ("F" if TO[-1] != "F" else "E")), {}, "checksum"),
        ({**template(), "amount": "-1"}, {}, "decimal"),
        ({**template(), "amount": "1_000"}, {}, "decimal"),
    ],
)
def test_builder_refuses(tpl: dict[str, str], tokens: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_withdraw_call(
            tpl, chain_id=1, contract=CONTRACT, fee_cap=1, deadline=1, epoch=0, tokens=tokens
        )


def test_lowercase_address_accepted_and_checksum_matches_eth_utils() -> None:
    raw = parse_address(TO.lower())
    assert to_checksum_address(raw) == TO


def test_valid_group_key() -> None:
    assert valid_group_key(
        bytes.fromhex("F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9")
    )
    assert not valid_group_key(bytes(32))
    assert not valid_group_key(
        bytes.fromhex("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34")
    )
    assert not valid_group_key(b"\xff" * 32)


def test_withdraw_call_rejects_bad_sizes() -> None:
    call = WithdrawCall(1, bytes(20), bytes(32), NATIVE, bytes(19), 1, 1, 1, 0)
    with pytest.raises(ValueError):
        call.digest()
    with pytest.raises(ValueError):
        build(template()).calldata(bytes(63))

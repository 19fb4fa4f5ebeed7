"""EOA mode on a real EVM: transactions signed by threshold ECDSA (CGGMP) are accepted by
eth-tester and move value; eth-account (an implementation nobody here wrote) recovers the
group address from them and encodes the same bytes. The adapter broadcasts and counts
confirmations, also for a relayed contract-mode withdrawal."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account

from synod.chains.evm.adapter import EthTesterBackend, EvmAdapter
from synod.chains.evm.address import address_bytes, checksum_address, parse_address
from synod.chains.evm.custody import build_withdraw_call, uint_word
from synod.chains.evm.eoa import (
    Eip1559Transaction,
    LegacyTransaction,
    payment,
    recover_sender,
    sign_checked,
    template_transaction,
    transaction_hash,
)
from synod.crypto import ecdsa
from synod.state.db import SqliteDatabase
from synod.state.fees import FeeSchedule
from synod.state.machine import Ledger, Withdrawal
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
from tests.fixtures import withdrawal as withdrawal_record

from .conftest import ETHER, GWEI, Evm, Group, deploy_custody, random_address

# eth-tester's first funded account is the key 1: a TEST-ONLY key to cross-check encodings.
TEST_KEY = (1).to_bytes(32, "big")


@pytest.fixture(scope="module")
def shares() -> list[ecdsa.KeyShare]:
    """2-of-3 CGGMP key; aux info from the TEST-ONLY store (slow to regenerate)."""
    aux = stored_aux(3)
    return ecdsa.local_keygen(2, 3, aux)


def group_address(shares: list[ecdsa.KeyShare]) -> str:
    return checksum_address(address_bytes(shares[0].public_key))


def withdrawal(withdraw_id: str, template: dict[str, str]) -> Withdrawal:
    return withdrawal_record(
        withdraw_id=withdraw_id,
        request_id="req-" + withdraw_id,
        chain="eth",
        asset=template["asset"],
        to=template["to"],
        amount=int(template["amount"]),
        status="SIGNED",
        fee=None,
        template_hash=None,
        template=json.dumps(template),
        session_id="session-1",
        signature_ref="sig-1",
    )


def test_eip1559_signed_by_cggmp(evm: Evm, shares: list[ecdsa.KeyShare]) -> None:
    sender = group_address(shares)
    evm.transact(sender, value=ETHER)
    tpl = {"withdraw_id": "e-1", "chain": "eth", "asset": "ETH", "to": random_address()}
    tpl["amount"] = str(123_456_789)
    to, value, data = payment(tpl)
    tx = Eip1559Transaction(evm.chain_id, 0, GWEI, 20 * GWEI, 21_000, to, value, data)

    sig = ecdsa.local_sign(shares, [0, 2], tx.digest())
    raw = sign_checked(tx, sig, shares[0].public_key)
    assert Account.recover_transaction(raw) == sender

    adapter = EvmAdapter(
        "eth", EthTesterBackend(evm.tester), lambda w, ref: raw, parse_address(sender)
    )
    w = withdrawal("e-1", tpl)
    txid = adapter.broadcast(w, "sig-1")
    assert txid == "0x" + transaction_hash(raw).hex()
    assert adapter.broadcast(w, "sig-1") == txid  # idempotent: not sent twice
    assert evm.balance(tpl["to"]) == 123_456_789
    receipt = evm.tester.get_transaction_receipt(txid)
    fee = receipt["gas_used"] * receipt["effective_gas_price"]
    assert evm.balance(sender) == ETHER - 123_456_789 - fee
    assert evm.tester.get_nonce(sender) == 1

    status = adapter.status(replace(w, txid=txid))
    assert status.confirmations == 1 and status.height == receipt["block_number"]
    evm.tester.mine_blocks(2)
    assert adapter.status(replace(w, txid=txid)).confirmations == 3


def test_legacy_eip155_token_transfer_signed_by_cggmp(
    evm: Evm, shares: list[ecdsa.KeyShare]
) -> None:
    sender = group_address(shares)
    evm.transact(sender, value=ETHER)
    token = evm.deploy("TestToken", uint_word(10**24))
    evm.token_transfer(token, sender, 1_000)
    to = random_address()
    tpl = {"chain": "eth", "asset": "TST", "to": to, "amount": "250"}
    target, value, data = payment(tpl, {"TST": token})
    assert target == parse_address(token) and value == 0
    tx = LegacyTransaction(evm.chain_id, 0, 2 * GWEI, 100_000, target, value, data)

    sig = ecdsa.local_sign(shares, [1, 2], tx.digest())
    raw = sign_checked(tx, sig, shares[0].public_key)
    assert Account.recover_transaction(raw) == sender
    evm.tester.send_raw_transaction("0x" + raw.hex())
    assert evm.token_balance(token, to) == 250
    assert evm.token_balance(token, sender) == 750


@pytest.mark.parametrize("kind", ["eip1559", "legacy"])
def test_encoding_matches_eth_account(kind: str) -> None:
    """Same fields and the same signature give byte-identical raw transactions."""
    to = bytes.fromhex("5FbDB2315678afecb367f032d93F642f64180aa3")
    fields = {"chainId": 56, "nonce": 7, "gas": 60_000, "to": checksum_address(to), "value": 5}
    fields["data"] = b"\x01\x02"
    tx: Eip1559Transaction | LegacyTransaction
    if kind == "eip1559":
        fields |= {"type": 2, "maxPriorityFeePerGas": GWEI, "maxFeePerGas": 3 * GWEI}
        tx = Eip1559Transaction(56, 7, GWEI, 3 * GWEI, 60_000, to, 5, b"\x01\x02")
    else:
        fields["gasPrice"] = 3 * GWEI
        tx = LegacyTransaction(56, 7, 3 * GWEI, 60_000, to, 5, b"\x01\x02")
    theirs = Account.sign_transaction(fields, TEST_KEY)
    parity = theirs.v if kind == "eip1559" else theirs.v - 35 - 2 * 56
    ours = tx.signed(ecdsa.Signature(theirs.r, theirs.s, parity))
    assert ours == bytes(theirs.raw_transaction)
    assert recover_sender(ours) == address_bytes(
        bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")
    )


def test_sign_checked_refuses_wrong_digest(shares: list[ecdsa.KeyShare]) -> None:
    tx = LegacyTransaction(1, 0, GWEI, 21_000, bytes(20), 1)
    sig = ecdsa.local_sign(shares, [0, 1], replace(tx, nonce=1).digest())
    with pytest.raises(ValueError, match="group address"):
        sign_checked(tx, sig, shares[0].public_key)


def test_adapter_relays_contract_withdrawal(
    evm: Evm, shares: list[ecdsa.KeyShare], group: Group
) -> None:
    """Contract mode: the FROST signature authorises the payout, the CGGMP address pays gas;
    a replay is mined but reverts, and the adapter reports it rejected."""
    relayer = group_address(shares)
    evm.transact(relayer, value=ETHER)
    custody = deploy_custody(evm, group.px)
    to = random_address()
    tpl = {"withdraw_id": "c-1", "chain": "eth", "asset": "ETH", "to": to, "amount": "4242"}
    call = build_withdraw_call(
        tpl,
        chain_id=evm.chain_id,
        contract=custody,
        fee_cap=100 * GWEI,
        deadline=evm.timestamp() + 600,
        epoch=0,
    )
    data = call.calldata(group.sign(call.digest()))
    raws = []
    for nonce in (0, 1):
        tx = Eip1559Transaction(
            evm.chain_id, nonce, GWEI, 20 * GWEI, 150_000, call.contract, 0, data
        )
        raws.append(
            sign_checked(tx, ecdsa.local_sign(shares, [0, 1], tx.digest()), shares[0].public_key)
        )
    adapter = EvmAdapter(
        "eth",
        EthTesterBackend(evm.tester),
        lambda w, ref: raws[w.attempt],
        parse_address(relayer),
    )
    w = withdrawal("c-1", tpl)
    first = replace(w, txid=adapter.broadcast(w, "sig-1"))
    assert adapter.status(first).confirmations == 1
    assert evm.balance(to) == 4242

    replay = replace(w, attempt=1)
    replay = replace(replay, txid=adapter.broadcast(replay, "sig-1"))
    status = adapter.status(replay)
    assert status.rejected and "reverted" in status.reason
    assert evm.balance(to) == 4242


def test_adapter_refuses_foreign_sender(evm: Evm, shares: list[ecdsa.KeyShare]) -> None:
    fields = {"chainId": evm.chain_id, "nonce": 0, "gas": 21_000, "gasPrice": GWEI, "value": 1}
    fields["to"] = "0x" + "00" * 20
    raw = bytes(Account.sign_transaction(fields, TEST_KEY).raw_transaction)
    assert recover_sender(raw) != address_bytes(shares[0].public_key)
    adapter = EvmAdapter(
        "eth", EthTesterBackend(evm.tester), lambda w, ref: raw, address_bytes(shares[0].public_key)
    )
    tpl = {"asset": "ETH", "to": "0x" + "00" * 20, "amount": "1"}
    with pytest.raises(ValueError, match="not signed by the sender"):
        adapter.broadcast(withdrawal("x", tpl), "sig")


@pytest.mark.parametrize("first", ["old", "new"])
def test_two_templates_for_one_withdrawal_pay_once(
    evm: Evm, shares: list[ecdsa.KeyShare], tmp_path: Path, first: str
) -> None:
    """A fee bump in EOA mode: the old transaction is stuck, governance raises the fee, and the
    withdrawal gets a new template. The ledger kept the nonce, so whichever signed transaction
    the chain takes first, the other is refused and the recipient is paid once."""
    sender = group_address(shares)
    evm.transact(sender, value=ETHER)
    db = SqliteDatabase(tmp_path / "ledger.db")
    cheap = Ledger(
        db, FeeSchedule(eth_gas_price_gwei=2, eth_gas_limit=21_000), nonce_chains={"eth"}
    )
    cheap.apply(DepositCredit("eth", "ETH", ETHER, "0xfund", 1))
    to = random_address()
    wid = cheap.apply(WithdrawRequest("bump", "eth", "ETH", to, 10**15)).result["withdraw_id"]

    def signed_for(ledger: Ledger, gwei: int, attempt: int) -> bytes:
        ledger.apply(Reserve(wid, attempt=attempt))
        template = json.loads(ledger.withdrawal(wid).template or "")
        tx = template_transaction(template, evm.chain_id, gwei * GWEI, 21_000)
        ledger.apply(StartSign(wid, f"s{attempt}", attempt=attempt))
        raw = sign_checked(tx, ecdsa.local_sign(shares, [0, 1], tx.digest()), shares[0].public_key)
        ledger.apply(Signed(wid, f"s{attempt}", "sig", attempt=attempt))
        return raw

    old = signed_for(cheap, 2, 0)
    cheap.apply(Broadcast(wid, "0x" + transaction_hash(old).hex()))
    cheap.apply(Fail(wid, "not mined: underpriced"))
    cheap.apply(Requeue(wid, "fee bump", unspendable_proof="replaced at the same nonce"))
    dear = Ledger(
        db, FeeSchedule(eth_gas_price_gwei=40, eth_gas_limit=21_000), nonce_chains={"eth"}
    )
    new = signed_for(dear, 40, 1)
    assert transaction_hash(new) != transaction_hash(old)
    assert dear.withdrawal(wid).account_nonce == 0

    winner, loser = (old, new) if first == "old" else (new, old)
    evm.tester.send_raw_transaction("0x" + winner.hex())
    with pytest.raises(Exception, match=r"(?i)nonce"):
        evm.tester.send_raw_transaction("0x" + loser.hex())
    assert evm.balance(to) == 10**15
    assert evm.tester.get_nonce(sender) == 1


def test_template_transaction_refuses_missing_nonce_and_overspent_gas() -> None:
    tpl = {
        "withdraw_id": "w",
        "chain": "eth",
        "asset": "ETH",
        "to": random_address(),
        "amount": "1",
    }
    with pytest.raises(ValueError, match="no account nonce"):
        template_transaction({**tpl, "fee": str(21_000 * GWEI)}, 1, GWEI, 21_000)
    with pytest.raises(ValueError, match="exceeds the reserved fee"):
        template_transaction({**tpl, "fee": str(21_000 * GWEI), "nonce": "0"}, 1, 2 * GWEI, 21_000)
    tx = template_transaction({**tpl, "fee": str(21_000 * GWEI), "nonce": "7"}, 1, GWEI, 21_000)
    assert tx.nonce == 7 and tx.max_fee_per_gas == GWEI

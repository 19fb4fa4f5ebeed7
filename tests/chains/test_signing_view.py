"""The signing view: each chain's rule accepts exactly the message the recorded template
gives (derived here by the chain adapters' own builders) and refuses any other; a view
that does not parse names the chain and field; `SigningView` follows the file."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import coincurve
import pytest
from solders.hash import Hash

from synod.chains.bitcoin.address import Network, p2tr_address, p2tr_script
from synod.chains.bitcoin.tx import TemplateError, build_transaction
from synod.chains.evm.address import checksum_address
from synod.chains.evm.custody import build_withdraw_call
from synod.chains.signing_view import SigningView, SigningViewError, parse, write
from synod.chains.solana.tx import SolanaTransfer
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger, Withdrawal, recorded_template
from synod.state.transactions import DepositCredit, Reserve, WithdrawRequest

GROUP_ED25519 = bytes.fromhex("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29")
CONTRACT = checksum_address(bytes(range(20)))
EVM = {"chain_id": 31337, "contract": CONTRACT, "fee_cap": 10**9, "deadline": 2**40, "epoch": 1}


def _reserved(
    tmp_path: Path, chain: str, asset: str, to: str, amount: int, **credit: object
) -> Withdrawal:
    ledger = Ledger(SqliteDatabase(tmp_path / f"{chain}.db"))
    ledger.apply(DepositCredit(chain, asset, 10 * amount, **credit))  # type: ignore[arg-type]
    ledger.apply(WithdrawRequest(f"{chain}-1", chain, asset, to, amount))
    w = ledger.withdrawals()[0]
    ledger.apply(Reserve(w.withdraw_id))
    return ledger.withdrawal(w.withdraw_id)


def test_bitcoin_rule_is_the_sighash_of_each_input(tmp_path: Path) -> None:
    key = coincurve.PrivateKey().public_key.format()[1:]
    w = _reserved(
        tmp_path,
        "btc",
        "BTC",
        p2tr_address(coincurve.PrivateKey().public_key.format()[1:], Network.REGTEST),
        10_000_000,
        ref=f"{'ab' * 32}:0",
        height=1,
        script=p2tr_script(key).hex(),
    )
    rule = parse({"version": 1, "chains": {"btc": {"network": "regtest"}}})["btc"]
    sighashes = build_transaction(recorded_template(w), Network.REGTEST).sighashes()
    assert sighashes and all(rule(w, i, m) for i, m in enumerate(sighashes))
    assert not rule(w, len(sighashes), sighashes[0])  # no such input
    assert not rule(w, 0, bytes(32))
    mainnet = parse({"version": 1, "chains": {"btc": {"network": "mainnet"}}})["btc"]
    with pytest.raises(TemplateError):  # a regtest address on mainnet (RecordedTemplates
        mainnet(w, 0, sighashes[0])  # turns a rule that raises into a refusal)


def test_evm_rule_is_the_custody_call_digest(tmp_path: Path) -> None:
    to = checksum_address(os.urandom(20))
    w = _reserved(tmp_path, "eth", "ETH", to, 10**17, ref="0x01", height=1)
    rule = parse({"version": 1, "chains": {"eth": EVM}})["eth"]
    assert w.template is not None
    digest = bytes(
        build_withdraw_call(
            json.loads(w.template),
            chain_id=31337,
            contract=CONTRACT,
            fee_cap=10**9,
            deadline=2**40,
            epoch=1,
        ).digest()
    )
    assert rule(w, 0, digest)
    assert not rule(w, 1, digest)
    other = parse({"version": 1, "chains": {"eth": {**EVM, "epoch": 2}}})["eth"]
    assert not other(w, 0, digest)  # another committee epoch: another digest


def test_solana_rule_takes_only_the_agreed_blockhash(tmp_path: Path) -> None:
    from solders.keypair import Keypair

    to = str(Keypair().pubkey())
    w = _reserved(tmp_path, "sol", "SOL", to, 10**8, ref="sig-1", height=1)
    rule = parse({"version": 1, "chains": {"sol": {"group_key": GROUP_ED25519.hex()}}})["sol"]
    assert w.template is not None
    agreed, other = Hash.new_unique(), Hash.new_unique()
    message = SolanaTransfer.build(w.template, GROUP_ED25519, agreed).message_bytes()
    assert not rule(w, 0, message)  # no StartSign agreed a blockhash yet
    w = replace(w, sign_context=str(agreed))
    assert rule(w, 0, message)
    elsewhere = SolanaTransfer.build(w.template, GROUP_ED25519, other).message_bytes()
    assert not rule(w, 0, elsewhere)  # the same transfer under another blockhash
    forged = json.loads(w.template)
    forged["to"] = str(Keypair().pubkey())
    bad = SolanaTransfer.build(forged, GROUP_ED25519, agreed).message_bytes()
    assert not rule(w, 0, bad)


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({"version": 2, "chains": {}}, "version"),
        ({"version": 1, "chains": {"doge": {}}}, "chains.doge"),
        ({"version": 1, "chains": {"btc": {"network": "moon"}}}, "chains.btc.network"),
        ({"version": 1, "chains": {"eth": {**EVM, "chain_id": "1"}}}, "chains.eth.chain_id"),
        ({"version": 1, "chains": {"bnb": {**EVM, "epoch": True}}}, "chains.bnb.epoch"),
        ({"version": 1, "chains": {"sol": {"group_key": "zz"}}}, "chains.sol.group_key"),
        ({"version": 1, "chains": {"sol": {"group_key": "00"}}}, "chains.sol.group_key"),
    ],
)
def test_a_view_that_does_not_parse_names_the_field(doc: object, named: str) -> None:
    with pytest.raises(SigningViewError, match=named.replace(".", r"\.")):
        parse(doc)


def test_signing_view_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "chains.json"
    view = SigningView(path)
    assert view() == {}  # missing: nothing is signed
    write(path, {"btc": {"network": "regtest"}})
    assert set(view()) == {"btc"}
    path.write_text("{not json")
    assert view() == {}  # broken: refuse everything until fixed
    write(path, {"eth": EVM, "sol": {"group_key": GROUP_ED25519.hex()}})
    assert set(view()) == {"eth", "sol"}
    with pytest.raises(SigningViewError):
        write(path, {"eth": {}})
    assert set(view()) == {"eth", "sol"}  # a bad write never reaches the file

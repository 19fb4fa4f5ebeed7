"""The same contract and payments on geth (`geth --dev` on loopback), a production Ethereum
client, beside the py-evm tests: the custody contract deployed, funded and paying out against
a FROST signature, a replayed withdraw_id and a wrong signature reverting, key rotation; and
EOA payments signed by CGGMP, where the node itself refuses a second transaction at the nonce
the ledger fixed.

The binary comes from `scripts/geth.sh` (pinned, built from the Go module proxy) or from
`SYNOD_GETH_DIR`. Without it these tests are skipped, unless `SYNOD_REQUIRE_GETH=1` (CI)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from synod.chains.evm.adapter import EvmAdapter, JsonRpcError
from synod.chains.evm.address import address_bytes, checksum_address
from synod.chains.evm.custody import UpdatePubkeyCall, selector
from synod.chains.evm.devnode import GethChain, GethNode, GethUnavailable, start_geth
from synod.chains.evm.eoa import sign_checked, template_transaction, transaction_hash
from synod.crypto import ecdsa
from synod.state.db import SqliteDatabase
from synod.state.fees import FeeSchedule
from synod.state.machine import Ledger
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

from .conftest import ETHER, GWEI, Group, deploy_custody, random_address
from .test_custody import call_for, template

GAS = 300_000


@pytest.fixture(scope="module")
def geth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GethNode]:
    try:
        node = start_geth(tmp_path_factory.mktemp("geth"))
    except GethUnavailable as err:
        if os.environ.get("SYNOD_REQUIRE_GETH") == "1":
            pytest.fail(f"SYNOD_REQUIRE_GETH=1 but geth is unavailable: {err}")
        pytest.skip(f"geth unavailable: {err}")
    try:
        yield node
    finally:
        node.stop()


def px_of(chain: GethChain, custody: str) -> int:
    return int.from_bytes(chain.call(custody, selector("px()")), "big")


def test_custody_contract_on_geth(geth: GethNode, group: Group, next_group: Group) -> None:
    chain = geth.chain
    custody = deploy_custody(chain, group.px, fund=10 * ETHER)  # the Deposit log is checked
    to = random_address()
    call = call_for(chain, custody, template("g-1", to, 12_345))
    data = call.calldata(group.sign(call.digest()))
    assert chain.transact(custody, data, gas=GAS)["status"] == 1
    assert chain.balance(to) == 12_345
    assert chain.transact(custody, data, gas=GAS)["status"] == 0  # the withdraw_id is used
    assert chain.balance(to) == 12_345

    other = call_for(chain, custody, template("g-2", to, 1))
    wrong = other.calldata(next_group.sign(other.digest()))
    assert chain.transact(custody, wrong, gas=GAS)["status"] == 0
    assert chain.balance(to) == 12_345

    update = UpdatePubkeyCall(chain.chain_id, bytes.fromhex(custody[2:]), next_group.px, 1)
    assert (
        chain.transact(custody, update.calldata(next_group.sign(update.digest())), gas=GAS)[
            "status"
        ]
        == 0
    )  # a new committee cannot install itself
    assert (
        chain.transact(custody, update.calldata(group.sign(update.digest())), gas=GAS)["status"]
        == 1
    )
    assert px_of(chain, custody) == int.from_bytes(next_group.px, "big")
    new = call_for(chain, custody, template("g-3", to, 7), epoch=1)
    assert chain.transact(custody, new.calldata(group.sign(new.digest())), gas=GAS)["status"] == 0
    assert (
        chain.transact(custody, new.calldata(next_group.sign(new.digest())), gas=GAS)["status"] == 1
    )
    assert chain.balance(to) == 12_352


def test_eoa_payment_and_one_nonce_on_geth(geth: GethNode, tmp_path: Path) -> None:
    """Two templates for one withdrawal (a fee bump) signed by CGGMP at the ledger's nonce:
    geth mines the first it gets and refuses the other; the adapter reports confirmations."""
    chain = geth.chain
    shares = ecdsa.local_keygen(2, 3, stored_aux(3))
    group = checksum_address(address_bytes(shares[0].public_key))
    assert chain.transact(group, value=ETHER)["status"] == 1
    db = SqliteDatabase(tmp_path / "ledger.db")
    gas_limit = 21_000
    cheap = Ledger(
        db, FeeSchedule(eth_gas_price_gwei=2, eth_gas_limit=gas_limit), nonce_chains={"eth"}
    )
    cheap.apply(DepositCredit("eth", "ETH", ETHER, "0xfund", 1))
    to = random_address()
    wid = cheap.apply(WithdrawRequest("g-eoa", "eth", "ETH", to, 10**15)).result["withdraw_id"]

    def signed_at(ledger: Ledger, gwei: int, attempt: int) -> bytes:
        ledger.apply(Reserve(wid, attempt=attempt))
        tpl = json.loads(ledger.withdrawal(wid).template or "")
        tx = template_transaction(tpl, chain.chain_id, gwei * GWEI, gas_limit, GWEI)
        ledger.apply(StartSign(wid, f"s{attempt}", attempt=attempt))
        sig = ecdsa.local_sign(shares, [0, 2], tx.digest())
        ledger.apply(Signed(wid, f"s{attempt}", sig.to_bytes().hex(), attempt=attempt))
        return sign_checked(tx, sig, shares[0].public_key)

    old = signed_at(cheap, 2, 0)
    cheap.apply(Broadcast(wid, "0x" + transaction_hash(old).hex()))
    cheap.apply(Fail(wid, "not mined: underpriced"))
    cheap.apply(Requeue(wid, "fee bump", unspendable_proof="replaced at the same nonce"))
    dear = Ledger(
        db, FeeSchedule(eth_gas_price_gwei=40, eth_gas_limit=gas_limit), nonce_chains={"eth"}
    )
    new = signed_at(dear, 40, 1)

    adapter = EvmAdapter(
        "eth", chain.backend, lambda w, ref: new, address_bytes(shares[0].public_key)
    )
    txid = adapter.broadcast(dear.withdrawal(wid), "")
    assert chain.receipt(txid)["status"] == 1
    with pytest.raises(JsonRpcError, match=r"(?i)nonce"):
        chain.send_raw(old)
    assert chain.balance(to) == 10**15 and chain.nonce(group) == 1
    dear.apply(Broadcast(wid, txid, attempt=1))
    status = adapter.status(dear.withdrawal(wid))
    assert status.confirmations >= 1 and not status.rejected

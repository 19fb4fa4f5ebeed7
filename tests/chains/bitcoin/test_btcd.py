"""End to end on a real node (btcd, regtest, loopback): a FROST 2-of-3 group mines coinbase
outputs to its P2TR address, then spends one with a threshold signature through
`BitcoinAdapter`, and sees it confirmed; the node's refusals and a conflicting spend come back
as `ChainStatus` the worker can act on.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from synod.chains.bitcoin.adapter import BitcoinAdapter
from synod.chains.bitcoin.address import Network, p2tr_script, script_address, witness_script
from synod.chains.bitcoin.rpc import BitcoinRpc, RpcError, TransportError
from synod.chains.bitcoin.tx import cpfp_child, encode_signature_ref
from synod.state.fees import FeeSchedule
from synod.state.machine import SIGNED, Withdrawal, canonical_template
from tests.chains.bitcoin.conftest import FrostGroup, Node
from tests.chains.bitcoin.kernel import verify_inputs
from tests.fixtures import withdrawal as withdrawal_record

NET = Network.REGTEST
# btcd's regtest activates Taproot by BIP9 signalling: 144-block periods, so it is ACTIVE
# from height 432 on (before that a witness v1 spend would not be checked at all).
TAPROOT_ACTIVE_HEIGHT = 432
FEES = FeeSchedule(btc_sats_per_vbyte=25)
COIN = 100_000_000


@pytest.fixture(scope="module")
def chain(btcd: Node) -> Node:
    btcd.rpc.generate(TAPROOT_ACTIVE_HEIGHT)
    info = btcd.rpc.get_blockchain_info()
    assert info["blocks"] == TAPROOT_ACTIVE_HEIGHT
    assert info["bip9_softforks"]["taproot"]["status"] == "active"
    return btcd


def coinbase(node: Node, height: int) -> tuple[str, int, str]:
    """(outpoint, value in sats, scriptPubKey hex) of the coinbase output at `height`."""
    rpc = node.rpc
    txid = rpc.get_block(rpc.get_block_hash(height))["tx"][0]
    out = rpc.get_raw_transaction(txid)["vout"][0]
    return f"{txid}:0", int(Decimal(str(out["value"])) * COIN), out["scriptPubKey"]["hex"]


def withdrawal(
    node: Node, wid: str, heights: list[int], amount: int, to: str | None = None
) -> Withdrawal:
    """A SIGNED-to-be withdrawal whose template is what the state machine would record."""
    inputs = [coinbase(node, h) for h in heights]
    script = inputs[0][2]
    fee = FEES.btc_fee(len(inputs), 2)
    change = sum(v for _, v, _ in inputs) - amount - fee
    to = to or script_address(witness_script(0, os.urandom(20)), NET)
    template: dict[str, Any] = {
        "withdraw_id": wid,
        "chain": "btc",
        "inputs": [[o, str(v), s] for o, v, s in inputs],
        "outputs": [
            {"to": to, "value": str(amount)},
            {"to": "change", "value": str(change), "script": script},
        ],
        "fee": str(fee),
    }
    text = canonical_template(template)
    return withdrawal_record(
        withdraw_id=wid,
        request_id=f"req-{wid}",
        to=to,
        amount=amount,
        status=SIGNED,
        fee=fee,
        template_hash=hashlib.sha256(text).hexdigest(),
        template=text.decode(),
        session_id="s-1",
    )


def threshold_sign(adapter: BitcoinAdapter, group: FrostGroup, w: Withdrawal) -> str:
    return encode_signature_ref(group.sign(h) for h in adapter.sighashes(w))


def test_threshold_spend_confirms(chain: Node, frost_group: FrostGroup) -> None:
    rpc = chain.rpc
    adapter = BitcoinAdapter(rpc, NET)
    _, value, script = coinbase(chain, 1)
    assert script == p2tr_script(frost_group.output_key).hex()  # mined to the FROST group
    assert value == 50 * COIN

    # A spend with a broken signature, straight to the node (bypassing the adapter's own
    # check): refused by the node's Taproot script check, so it is really enforced.
    w = withdrawal(chain, "w-e2e-1", [1, 2], 3 * COIN)
    ref = threshold_sign(adapter, frost_group, w)
    good = adapter.signed_transaction(w, ref)
    sigs = [bytearray(i.witness[0]) for i in good.inputs]
    sigs[1][10] ^= 1
    forged = good.with_signatures([bytes(s) for s in sigs])
    with pytest.raises(RpcError) as refused:
        rpc.send_raw_transaction(forged.hex())
    assert refused.value.code in (-25, -26)  # btcd: -25 for script failures, like Core's -26
    assert "failed to validate input" in refused.value.message
    assert verify_inputs(forged) == [True, False]  # the kernel agrees with the node

    # The real thing: the exact bytes the node gets pass the kernel, then the node.
    assert verify_inputs(good) == [True, True]
    signed = replace(w, signature_ref=ref)
    txid = adapter.broadcast(signed, ref)
    assert txid == good.txid
    assert adapter.broadcast(signed, ref) == txid  # idempotent: already in the mempool
    status = adapter.status(signed)
    assert (status.confirmations, status.rejected) == (0, False)

    # A CPFP child on the unconfirmed change, signed by another pair of signers.
    child = cpfp_child(good, 1, 50)
    child = child.with_signatures([frost_group.sign(child.sighash(0), [2, 3])])
    assert verify_inputs(child) == [True]
    assert rpc.send_raw_transaction(child.hex()) == child.txid

    rpc.generate(1)
    status = adapter.status(signed)
    assert status.confirmations >= 1 and not status.rejected
    assert status.height == TAPROOT_ACTIVE_HEIGHT + 1
    block = rpc.get_block(rpc.get_best_block_hash())
    assert {txid, child.txid} <= set(block["tx"])
    assert adapter.broadcast(signed, ref) == txid  # still idempotent once mined
    assert adapter.status(signed).confirmations >= 1


def test_node_refusal_is_reported(chain: Node, frost_group: FrostGroup) -> None:
    """A dust payment: the node refuses it; `status` says rejected, with the node's reason."""
    adapter = BitcoinAdapter(chain.rpc, NET)
    w = withdrawal(chain, "w-e2e-dust", [3], 1)
    ref = threshold_sign(adapter, frost_group, w)
    w = replace(w, signature_ref=ref)
    txid = adapter.broadcast(w, ref)  # does not raise: the worker records BROADCAST first
    status = adapter.status(w)
    assert status.rejected and "dust" in status.reason and not status.unspendable_proof
    # A fresh adapter (a restart, no record) finds out again by re-sending.
    fresh = BitcoinAdapter(chain.rpc, NET).status(w)
    assert fresh.rejected and "dust" in fresh.reason
    with pytest.raises(RpcError):
        chain.rpc.get_raw_transaction(txid)

    # A signature that does not verify is caught before anything is sent.
    forged = ("1" if ref[0] != "1" else "2") + ref[1:]
    assert adapter.broadcast(w, forged) == txid
    status = adapter.status(replace(w, signature_ref=forged))
    assert status.rejected and "do not verify" in status.reason


def test_conflicting_spend_gives_unspendable_proof(chain: Node, frost_group: FrostGroup) -> None:
    """Another template over an input that a confirmed transaction already spent."""
    adapter = BitcoinAdapter(chain.rpc, NET)
    first = withdrawal(chain, "w-e2e-a", [4, 6], COIN)
    ref = threshold_sign(adapter, frost_group, first)
    adapter.broadcast(first, ref)
    chain.rpc.generate(1)
    assert adapter.status(first).confirmations == 1

    second = withdrawal(chain, "w-e2e-b", [4, 5, 6], 2 * COIN)
    # Spent one block deep: a reorg could still undo it, so no proof yet.
    assert not adapter.status(second).unspendable_proof
    chain.rpc.generate(4)
    assert not adapter.status(second).unspendable_proof
    chain.rpc.generate(1)  # seen spent for six blocks
    status = adapter.status(second)
    assert status.rejected and status.confirmations == 0
    assert coinbase(chain, 4)[0] in status.unspendable_proof
    inputs = [str(i.outpoint) for i in adapter.transaction(second).inputs]
    assert status.spent_outpoints == (inputs[0], inputs[2])  # every spent input, not the first
    # ...while the confirmed one is never "unspendable".
    assert not adapter.status(first).unspendable_proof


def test_rpc_errors_are_classified(chain: Node) -> None:
    wrong = BitcoinRpc(chain.rpc.url, "synod", "wrong-password", timeout=5)
    with pytest.raises(TransportError, match="401"):
        wrong.get_block_count()
    with pytest.raises(RpcError) as err:
        chain.rpc.call("getblockhash", 10**6)
    assert err.value.code != 0

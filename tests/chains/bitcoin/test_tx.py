"""Threshold-signed Taproot spends of custody templates, judged by libbitcoinkernel.

The FROST group signs each input's BIP341 sighash as computed by `synod.chains.bitcoin.tx`;
Bitcoin Core's script interpreter (with the Taproot flags and every spent output) decides.
Prevouts are fabricated: script verification needs only the outputs being spent.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

import pytest

from synod.chains.bitcoin.address import (
    Network,
    address_script,
    p2tr_address,
    p2tr_script,
    script_address,
    witness_script,
)
from synod.chains.bitcoin.tx import (
    SEQUENCE,
    Template,
    TemplateError,
    Transaction,
    TxOut,
    build_batch,
    build_transaction,
    cpfp_child,
    decode_signature_ref,
    encode_signature_ref,
    op_return_script,
)
from synod.crypto import frost
from synod.state.fees import FeeSchedule
from synod.state.machine import canonical_template
from tests.chains.bitcoin.conftest import FrostGroup
from tests.chains.bitcoin.kernel import kernel_txid, verify_inputs

NET = Network.REGTEST
FEES = FeeSchedule(btc_sats_per_vbyte=25)


def group(t: int, n: int) -> FrostGroup:
    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, t, n)
    return FrostGroup(keys, public)


@pytest.fixture(scope="module")
def g23() -> FrostGroup:
    return group(2, 3)


def template(
    g: FrostGroup,
    values: list[int],
    amount: int,
    *,
    withdraw_id: str = "w-1",
    to: str | None = None,
) -> dict[str, Any]:
    """A template shaped like the state machine's `_plan_btc` output."""
    script = p2tr_script(g.output_key).hex()
    fee = FEES.btc_fee(len(values), 2)
    change = sum(values) - amount - fee
    assert change >= 330
    return {
        "withdraw_id": withdraw_id,
        "chain": "btc",
        "inputs": [
            [f"{os.urandom(32).hex()}:{n % 4}", str(v), script] for n, v in enumerate(values)
        ],
        "outputs": [
            {"to": to or p2tr_address(os.urandom(32), NET), "value": str(amount)},
            {"to": "change", "value": str(change), "script": script},
        ],
        "fee": str(fee),
    }


def sign_all(g: FrostGroup, tx: Transaction) -> Transaction:
    """Each input by a different subset of t signers (any t of n must do)."""
    ids = sorted(g.keys)
    t = g.public.min_signers
    sigs = []
    for n, sighash in enumerate(tx.sighashes()):
        signers = [ids[(n + k) % len(ids)] for k in range(t)]
        sigs.append(g.sign(sighash, signers))
    return tx.with_signatures(sigs)


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5)])
@pytest.mark.parametrize("values", [[150_000], [40_000, 2_500_000, 61_000]])
@pytest.mark.parametrize("op_return", [False, True])
def test_threshold_key_path_spend_accepted(
    t: int, n: int, values: list[int], op_return: bool
) -> None:
    g = group(t, n)
    tmpl = template(g, values, 100_000)
    tx = build_transaction(tmpl, NET, op_return=op_return)
    signed = sign_all(g, tx)

    assert verify_inputs(signed) == [True] * len(values)
    assert signed.invalid_signatures() == []
    raw = signed.serialize()
    assert kernel_txid(raw) == signed.txid == tx.txid  # witnesses do not change the txid
    assert signed.wtxid != signed.txid
    assert signed.fee == int(tmpl["fee"])
    if not op_return:  # the fee schedule's size model is exact for all-P2TR transactions
        assert signed.vsize == tx.signed_vsize() == FEES.btc_fee(len(values), 2) // 25


def test_bad_signatures_rejected(g23: FrostGroup) -> None:
    tx = build_transaction(template(g23, [80_000, 90_000], 50_000), NET)
    h0, h1 = tx.sighashes()
    good0, good1 = g23.sign(h0), g23.sign(h1)
    assert verify_inputs(tx.with_signatures([good0, good1])) == [True, True]

    flipped = bytearray(good0)
    flipped[17] ^= 0x04
    other_tx = build_transaction(template(g23, [80_000, 90_000], 50_001), NET)
    internal = frost.local_sign(g23.keys, g23.public, h0, [1, 2], None).raw  # untweaked
    for bad in (bytes(flipped), g23.sign(h1), g23.sign(other_tx.sighash(0)), internal):
        signed = tx.with_signatures([bad, good1])
        assert verify_inputs(signed) == [False, True]
        assert signed.invalid_signatures() == [0]


def test_internal_key_signature_is_valid_bip340_but_not_a_spend(g23: FrostGroup) -> None:
    """Guards the test above: the untweaked signature fails only because of the BIP341 tweak."""
    import coincurve

    tx = build_transaction(template(g23, [80_000], 50_000), NET)
    sig = frost.local_sign(g23.keys, g23.public, tx.sighash(0), [2, 3], None).raw
    assert coincurve.PublicKeyXOnly(g23.public.group_public_key()).verify(sig, tx.sighash(0))
    assert verify_inputs(tx.with_signatures([sig])) == [False]


def test_signing_under_a_lie_about_amounts_is_rejected(g23: FrostGroup) -> None:
    """BIP341 commits to every spent amount: a signer fed inflated values signs nothing valid."""
    tx = build_transaction(template(g23, [80_000, 90_000], 50_000), NET)
    lie = replace(
        tx,
        inputs=(
            replace(tx.inputs[0], spent=TxOut(800_000, tx.inputs[0].spent.script_pubkey)),
            tx.inputs[1],
        ),
    )
    signed = lie.with_signatures([g23.sign(h) for h in lie.sighashes()])
    assert verify_inputs(signed) == [True, True]  # consistent with the lie...
    assert verify_inputs(signed, tx.spent_outputs) == [False, False]  # ...not with the chain


def test_same_template_same_bytes(g23: FrostGroup) -> None:
    tmpl = template(g23, [80_000, 90_000], 50_000, withdraw_id="w-42")
    text = canonical_template(tmpl)
    a = build_transaction(tmpl, NET)
    b = build_transaction(text, NET)
    c = build_transaction(text.decode(), NET)
    d = build_transaction(json.loads(text), NET)
    assert a.serialize() == b.serialize() == c.serialize() == d.serialize()
    assert a.sighashes() == d.sighashes()

    assert a.version == 2 and a.locktime == 0
    assert [i.sequence for i in a.inputs] == [SEQUENCE, SEQUENCE] == [0xFFFFFFFD] * 2
    assert [str(i.outpoint) for i in a.inputs] == [i[0] for i in tmpl["inputs"]]
    recipient, change = tmpl["outputs"]
    assert a.outputs == (
        TxOut(int(recipient["value"]), address_script(recipient["to"], NET)),
        TxOut(int(change["value"]), bytes.fromhex(change["script"])),
    )

    tagged = build_transaction(tmpl, NET, op_return=True)
    assert tagged.outputs[:2] == a.outputs
    assert tagged.outputs[2] == TxOut(0, b"\x6a\x04w-42")
    assert tagged.fee == a.fee and tagged.txid != a.txid


def test_op_return_limits() -> None:
    assert op_return_script(b"x" * 80) == b"\x6a\x4c\x50" + b"x" * 80
    with pytest.raises(TemplateError):
        op_return_script(b"x" * 81)


def test_batch(g23: FrostGroup) -> None:
    t1 = template(g23, [80_000], 30_000, withdraw_id="w-1")
    t2 = template(g23, [90_000, 70_000], 60_000, withdraw_id="w-2")
    tx = build_batch([t1, t2], NET, op_return=True)
    assert [str(i.outpoint) for i in tx.inputs] == [x[0] for x in t1["inputs"] + t2["inputs"]]
    change = int(t1["outputs"][1]["value"]) + int(t2["outputs"][1]["value"])
    assert [o.value for o in tx.outputs] == [30_000, 60_000, change, 0]
    assert tx.outputs[3].script_pubkey == op_return_script(b"w-1,w-2")
    assert tx.fee == int(t1["fee"]) + int(t2["fee"])
    assert verify_inputs(sign_all(g23, tx)) == [True] * 3
    assert build_batch([t1, t2], NET, op_return=True).serialize() == tx.serialize()

    with pytest.raises(TemplateError, match="same input"):
        build_batch([t1, {**t1, "withdraw_id": "w-3"}], NET)
    with pytest.raises(TemplateError, match="twice"):
        build_batch([t1, t1], NET)


def test_template_errors(g23: FrostGroup) -> None:
    good = template(g23, [80_000], 30_000)
    Template.parse(good, NET)
    bad_cases: list[dict[str, Any]] = [
        {**good, "fee": str(int(good["fee"]) + 1)},
        {**good, "chain": "eth"},
        {**good, "inputs": [["nothex:0", "80000", good["inputs"][0][2]]]},
        {**good, "inputs": [[good["inputs"][0][0], "80000.0", good["inputs"][0][2]]]},
        {**good, "inputs": [[good["inputs"][0][0], 80_000, good["inputs"][0][2]]]},
        {**good, "inputs": [[good["inputs"][0][0], "080000", good["inputs"][0][2]]]},
        {**good, "inputs": [[good["inputs"][0][0], "80000", good["inputs"][0][2].upper()]]},
        {**good, "inputs": []},
        {
            **good,
            "outputs": [
                {**good["outputs"][0], "to": p2tr_address(bytes(32), Network.MAINNET)},
                good["outputs"][1],
            ],
        },
        {
            **good,
            "outputs": [{**good["outputs"][0], "to": "bcrt1qnotanaddress"}, good["outputs"][1]],
        },
        {**good, "withdraw_id": ""},
    ]
    for case in bad_cases:
        with pytest.raises(TemplateError):
            build_transaction(case, NET)
    with pytest.raises(TemplateError):
        build_transaction("{not json", NET)


def test_recipient_address_kinds(g23: FrostGroup) -> None:
    """Every standard address kind ends up as its scriptPubKey, as the kernel parses it."""
    import pbk

    h20, h32 = os.urandom(20), os.urandom(32)
    scripts = [
        witness_script(0, h20),
        witness_script(0, h32),
        witness_script(1, h32),
        b"\x76\xa9\x14" + h20 + b"\x88\xac",
        b"\xa9\x14" + h20 + b"\x87",
    ]
    for script in scripts:
        tmpl = template(g23, [80_000], 30_000, to=script_address(script, NET))
        tx = sign_all(g23, build_transaction(tmpl, NET))
        assert bytes(pbk.Transaction(tx.serialize()).outputs[0].script_pubkey) == script
        assert verify_inputs(tx) == [True]


def test_cpfp_child(g23: FrostGroup) -> None:
    p2wpkh = script_address(witness_script(0, os.urandom(20)), NET)
    parent_template = template(g23, [80_000, 90_000], 50_000, to=p2wpkh)
    parent = sign_all(g23, build_transaction(parent_template, NET))
    vout = 1  # the change
    child = cpfp_child(parent, vout, 60)
    assert str(child.inputs[0].outpoint) == f"{parent.txid}:{vout}"
    assert child.outputs[0].script_pubkey == parent.outputs[vout].script_pubkey
    signed = child.with_signatures([g23.sign(child.sighash(0))])
    assert verify_inputs(signed, [parent.outputs[vout]]) == [True]
    package_rate = (parent.fee + signed.fee) / (parent.vsize + signed.vsize)
    assert 60 <= package_rate < 61
    assert signed.fee / signed.vsize >= 60
    with pytest.raises(ValueError):
        cpfp_child(parent, vout, 1_000)  # the change cannot pay that
    with pytest.raises(ValueError):
        cpfp_child(parent, 0, 60)  # the payment (P2WPKH): not a key-path output of ours


def test_signature_ref_round_trip() -> None:
    sigs = [os.urandom(64), os.urandom(64)]
    ref = encode_signature_ref(sigs)
    assert ref.count(",") == 1 and decode_signature_ref(ref) == sigs
    for bad in ("zz", sigs[0].hex()[:-2], sigs[0].hex() + ";" + sigs[1].hex()):
        with pytest.raises(ValueError):
            decode_signature_ref(bad)
    with pytest.raises(ValueError):
        encode_signature_ref([os.urandom(65)])


def test_sighash_depends_on_everything_committed(g23: FrostGroup) -> None:
    tmpl = template(g23, [80_000, 90_000], 50_000)
    base = build_transaction(tmpl, NET).sighashes()
    assert len(set(base)) == 2 and all(len(h) == 32 for h in base)
    changed_fee = {
        **tmpl,
        "outputs": [
            tmpl["outputs"][0],
            {**tmpl["outputs"][1], "value": str(int(tmpl["outputs"][1]["value"]) - 1)},
        ],
        "fee": str(int(tmpl["fee"]) + 1),
    }
    assert build_transaction(changed_fee, NET).sighashes()[0] != base[0]

"""TRON transactions built offline: byte-identical to a mainnet transaction, and a CGGMP
threshold signature over the id recovers to the group's TRON address."""

from __future__ import annotations

import coincurve
import pytest

from synod.chains.evm.address import address_bytes
from synod.chains.tron.address import tron_address
from synod.chains.tron.tx import RefBlock, address_to_raw, trc20_transfer, trx_transfer
from synod.crypto import ecdsa
from tests.fixtures import stored_aux

# A TRX transfer as included on TRON mainnet (public chain data): fields, raw_data_hex,
# txID and the owner's signature.
MAINNET = {
    "owner": "419b3281a60ab7a44f351ef2896c653f134972ad22",
    "to": "4105cc125604448afeb6867eb688efb7e80411d57a",
    "amount": 5,
    "ref_block_bytes": "fdf6",
    "ref_block_hash": "4cd898aed8ce5d14",
    "expiration": 1717419846000,
    "timestamp": 1717419788444,
    "raw_data_hex": "0a02fdf622084cd898aed8ce5d1440f0d2ccf1fd315a65080112610a2d747970652e676f6f676c"
    "65617069732e636f6d2f70726f746f636f6c2e5472616e73666572436f6e747261637412300a15419b3281a6"
    "0ab7a44f351ef2896c653f134972ad2212154105cc125604448afeb6867eb688efb7e80411d57a1805709c91"
    "c9f1fd31",
    "txid": "47086db397eac45d2fe7dacedcb6f77267d6895dce645210e495e64f8a2a7910",
    "signature": "c1c0b1ad18f56248ebc6820c611cd65683cef6b5deed8002246cc00df7e79f9f73d48c35b8c2e416"
    "94ef23c8020ab8c578c0aa57b7e079683f322e45c88b0e0700",
}


def mainnet_ref() -> RefBlock:
    # A block number ending in 0xfdf6 and a block id whose bytes 8..16 are the ref hash.
    number = int(MAINNET["ref_block_bytes"], 16)
    block_id = number.to_bytes(8, "big") + bytes.fromhex(MAINNET["ref_block_hash"]) + bytes(16)
    return RefBlock(number, block_id)


def recover_tron(txid: bytes, sig65: bytes) -> str:
    key = coincurve.PublicKey.from_signature_and_message(
        sig65[:64] + bytes([sig65[64] % 27]), txid, hasher=None
    )
    return tron_address(key.format())


def test_matches_a_mainnet_transaction_byte_for_byte() -> None:
    tx = trx_transfer(
        MAINNET["owner"],
        MAINNET["to"],
        MAINNET["amount"],
        mainnet_ref(),
        MAINNET["expiration"],
        MAINNET["timestamp"],
    )
    assert tx.raw.hex() == MAINNET["raw_data_hex"]
    assert tx.txid.hex() == MAINNET["txid"]
    owner = recover_tron(tx.txid, bytes.fromhex(MAINNET["signature"]))
    assert address_to_raw(owner).hex() == MAINNET["owner"]


@pytest.fixture(scope="module")
def group() -> list[ecdsa.KeyShare]:
    aux = stored_aux(3)
    return ecdsa.local_keygen(2, 3, aux)


@pytest.mark.parametrize("kind", ["trx", "trc20"])
def test_threshold_signature_recovers_to_the_group_address(
    group: list[ecdsa.KeyShare], kind: str
) -> None:
    owner = tron_address(group[0].public_key)
    ref = RefBlock(62_000_000, bytes(range(32)))
    if kind == "trx":
        tx = trx_transfer(
            owner,
            "TPETNZhCFky15fMJhDxu86tw9XsdkdsAT7",
            1_000_000,
            ref,
            1_800_000_000_000,
            1_799_999_000_000,
        )
    else:
        usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
        tx = trc20_transfer(
            owner,
            usdt,
            "TPETNZhCFky15fMJhDxu86tw9XsdkdsAT7",
            25_000_000,
            ref,
            1_800_000_000_000,
            1_799_999_000_000,
            30_000_000,
        )
    sig = ecdsa.local_sign(group, [0, 2], tx.txid)
    assert recover_tron(tx.txid, sig.to_recoverable()) == owner
    assert address_bytes(group[0].public_key) == address_to_raw(owner)[1:]
    signed = tx.attach(sig.to_recoverable())
    assert signed.startswith(b"\x0a") and tx.raw in signed
    # A different reference block is a different transaction: the signature no longer fits.
    other = trx_transfer(owner, owner, 1, RefBlock(1, bytes(32)), 1, 1)
    assert recover_tron(other.txid, sig.to_recoverable()) != owner


def test_bad_addresses_are_refused() -> None:
    with pytest.raises(ValueError):
        address_to_raw("Tnotanaddress")
    with pytest.raises(ValueError):
        address_to_raw("42" + "00" * 20)

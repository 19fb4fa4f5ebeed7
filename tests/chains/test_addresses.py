"""Addresses derived by synod, checked against bip_utils (an implementation nobody here wrote)."""

from __future__ import annotations

import bip_utils
import coincurve
import pytest

from synod.chains.bitcoin.address import Network, p2tr_address, segwit_address
from synod.chains.evm.address import evm_address
from synod.chains.solana.address import solana_address
from synod.chains.tron.address import tron_address
from synod.crypto import frost


def test_bip350_vectors() -> None:
    # BIP350 valid witness v1 vector: OP_1 <32-byte program>.
    program = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    address = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
    assert segwit_address("bc", 1, program) == address


@pytest.mark.parametrize("network", [Network.MAINNET, Network.TESTNET, Network.REGTEST])
def test_p2tr_matches_bip_utils(network: Network) -> None:
    _keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)
    internal = public.group_public_key()
    ours = p2tr_address(public.group_public_key(frost.KEY_PATH), network)
    # bip_utils applies the BIP86 key-path tweak itself, from the internal key.
    theirs = bip_utils.P2TRAddrEncoder.EncodeKey(b"\x02" + internal, hrp=network.value)
    assert ours == theirs


def test_solana_matches_bip_utils() -> None:
    _, public = frost.local_dkg(frost.Ciphersuite.ED25519, 2, 3)
    key = public.group_public_key()
    assert solana_address(key) == bip_utils.SolAddrEncoder.EncodeKey(b"\x00" + key)


def test_evm_and_tron_match_bip_utils() -> None:
    key = coincurve.PrivateKey().public_key
    compressed = key.format(compressed=True)
    assert evm_address(compressed) == bip_utils.EthAddrEncoder.EncodeKey(compressed)
    assert tron_address(compressed) == bip_utils.TrxAddrEncoder.EncodeKey(compressed)


def test_bad_keys_rejected() -> None:
    with pytest.raises(ValueError):
        p2tr_address(b"\x00" * 33)
    with pytest.raises(ValueError):
        solana_address(b"\x00" * 31)

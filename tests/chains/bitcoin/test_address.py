"""Address decoding and encoding: BIP173/BIP350 vectors, BIP341 output keys, base58."""

from __future__ import annotations

import os

import bip_utils
import pytest

from synod.chains.bitcoin.address import (
    AddressError,
    Network,
    address_script,
    decode_segwit_address,
    p2tr_address,
    p2tr_script,
    script_address,
    segwit_address,
    witness_script,
)
from synod.crypto import frost

# BIP350 "valid segwit addresses" (address -> scriptPubKey).
VALID = {
    "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4": "0014751e76e8199196d454941c45d1b3a323f1433bd6",
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7": (
        "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"
    ),
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y": (
        "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6"
    ),
    "BC1SW50QGDZ25J": "6002751e",
    "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs": "5210751e76e8199196d454941c45d1b3a323",
    "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy": (
        "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"
    ),
    "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c": (
        "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"
    ),
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0": (
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    ),
}

# BIP350 "invalid segwit addresses" (the bad-hrp one is checked against a network below).
INVALID = [
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # bech32, not bech32m
    "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",  # bech32, not bech32m
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",  # bech32, not bech32m
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # bech32m for v0
    "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",  # bech32m for v0
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # invalid character
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # witness version 17
    "bc1pw5dgrnzv",  # 1-byte program
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",  # 41 bytes
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # 16-byte v0 program
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",  # mixed case
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",  # >4 bits padding
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",  # non-zero padding
    "bc1gmk9yu",  # empty data
]


@pytest.mark.parametrize(("address", "script"), VALID.items())
def test_bip350_valid(address: str, script: str) -> None:
    hrp, version, program = decode_segwit_address(address)
    assert witness_script(version, program).hex() == script
    assert segwit_address(hrp, version, program) == address.lower()
    network = {"bc": Network.MAINNET, "tb": Network.TESTNET}[hrp]
    assert address_script(address, network).hex() == script
    assert script_address(bytes.fromhex(script), network) == address.lower()


@pytest.mark.parametrize("address", INVALID)
def test_bip350_invalid(address: str) -> None:
    with pytest.raises(AddressError):
        decode_segwit_address(address)
    for network in (Network.MAINNET, Network.TESTNET):
        with pytest.raises(AddressError):
            address_script(address, network)


def test_wrong_network_rejected() -> None:
    bad_hrp = "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut"
    for network in Network:
        with pytest.raises(AddressError):
            address_script(bad_hrp, network)
    mainnet = p2tr_address(bytes(range(32)), Network.MAINNET)
    with pytest.raises(AddressError, match="hrp"):
        address_script(mainnet, Network.REGTEST)
    regtest_p2pkh = script_address(b"\x76\xa9\x14" + bytes(20) + b"\x88\xac", Network.REGTEST)
    with pytest.raises(AddressError):
        address_script(regtest_p2pkh, Network.MAINNET)


@pytest.mark.parametrize("network", [Network.MAINNET, Network.TESTNET, Network.REGTEST])
def test_p2tr_round_trip_with_frost_key(network: Network) -> None:
    """BIP341 output key -> bech32m address -> scriptPubKey OP_1 <output key>, and back;
    bip_utils (tweaking the internal key itself) agrees on the address."""
    _, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)
    output_key = public.group_public_key(frost.KEY_PATH)
    address = p2tr_address(output_key, network)
    assert address == bip_utils.P2TRAddrEncoder.EncodeKey(
        b"\x02" + public.group_public_key(), hrp=network.value
    )
    assert decode_segwit_address(address) == (network.value, 1, output_key)
    assert address_script(address, network) == p2tr_script(output_key)
    assert script_address(p2tr_script(output_key), network) == address
    assert address_script(address.upper(), network) == p2tr_script(output_key)


@pytest.mark.parametrize("network", [Network.MAINNET, Network.REGTEST])
def test_base58_matches_bip_utils(network: Network) -> None:
    h = os.urandom(20)
    p2pkh, p2sh = network.base58_prefixes
    a = bip_utils.Base58Encoder.CheckEncode(bytes([p2pkh]) + h)
    b = bip_utils.Base58Encoder.CheckEncode(bytes([p2sh]) + h)
    assert address_script(a, network) == b"\x76\xa9\x14" + h + b"\x88\xac"
    assert address_script(b, network) == b"\xa9\x14" + h + b"\x87"
    assert script_address(address_script(a, network), network) == a
    assert script_address(address_script(b, network), network) == b
    with pytest.raises(AddressError):
        address_script(a[:-1] + ("1" if a[-1] != "1" else "2"), network)  # checksum


def test_v0_encoding_and_bad_programs() -> None:
    h = bytes(range(20))
    assert decode_segwit_address(segwit_address("bcrt", 0, h)) == ("bcrt", 0, h)
    for version, program in [(0, bytes(21)), (1, bytes(1)), (17, bytes(32)), (2, bytes(41))]:
        with pytest.raises(ValueError):
            segwit_address("bc", version, program)
    with pytest.raises(AddressError):
        script_address(b"\x6a\x04abcd", Network.MAINNET)

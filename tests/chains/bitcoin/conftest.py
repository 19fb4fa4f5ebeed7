"""A real btcd node on loopback for the end-to-end tests.

The binaries come from ``scripts/btcd.sh`` (pinned, built once into a cache directory), or
from ``SYNOD_BTCD_DIR``. Without them the end-to-end tests are skipped, unless
``SYNOD_REQUIRE_BTCD=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from synod.chains.bitcoin.address import Network, p2tr_address
from synod.chains.bitcoin.devnode import BtcdUnavailable, start_btcd
from synod.chains.bitcoin.rpc import BitcoinRpc
from synod.crypto import frost


@dataclass(frozen=True)
class FrostGroup:
    keys: dict[int, frost.KeyPackage]
    public: frost.PublicKeyPackage

    @property
    def output_key(self) -> bytes:
        return self.public.group_public_key(frost.KEY_PATH)

    def sign(self, message: bytes, signers: list[int] | None = None) -> bytes:
        chosen = signers or sorted(self.keys)[: self.public.min_signers]
        return frost.local_sign(self.keys, self.public, message, chosen, frost.KEY_PATH).raw


@dataclass(frozen=True)
class Node:
    rpc: BitcoinRpc
    mining_address: str
    datadir: Path


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("SYNOD_REQUIRE_BTCD") == "1":
        pytest.fail(f"SYNOD_REQUIRE_BTCD=1 but btcd is unavailable: {reason}")
    pytest.skip(f"btcd unavailable: {reason}")


@pytest.fixture(scope="module")
def frost_group() -> FrostGroup:
    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)
    return FrostGroup(keys, public)


@pytest.fixture(scope="module")
def btcd(frost_group: FrostGroup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """btcd in regtest mode (`synod.chains.bitcoin.devnode`) mining to the FROST group's P2TR
    address. Always stopped at the end of the module."""
    mining_address = p2tr_address(frost_group.output_key, Network.REGTEST)
    try:
        node = start_btcd(mining_address, tmp_path_factory.mktemp("btcd"))
    except BtcdUnavailable as err:
        _unavailable(str(err))
    try:
        yield Node(node.rpc, mining_address, node.home)
    finally:
        node.stop()

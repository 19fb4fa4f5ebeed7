"""An in-process EVM (eth-tester on py-evm), the compiled contracts and FROST group keys."""

from __future__ import annotations

import os

import pytest

from synod.chains.evm.address import checksum_address
from synod.chains.evm.devchain import CONTRACTS, ETHER, GWEI, bytecode, deploy_custody
from synod.chains.evm.devchain import DevChain as Evm
from synod.crypto import frost

__all__ = ["CONTRACTS", "ETHER", "GWEI", "Evm", "bytecode", "deploy_custody"]


def random_address() -> str:
    return checksum_address(os.urandom(20))


@pytest.fixture
def evm() -> Evm:
    return Evm()


class Group:
    """A FROST secp256k1 (BIP340) committee signing in-process."""

    def __init__(self, t: int, n: int) -> None:
        self.keys, self.public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, t, n)
        self.t = t
        self.px = self.public.group_public_key()

    def sign(self, digest: bytes, signers: list[int] | None = None) -> bytes:
        chosen = signers or list(range(1, self.t + 1))
        return frost.local_sign(self.keys, self.public, digest, chosen).raw


@pytest.fixture(scope="session")
def group() -> Group:
    return Group(2, 3)


@pytest.fixture(scope="session")
def next_group() -> Group:
    return Group(3, 4)

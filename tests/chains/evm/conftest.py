"""An in-process EVM (eth-tester on py-evm), the compiled contracts and FROST group keys."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
from eth_tester import EthereumTester, PyEVMBackend
from vyper import compile_code

from synod.chains.evm.address import checksum_address
from synod.chains.evm.custody import bytes_word, constructor_args, selector, uint_word
from synod.crypto import frost

CONTRACTS = Path(__file__).resolve().parents[3] / "contracts"
ETHER = 10**18
GWEI = 10**9


def random_address() -> str:
    return checksum_address(os.urandom(20))


class Evm:
    """Just enough of a chain for the tests: deploy, transact from unlocked accounts, call."""

    def __init__(self) -> None:
        self.tester = EthereumTester(PyEVMBackend())
        self.funder, self.relayer = self.tester.get_accounts()[:2]

    @property
    def chain_id(self) -> int:
        return int(self.tester.backend.chain.chain_id)

    def transact(
        self,
        to: str | None,
        data: bytes = b"",
        value: int = 0,
        sender: str | None = None,
        gas: int = 500_000,
        **fees: int,
    ) -> dict[str, Any]:
        """Mine one transaction and return its receipt (status 0 when it reverted)."""
        tx: dict[str, Any] = {
            "from": sender or self.funder,
            "data": "0x" + data.hex(),
            "value": value,
            "gas": gas,
            **fees,
        }
        if to is not None:
            tx["to"] = to
        receipt: dict[str, Any] = self.tester.get_transaction_receipt(
            self.tester.send_transaction(tx)
        )
        return receipt

    def deploy(self, name: str, args: bytes = b"") -> str:
        receipt = self.transact(None, bytecode(name) + args, gas=3_000_000)
        assert receipt["status"] == 1
        return str(receipt["contract_address"])

    def call(self, to: str, data: bytes) -> bytes:
        out = self.tester.call({"from": self.funder, "to": to, "data": "0x" + data.hex()})
        return bytes.fromhex(out.removeprefix("0x"))

    def balance(self, address: str) -> int:
        return int(self.tester.get_balance(address))

    def token_balance(self, token: str, address: str) -> int:
        raw = bytes.fromhex(address[2:])
        out = self.call(token, selector("balanceOf(address)") + bytes_word(raw, 20))
        return int.from_bytes(out, "big")

    def token_transfer(self, token: str, to: str, amount: int, sender: str | None = None) -> None:
        data = selector("transfer(address,uint256)") + bytes_word(bytes.fromhex(to[2:]), 20)
        assert self.transact(token, data + uint_word(amount), sender=sender)["status"] == 1

    def timestamp(self) -> int:
        return int(self.tester.get_block_by_number("latest")["timestamp"])


@functools.cache
def bytecode(name: str) -> bytes:
    """Init code of `contracts/<name>.vy`, compiled once per test run."""
    out = compile_code((CONTRACTS / f"{name}.vy").read_text(), output_formats=["bytecode"])
    return bytes.fromhex(out["bytecode"].removeprefix("0x"))


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


def deploy_custody(evm: Evm, px: bytes, fund: int = 10 * ETHER) -> str:
    custody = evm.deploy("Custody", constructor_args(px))
    if fund:
        receipt = evm.transact(custody, value=fund)
        assert receipt["status"] == 1 and len(receipt["logs"]) == 1  # Deposit
    return custody

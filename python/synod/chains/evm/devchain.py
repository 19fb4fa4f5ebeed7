"""A local EVM for tests and `synod demo`: eth-tester on py-evm, in process.

Deploys the Vyper contracts in `contracts/`, sends transactions from eth-tester's
unlocked development accounts (a funder, and a relayer that pays gas for custody
calls), and reads balances. Development chain only: its accounts' keys are public.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_tester import EthereumTester, PyEVMBackend
from vyper import compile_code

from synod.chains.evm.adapter import EvmAdapter, EvmBackend
from synod.chains.evm.address import checksum_address, parse_address
from synod.chains.evm.custody import (
    UpdatePubkeyCall,
    WithdrawCall,
    bytes_word,
    constructor_args,
    selector,
    uint_word,
)
from synod.state.machine import Withdrawal

CONTRACTS = Path(__file__).resolve().parents[4] / "contracts"
ETHER = 10**18
GWEI = 10**9
DEV_RELAYER_KEY = (2).to_bytes(32, "big")  # eth-tester's second funded account (public key!)


class LocalEvm(ABC):
    """A local chain the tests and the demo drive: `DevChain` (py-evm, in process) or
    `synod.chains.evm.devnode.GethChain` (geth --dev). Subclasses say how to call and
    transact; deploying and the ERC-20 helpers are built on those."""

    @abstractmethod
    def call(self, to: str, data: bytes) -> bytes:
        """eth_call: the return data."""

    @abstractmethod
    def transact(
        self,
        to: str | None,
        data: bytes = b"",
        value: int = 0,
        sender: str | None = None,
        gas: int = 500_000,
    ) -> dict[str, Any]:
        """Send from an unlocked account; the receipt once mined (status 0: reverted), with
        the created contract's address under `contract_address`."""

    def deploy(self, name: str, args: bytes = b"") -> str:
        receipt = self.transact(None, bytecode(name) + args, gas=3_000_000)
        assert receipt["status"] == 1, f"deploying {name} failed"
        return str(receipt["contract_address"])

    def token_balance(self, token: str, address: str) -> int:
        raw = bytes.fromhex(address[2:])
        out = self.call(token, selector("balanceOf(address)") + bytes_word(raw, 20))
        return int.from_bytes(out, "big")

    def token_transfer(self, token: str, to: str, amount: int, sender: str | None = None) -> None:
        data = selector("transfer(address,uint256)") + bytes_word(bytes.fromhex(to[2:]), 20)
        assert self.transact(token, data + uint_word(amount), sender=sender)["status"] == 1


class DevChain(LocalEvm):
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

    def call(self, to: str, data: bytes) -> bytes:
        out = self.tester.call({"from": self.funder, "to": to, "data": "0x" + data.hex()})
        return bytes.fromhex(out.removeprefix("0x"))

    def balance(self, address: str) -> int:
        return int(self.tester.get_balance(address))

    def timestamp(self) -> int:
        return int(self.tester.get_block_by_number("latest")["timestamp"])


@functools.cache
def bytecode(name: str) -> bytes:
    """Init code of `contracts/<name>.vy`, compiled once per process."""
    out = compile_code((CONTRACTS / f"{name}.vy").read_text(), output_formats=["bytecode"])
    return bytes.fromhex(out["bytecode"].removeprefix("0x"))


def deploy_custody(chain: LocalEvm, px: bytes, fund: int = 10 * ETHER) -> str:
    """Deploy the custody contract for group key `px`, optionally funded by the funder."""
    custody = chain.deploy("Custody", constructor_args(px))
    if fund:
        receipt = chain.transact(custody, value=fund)
        assert receipt["status"] == 1 and len(receipt["logs"]) == 1  # Deposit
    return custody


def relayed_custody_adapter(
    chain: str,
    backend: EvmBackend,
    chain_id: int,
    nonce: Callable[[str], int],
    custody: str,
    gas_price: int,
    call_for: Callable[[Withdrawal], WithdrawCall | UpdatePubkeyCall],
) -> EvmAdapter:
    """An adapter whose broadcasts are custody-contract calls sent and paid for by the
    development relayer account (`DEV_RELAYER_KEY`): the committee's signature goes into
    the call data of `call_for(withdrawal)`."""
    from eth_account import Account

    relayer = Account.from_key(DEV_RELAYER_KEY)

    def raw_transaction(w: Withdrawal, signature_ref: str) -> bytes:
        tx = {
            "chainId": chain_id,
            "nonce": nonce(relayer.address),
            "gas": 200_000,
            "gasPrice": gas_price,
            "to": checksum_address(parse_address(custody)),
            "value": 0,
            "data": call_for(w).calldata(bytes.fromhex(signature_ref)),
        }
        return bytes(relayer.sign_transaction(tx).raw_transaction)

    return EvmAdapter(chain, backend, raw_transaction, sender=parse_address(relayer.address))

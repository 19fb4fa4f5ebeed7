"""A local geth in `--dev` mode: a production Ethereum client on loopback, for the tests.

The binary comes from ``SYNOD_GETH_DIR`` or from ``scripts/geth.sh`` (a pinned geth built
from the Go module proxy into a cache directory). The node serves HTTP JSON-RPC on 127.0.0.1
only, has no P2P networking, mines a block as soon as a transaction arrives, and runs every
fork up to Prague (so the custody contract's transient storage works). Its developer account
is funded and unlocked: `GethChain` sends from it, as `DevChain` does from eth-tester's.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synod.chains.evm.adapter import JsonRpcBackend, JsonRpcError, NotYetIndexed
from synod.chains.evm.devchain import LocalEvm
from synod.chains.localnode import (
    NodeUnavailable,
    binary_dir,
    free_port,
    launch,
    stop_process,
)

RECEIPT_TIMEOUT_S = 30


class GethUnavailable(NodeUnavailable):
    """geth could not be found, built or started here."""


def geth_dir() -> Path:
    """Where geth lives: SYNOD_GETH_DIR, else what scripts/geth.sh builds (or finds cached)."""
    return binary_dir("SYNOD_GETH_DIR", "geth.sh", "geth", GethUnavailable)


class GethChain(LocalEvm):
    """`LocalEvm` over a geth node's JSON-RPC, transacting from the developer account;
    `backend` is what `EvmAdapter` takes."""

    def __init__(self, url: str) -> None:
        self.backend = JsonRpcBackend(url, timeout=20)
        self.funder = str(self.backend.request("eth_accounts")[0])
        self.chain_id = int(self.backend.request("eth_chainId"), 16)

    def transact(
        self,
        to: str | None,
        data: bytes = b"",
        value: int = 0,
        sender: str | None = None,
        gas: int = 500_000,
    ) -> dict[str, Any]:
        """Send one transaction from an unlocked account; its receipt once mined."""
        tx: dict[str, Any] = {
            "from": sender or self.funder,
            "data": "0x" + data.hex(),
            "value": hex(value),
            "gas": hex(gas),
        }
        if to is not None:
            tx["to"] = to
        return self.receipt(self.backend.request("eth_sendTransaction", tx))

    def send_raw(self, raw: bytes) -> dict[str, Any]:
        """Send a signed transaction; its receipt once mined."""
        return self.receipt(self.backend.request("eth_sendRawTransaction", "0x" + raw.hex()))

    def receipt(self, txid: str) -> dict[str, Any]:
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        while True:
            try:
                receipt = self.backend.request("eth_getTransactionReceipt", txid)
            except NotYetIndexed:
                receipt = None
            # geth can serve a receipt a moment before its block becomes "latest"; a state read
            # right after would still see the parent block, so wait for the head as well.
            if receipt is not None and self._head() >= int(receipt["blockNumber"], 16):
                status, created = int(receipt["status"], 16), receipt["contractAddress"]
                return {**receipt, "status": status, "contract_address": created}
            if time.monotonic() > deadline:
                raise GethUnavailable(f"{txid} not mined within {RECEIPT_TIMEOUT_S} s")
            time.sleep(0.05)

    def _head(self) -> int:
        return int(self.backend.request("eth_blockNumber"), 16)

    def call(self, to: str, data: bytes) -> bytes:
        out = self.backend.request(
            "eth_call", {"from": self.funder, "to": to, "data": "0x" + data.hex()}, "latest"
        )
        return bytes.fromhex(str(out).removeprefix("0x"))

    def balance(self, address: str) -> int:
        return int(self.backend.request("eth_getBalance", address, "latest"), 16)

    def nonce(self, address: str) -> int:
        return int(self.backend.request("eth_getTransactionCount", address, "latest"), 16)

    def timestamp(self) -> int:
        return int(self.backend.request("eth_getBlockByNumber", "latest", False)["timestamp"], 16)


@dataclass
class GethNode:
    chain: GethChain
    home: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.proc)


def start_geth(home: Path, bindir: Path | None = None) -> GethNode:
    """Start `geth --dev` with its data in `home`; raises `GethUnavailable`."""
    bindir = bindir or geth_dir()
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        str(bindir / "geth"),
        "--dev",
        f"--datadir={home / 'data'}",
        "--http",
        "--http.addr=127.0.0.1",
        f"--http.port={port}",
        "--http.api=eth,net,web3",
        "--ipcdisable",
        "--nodiscover",
        "--maxpeers=0",
        "--port=0",
        "--authrpc.port=0",
        "--verbosity=2",
    ]
    url = f"http://127.0.0.1:{port}"
    proc, chain = launch(
        args, home, lambda: GethChain(url), (OSError, JsonRpcError), GethUnavailable
    )
    return GethNode(chain, home, proc)

"""Bitcoin deposits: outputs paying the committee's P2TR script, from a node's JSON-RPC.

Blocks come from ``getblockhash`` / ``getblock <hash> 2`` (btcd and Bitcoin Core both decode
every transaction at verbosity 2: btcd under ``rawtx``, Core under ``tx``). An output counts
when its scriptPubKey equals one of the committee's scripts. A coinbase output is credited
only once it is spendable (`COINBASE_MATURITY` blocks deep), whatever the configured depth.

The committee's own transactions (withdrawals) pay their change back to the committee's
script; that change is credited by the ledger's `Confirm`, not as a deposit. A transaction
spending any output the ledger holds (`ours`, e.g. `Ledger.has_utxo`) is therefore skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Protocol

from synod.runtime.watchers.base import Block, Deposit

COINBASE_MATURITY = 100
SATS_PER_BTC = 10**8


class BitcoinNode(Protocol):
    """The JSON-RPC calls the watcher uses (`synod.chains.bitcoin.rpc.BitcoinRpc` has them)."""

    def get_block_count(self) -> int: ...
    def get_block_hash(self, height: int) -> str: ...
    def get_block(self, block_hash: str, verbosity: int = 1) -> dict[str, Any]: ...


def _sats(value: Any) -> int:
    return int(Decimal(str(value)) * SATS_PER_BTC)


class BitcoinDeposits:
    """`BlockSource` for "btc": every output paying one of `scripts` (hex scriptPubKeys)."""

    chain = "btc"

    def __init__(
        self,
        node: BitcoinNode,
        scripts: Iterable[str],
        ours: Callable[[str], bool] = lambda outpoint: False,
    ) -> None:
        self.node = node
        self.ours = ours
        self.scripts = {s.lower() for s in scripts}
        if not self.scripts:
            raise ValueError("watch at least one script")

    def tip(self) -> int:
        return self.node.get_block_count()

    def block_hash(self, height: int) -> str | None:
        if height > self.node.get_block_count():
            return None
        return self.node.get_block_hash(height)

    def block(self, height: int) -> Block:
        block_hash = self.node.get_block_hash(height)
        data = self.node.get_block(block_hash, 2)
        txs = data.get("rawtx") or data.get("tx") or []
        deposits = []
        for tx in txs:
            if not isinstance(tx, dict):
                raise ValueError("the node did not decode the block's transactions")
            inputs = tx.get("vin", [])
            coinbase = any("coinbase" in vin for vin in inputs)
            if any("txid" in vin and self.ours(f"{vin['txid']}:{vin['vout']}") for vin in inputs):
                continue  # a withdrawal of ours: its change is credited by `Confirm`
            for out in tx.get("vout", []):
                script = str(out.get("scriptPubKey", {}).get("hex", "")).lower()
                sats = _sats(out.get("value", 0))
                if script in self.scripts and sats > 0:
                    deposits.append(
                        Deposit(
                            "btc",
                            "BTC",
                            sats,
                            f"{tx['txid']}:{int(out['n'])}",
                            height,
                            script,
                            COINBASE_MATURITY if coinbase else 0,
                        )
                    )
        return Block(height, block_hash, str(data.get("previousblockhash", "")), tuple(deposits))
